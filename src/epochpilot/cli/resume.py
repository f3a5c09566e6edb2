"""``epochpilot resume``: see :mod:`epochpilot.cli.runs`."""

from epochpilot.cli.runs import add_resume as add_parser
from epochpilot.cli.runs import run_resume as run

__all__ = ["add_parser", "run"]

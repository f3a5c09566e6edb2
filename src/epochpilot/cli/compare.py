"""``epochpilot compare``: see :mod:`epochpilot.cli.runs`."""

from epochpilot.cli.runs import add_compare as add_parser
from epochpilot.cli.runs import run_compare as run

__all__ = ["add_parser", "run"]

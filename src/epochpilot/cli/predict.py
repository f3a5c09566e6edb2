"""``epochpilot predict``: see :mod:`epochpilot.cli.runs`."""

from epochpilot.cli.runs import add_predict as add_parser
from epochpilot.cli.runs import run_predict as run

__all__ = ["add_parser", "run"]

"""``epochpilot predict``: see :mod:`epochpilot.cli.runs`."""

from epochpilot.cli.runs import add_predict as add_parser
from epochpilot.cli.runs import precheck_predict as precheck
from epochpilot.cli.runs import run_predict as run

__all__ = ["add_parser", "precheck", "run"]

"""``epochpilot compare``: see :mod:`epochpilot.cli.runs`."""

from epochpilot.cli.runs import add_compare as add_parser
from epochpilot.cli.runs import precheck_compare as precheck
from epochpilot.cli.runs import run_compare as run

__all__ = ["add_parser", "precheck", "run"]

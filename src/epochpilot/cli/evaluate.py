"""``epochpilot evaluate``: see :mod:`epochpilot.cli.runs`."""

from epochpilot.cli.runs import add_evaluate as add_parser
from epochpilot.cli.runs import precheck_run_dir as precheck
from epochpilot.cli.runs import run_evaluate as run

__all__ = ["add_parser", "precheck", "run"]

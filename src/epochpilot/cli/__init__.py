"""The ``epochpilot`` command line: one module per subcommand."""

from __future__ import annotations

from epochpilot.cli.main import main

__all__ = ["main"]

"""Entry point: parse the subcommand, run it, turn user errors into one line and exit code 2."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from epochpilot import __version__

#: Subcommand modules under epochpilot.cli; each has ``add_parser(subparsers)`` and ``run(args) -> int``.
COMMANDS: tuple[str, ...] = (
    "demo",
    "audit",
    "plan",
    "train",
    "predict",
    "evaluate",
    "resume",
    "report",
    "compare",
    "schedule",
    "cv",
    "tune",
    "continue",
    "finetune",
)

#: Commands whose module name differs from the command (``continue`` is a Python keyword).
MODULES: dict[str, str] = {"continue": "continual"}

#: Exceptions that mean "the user's input is wrong": one line on stderr, exit code 2, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    KeyError,
    TypeError,
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per subcommand."""
    parser = argparse.ArgumentParser(
        prog="epochpilot",
        description="Plan, run, stop and explain PyTorch training.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'epochpilot COMMAND --help' for examples of each command.",
    )
    parser.add_argument("--version", action="version", version=f"epochpilot {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks instead of one-line errors"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"epochpilot.cli.{MODULES.get(name, name)}")
        module.add_parser(subparsers)
        subparsers.choices[name].set_defaults(run=module.run)
    return parser


def error_line(exc: BaseException) -> str:
    """The one-line message for a user error (KeyError's repr quotes are dropped)."""
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(str(text).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 failure, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.run(args) or 0)
    except USER_ERRORS as exc:
        if args.debug:
            raise
        print(f"epochpilot {args.command}: error: {error_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Entry point: parse the subcommand, run it, turn user errors into one line and exit code 2.

Whatever reaches the command line becomes one line on stderr: the user's mistakes (bad values, bad files,
unusable paths) exit 2; anything else is an internal error that exits 1 and says to run with ``--debug``
(before or after the subcommand), which shows the traceback instead.

Starting is cheap: this module and every subcommand module import only the standard library at import time,
and a subcommand's ``precheck(args)`` (see :mod:`epochpilot.cli._precheck`) answers the user's mistakes before
its ``run`` imports torch, so ``--help``, ``--version`` and those errors take about 0.1 s, not 2.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import importlib
import linecache
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from epochpilot import __version__
from epochpilot.cli._flags import check_flags
from epochpilot.errors import EpochpilotError

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

#: Commands that never read or write a run directory: no refusal of theirs is worded per command, so they run
#: without :mod:`epochpilot.train.wording` (and torch, which importing it costs).
NO_RUN_DIR: frozenset[str] = frozenset({"schedule", "plan", "audit"})

#: Commands whose module name differs from the command (``continue`` is a Python keyword).
MODULES: dict[str, str] = {"continue": "continual"}

#: Exceptions that mean "the user's input is wrong" wherever they come from: one line, exit code 2, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (EpochpilotError, ValueError)

#: Raised on purpose by epochpilot (a ``raise`` in its code), these are user errors too; from anywhere else
#: (a bug, a library's internals) they are internal errors.
DELIBERATE_ERRORS: tuple[type[BaseException], ...] = (TypeError, KeyError)

#: OSErrors about a path the user gave (or the disk under it): one line naming the path and the fix, exit 2.
PATH_ERRNOS = frozenset(
    {
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENAMETOOLONG,
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EEXIST,
        errno.ENOTEMPTY,
        errno.ELOOP,
        errno.EFBIG,
    }
)

#: Longest error line printed; a longer message keeps its start and its end (the fix).
MAX_LINE = 300

_PACKAGE = Path(__file__).resolve().parents[1]


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (``epochpilot train: error: --max-epochs must be
    >= 1, got 0``) and exit code 2, like every other user error."""

    def error(self, message: str) -> NoReturn:
        """Print one line and exit 2 (argparse prints the whole usage block first)."""
        flag, sep, rest = message.partition(": ")
        flag = flag[len("argument ") :].split("/")[-1] if flag.startswith("argument ") else flag
        wrong = re.fullmatch(r"invalid (int|float) value: (.*)", rest)
        if wrong:
            kind = "an integer" if wrong.group(1) == "int" else "a number"
            rest = f"must be {kind}, got {wrong.group(2)}"
        if flag.startswith("-") and sep and rest.startswith("must "):
            line = f"{flag} {rest}"
        else:
            line = f"{message} (see '{self.prog} --help')"
            choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
            if choice:
                valid = re.findall(r"'([^']*)'", choice.group(2))
                near = difflib.get_close_matches(choice.group(1), valid, n=1)
                if near:
                    line = f"{flag}: invalid choice {choice.group(1)!r}: did you mean {near[0]!r}?"
        self.exit(2, f"{self.prog}: error: {cap(line)}\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per subcommand (each also accepts ``--debug``)."""
    parser = Parser(
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
        sub = subparsers.choices[name]
        sub.set_defaults(run=module.run, precheck=getattr(module, "precheck", None))
        sub.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,
            help="show full tracebacks instead of one-line errors",
        )
    parser.set_defaults(subcommands=subparsers.choices)
    return parser


def cap(line: str, limit: int = MAX_LINE) -> str:
    """``line`` cut to about ``limit`` characters, keeping its start and its end (where the fix is)."""
    if len(line) <= limit:
        return line
    tail = limit // 3
    return f"{line[: limit - tail - 5]} ... {line[-tail:]}"


def error_line(exc: BaseException) -> str:
    """The one-line message for a user error (KeyError's repr quotes are dropped)."""
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(str(text).split())


def os_error_line(exc: OSError) -> str:
    """One line for an OSError about a path: which path, what went wrong, what to do."""
    from epochpilot._files import _FIXES

    if exc.errno is None or not exc.strerror:  # raised by epochpilot with its own message
        return error_line(exc)
    fix = (
        "check the path (and create missing folders)"
        if exc.errno == errno.ENOENT
        else _FIXES.get(exc.errno, "choose another path")
    )
    paths = " -> ".join(repr(str(p)) for p in (exc.filename, exc.filename2) if p is not None)
    return f"{paths}: {exc.strerror}: {fix}" if paths else f"{exc.strerror}: {fix}"


def deliberate(exc: BaseException) -> bool:
    """True when ``exc`` was raised by a ``raise`` statement in epochpilot's own code (a checked error)."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = Path(tb.tb_frame.f_code.co_filename)
    if _PACKAGE not in filename.resolve().parents:
        return False
    return linecache.getline(str(filename), tb.tb_lineno).lstrip().startswith("raise")


def classify(exc: BaseException) -> tuple[int, str]:
    """(exit code, one line) for an exception that reached the command line: 2 for the user's mistakes, 1
    with a pointer to ``--debug`` for what is outside the user's control."""
    if isinstance(exc, USER_ERRORS) or (isinstance(exc, DELIBERATE_ERRORS) and deliberate(exc)):
        return 2, error_line(exc)
    if isinstance(exc, OSError) and (exc.errno is None or exc.errno in PATH_ERRNOS):
        return 2, os_error_line(exc)
    if isinstance(exc, ModuleNotFoundError) and not (exc.name or "").startswith("epochpilot"):
        fix = "install the package that provides it (or the epochpilot extra that needs it, see docs/index.md)"
        return 2, f"{error_line(exc)}: {fix}"
    text = error_line(exc)
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return 1, f"{detail} (run with --debug for the traceback)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 failure, 2 bad input)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    culprit = args.subcommands.get(args.command, parser)
    if extra:  # named by the subcommand: "epochpilot train: error: unrecognized arguments: ..."
        culprit.error(f"unrecognized arguments: {' '.join(extra)}")
    check_flags(culprit, args)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if args.precheck is not None:  # the user's mistakes, answered before torch is imported
            args.precheck(args)
        if args.command in NO_RUN_DIR:
            return int(args.run(args) or 0)
        from epochpilot.train.wording import cli_words, speaking

        # refusals name what the user can type here (--overwrite, epochpilot resume RUN_DIR, ...)
        with speaking(cli_words(args.command)):
            return int(args.run(args) or 0)
    except KeyboardInterrupt as exc:
        code = getattr(exc, "exit_code", None)
        if code:  # stopped by Ctrl-C during a fit: it logged the line on how to resume
            return int(code)
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if getattr(args, "debug", False):
            raise
        code, line = classify(exc)
        kind = "error" if code == 2 else "internal error"
        print(f"epochpilot {args.command}: {kind}: {cap(line)}", file=sys.stderr)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""``epochpilot plan FILE|BUILTIN|N``: audit the data, then print an epoch plan and its rationale."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

__all__ = ["add_parser", "precheck", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``plan`` subcommand on ``subparsers``."""
    parser = subparsers.add_parser(
        "plan",
        help="plan max epochs, patience, warmup and schedule from the data",
        description=(
            "Plan an epoch budget. SOURCE is a CSV file (audited: duplicates shrink the budget), a built-in "
            "data set (digits, breast_cancer, wine, mnist1d) or a sample count."
        ),
    )
    parser.add_argument(
        "source", metavar="FILE|BUILTIN|N", help="CSV path, built-in name or sample count"
    )
    parser.add_argument(
        "--target", metavar="COL", help="label column of a CSV (built-ins: 'target')"
    )
    parser.add_argument("--text-column", metavar="COL", help="column holding free text")
    parser.add_argument(
        "--n-samples", type=int, metavar="N", help="rows to draw from a built-in data set"
    )
    parser.add_argument("--mode", choices=("full", "lora", "mixed"), default="full")
    parser.add_argument("--batch-size", type=int, metavar="N", help="per-process batch size")
    parser.add_argument(
        "--accumulation", type=int, default=1, metavar="N", help="gradient accumulation"
    )
    parser.add_argument(
        "--world-size", type=int, default=1, metavar="N", help="data-parallel processes"
    )
    parser.add_argument("--lr", type=float, help="learning rate (default: per mode; run lr_find)")
    parser.add_argument("--table", choices=("calibrated", "seeds"), default="calibrated")
    parser.add_argument(
        "--json",
        metavar="PATH",
        nargs="?",
        const="-",
        help="write the plan as JSON ('-': print it)",
    )
    parser.set_defaults(func=run)
    return parser


def _kind(text: str) -> str:
    """What SOURCE names: "count", "file" or "builtin"; anything else is a DataError (no import needed)."""
    from epochpilot.errors import DataError
    from epochpilot.jobs.check import BUILTINS

    if text.isdigit():
        if int(text) < 1:
            raise DataError(
                f"the sample count must be >= 1, got {text}: give the number of training rows"
            )
        return "count"
    if os.path.exists(text):
        return "file"
    if text in BUILTINS:
        return "builtin"
    raise DataError(
        f"{text!r} is neither a file, a built-in data set ({', '.join(BUILTINS)}) nor a sample count"
    )


def _source(args: argparse.Namespace) -> Any:
    """A sample count, or an AuditReport of the CSV / built-in data set."""
    from epochpilot.data.audit.report import audit

    text = args.source
    kind = _kind(text)
    if kind == "count":
        return int(text)
    if kind == "file":
        return audit(text, target=args.target, text_column=args.text_column, fields={"train": ""})
    from epochpilot.data.table import load_builtin

    table = load_builtin(text, n_samples=args.n_samples)
    return audit(table.frame, target=table.target)


def _as_run_words(exc: Exception, source: str) -> Exception:
    """An error as :func:`run` reports it: naming the file when the message does not (the planner does not
    know it)."""
    from epochpilot.errors import DataError

    if os.path.isfile(source) and source not in str(exc):
        return DataError(f"{source}: {exc}")
    return exc


def precheck(args: argparse.Namespace) -> None:
    """``--json``, then a SOURCE that is no file, built-in or count (or a CSV that cannot be read), refused
    before numpy and pandas are imported, in :func:`run`'s words."""
    from epochpilot._files import check_output_path
    from epochpilot.cli._precheck import check_frame

    try:
        if args.json not in (None, "-"):
            check_output_path(args.json, "--json")
        if _kind(args.source) == "file":
            check_frame(args.source)
    except ValueError as exc:
        raise _as_run_words(exc, args.source) from None


def run(args: argparse.Namespace) -> int:
    """Print the plan; 0 on success; bad input: one line on stderr, exit code 2; a --json
    path that cannot be written is refused before the data is read."""
    from epochpilot._files import atomic_write_text, check_output_path
    from epochpilot.core.plan import plan

    try:
        if args.json not in (None, "-"):
            check_output_path(args.json, "--json")
        result = plan(
            _source(args),
            mode=args.mode,
            batch_size=args.batch_size,
            accumulation=args.accumulation,
            world_size=args.world_size,
            lr=args.lr,
            table=args.table,
        )
    except (ValueError, TypeError) as exc:  # DataError and ConfigError are ValueErrors
        return _fail(_as_run_words(exc, args.source))
    payload = json.dumps(result.to_dict(), indent=2)
    if args.json == "-":
        print(payload)
        return 0
    print(result)
    if args.json:
        try:
            atomic_write_text(args.json, payload + "\n", field="--json")
        except ValueError as exc:  # the disk filled up or the folder went away meanwhile
            return _fail(exc)
        print(f"JSON plan written to {args.json}")
    return 0


def _fail(exc: BaseException) -> int:
    """One line on stderr (``epochpilot plan: error: ...``, as every command's), exit code 2."""
    from epochpilot.cli.main import cap, error_line

    print(f"epochpilot plan: error: {cap(error_line(exc))}", file=sys.stderr)
    return 2

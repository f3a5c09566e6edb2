"""``epochpilot audit FILE``: print a data audit (duplicates, leakage, conflicts, balance) and write JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["add_parser", "precheck", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``audit`` subcommand on ``subparsers``."""
    parser = subparsers.add_parser(
        "audit",
        help="audit a CSV for duplicates, train/val leakage, label conflicts and class balance",
        description="Audit training data (and optional val/test splits) before training.",
    )
    parser.add_argument("file", metavar="FILE", help="training data as CSV")
    parser.add_argument(
        "--val", metavar="FILE", help="validation CSV, checked for overlap with train"
    )
    parser.add_argument("--test", metavar="FILE", help="test CSV, checked for overlap with train")
    parser.add_argument("--target", metavar="COL", help="label column")
    parser.add_argument("--text-column", metavar="COL", help="column holding free text")
    parser.add_argument(
        "--json",
        metavar="PATH",
        nargs="?",
        const="-",
        help="write the report as JSON to PATH ('-' or no PATH: print JSON instead of the table)",
    )
    parser.set_defaults(func=run)
    return parser


def precheck(args: argparse.Namespace) -> None:
    """``--json``, then a training FILE that cannot be read as CSV, refused before numpy and pandas are
    imported (the splits are read in order: the others are left to :func:`run`)."""
    from epochpilot._files import check_output_path
    from epochpilot.cli._precheck import check_frame

    if args.json not in (None, "-"):
        check_output_path(args.json, "--json")
    check_frame(args.file)


def run(args: argparse.Namespace) -> int:
    """Run the audit; 0 on success; bad input: one line on stderr, exit code 2; a --json
    path that cannot be written is refused before the audit runs."""
    from epochpilot._files import atomic_write_text, check_output_path
    from epochpilot.data.audit.report import audit

    try:
        if args.json not in (None, "-"):
            check_output_path(args.json, "--json")
        report = audit(
            args.file,
            args.val,
            args.test,
            target=args.target,
            text_column=args.text_column,
            fields={"train": "", "val": "--val", "test": "--test"},  # messages name what was typed
        )
    except (ValueError, TypeError) as exc:  # DataError and ConfigError are ValueErrors
        return _fail(exc)
    payload = json.dumps(report.to_dict(), indent=2)
    if args.json == "-":
        print(payload)
        return 0
    print(report.render(), end="")
    if args.json:
        try:
            atomic_write_text(args.json, payload + "\n", field="--json")
        except ValueError as exc:  # the disk filled up or the folder went away meanwhile
            return _fail(exc)
        print(f"JSON report written to {args.json}")
    return 0


def _fail(exc: BaseException) -> int:
    """One line on stderr (``epochpilot audit: error: ...``, as every command's), exit code 2."""
    from epochpilot.cli.main import cap, error_line

    print(f"epochpilot audit: error: {cap(error_line(exc))}", file=sys.stderr)
    return 2

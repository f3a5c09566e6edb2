"""``epochpilot audit FILE``: print a data audit (duplicates, leakage, conflicts, balance) and write JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["add_parser", "run"]


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


def run(args: argparse.Namespace) -> int:
    """Run the audit; 0 on success, 2 on bad input (one line on stderr)."""
    from epochpilot.audit import audit

    try:
        report = audit(
            args.file, args.val, args.test, target=args.target, text_column=args.text_column
        )
    except ValueError as exc:  # DataError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    payload = json.dumps(report.to_dict(), indent=2)
    if args.json == "-":
        print(payload)
        return 0
    print(report.render(), end="")
    if args.json:
        try:
            with open(args.json, "w", encoding="utf-8") as fh:
                fh.write(payload + "\n")
        except OSError as exc:
            print(f"error: cannot write --json {args.json!r}: {exc.strerror}", file=sys.stderr)
            return 2
        print(f"JSON report written to {args.json}")
    return 0

"""Range checks for the numeric flags of every subcommand, applied where the parsers are assembled.

argparse reads ``--max-epochs 0`` or ``--lr nan`` happily; :func:`check_flags` checks each parsed ``type=int``
/ ``type=float`` option against its declared range right after parsing, so a bad value is refused in one line
that names the flag as the user typed it (``--max-epochs must be >= 1, got 0``) before any file is read or
written.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

__all__ = ["FIXES", "FLOAT_RANGES", "INT_MINIMUMS", "batch_size_arg", "check_flags"]

#: Smallest allowed value of each integer flag (every subcommand that has it); others only need an integer.
INT_MINIMUMS: dict[str, int] = {
    "--max-epochs": 1,
    "--epochs": 1,
    "--max-steps": 1,
    "--steps": 1,
    "--batch-size": 1,
    "--effective-batch": 1,
    "--reference-batch": 1,
    "--max-batch": 1,
    "--accumulation": 1,
    "--world-size": 1,
    "--n-samples": 1,
    "--folds": 2,
    "--workers": 1,
    "--trials": 1,
    "--patience": 0,
    "--seed": 0,
    "--warmup-steps": 0,
    "--general-epochs": 0,
    "--lora-r": 1,
    "--max-length": 1,
    "--n-train": 1,
    "--n-general": 1,
}

#: What to do instead, for the flags where it is not obvious.
FIXES: dict[str, str] = {
    "--max-epochs": "train for at least one epoch",
    "--epochs": "train for at least one epoch (leave it out to plan the budget)",
    "--folds": "cross-validation needs at least two folds",
    "--patience": "the epochs to wait for an improvement (0: stop at the first epoch without one)",
    "--seed": "give a seed >= 0",
    "--effective-batch": "the samples per optimizer update (micro-batch x accumulation)",
    "--reference-batch": "the batch size the lr was chosen for",
}

#: (low, low allowed?, high or None, high allowed?) of float flags; every float flag must be finite.
FLOAT_RANGES: dict[str, tuple[float, bool, float | None, bool]] = {
    "--lr": (0.0, False, None, False),
    "--cooldown-fraction": (0.0, False, 1.0, True),
    "--extend": (0.0, True, None, False),
    "--head-lr": (0.0, False, None, False),
    "--lr-scale": (0.0, False, None, False),
    "--task-weight": (0.0, False, None, False),
    "--timeout": (0.0, False, None, False),
    "--max-drop": (0.0, True, None, False),
    "--retention": (0.0, True, None, False),
    "--val-fraction": (0.0, False, 1.0, False),
    "--test-fraction": (0.0, True, 1.0, False),
    "--replay": (0.0, True, 1.0, False),
}


def batch_size_arg(text: str) -> int | str:
    """``--batch-size``'s value: ``"auto"`` (search the micro-batch) or an integer >= 1; anything else is
    refused by argparse in one line (``--batch-size must be an integer >= 1 or 'auto', got 'big'``)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an integer >= 1 or 'auto', got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"must be >= 1, got {value}: or 'auto' with --effective-batch N to search it"
        )
    return value


def _problem(flag: str, kind: type, value: Any) -> str | None:
    """What is wrong with one parsed value of ``flag`` (None: nothing)."""
    if kind is int:
        minimum = INT_MINIMUMS.get(flag)
        if minimum is None or value >= minimum:
            return None
        fix = f": {FIXES[flag]}" if flag in FIXES else ""
        return f"must be >= {minimum}, got {value}{fix}"
    shown = f"{value:g}"
    if flag not in FLOAT_RANGES:
        return None if math.isfinite(value) else f"must be a finite number, got {shown}"
    low, low_ok, high, high_ok = FLOAT_RANGES[flag]
    above = value >= low if low_ok else value > low
    below = high is None or (value <= high if high_ok else value < high)
    if math.isfinite(value) and above and below:
        return None
    if high is None:
        return f"must be a number {'>=' if low_ok else '>'} {low:g}, got {shown}"
    left, right = "[" if low_ok else "(", "]" if high_ok else ")"
    return f"must be in {left}{low:g}, {high:g}{right}, got {shown}"


def check_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse (through ``parser.error``: one line, exit 2) a numeric option of ``parser`` whose parsed value
    in ``args`` is out of its declared range or not finite."""
    for action in parser._actions:
        if action.type not in (int, float) or not action.option_strings:
            continue
        flag = max(action.option_strings, key=len)
        values = getattr(args, action.dest, None)
        if action.nargs is None and isinstance(values, list):  # argparse turns "--flag=--" into []
            parser.error(f"argument {flag}: expected one value, got {values!r}")
        for value in values if isinstance(values, list) else [values]:
            if value is None or value is action.default:
                continue
            problem = _problem(flag, action.type, value)
            if problem:
                parser.error(f"argument {flag}: {problem}")

"""The user's mistakes answered before torch, pandas or numpy is imported (``epochpilot --help`` in ~0.1 s).

A command may define ``precheck(args)``: :func:`epochpilot.cli.main.main` calls it before it imports the
command's machinery, and it raises the same one-line error the command would raise first, or returns when
the input looks fine (or when telling needs the heavy libraries: then the command answers as before, only
later). It must never raise an error the command would not: each check here runs only where the command
would reach the same check first, and :func:`check_csv` is held to :func:`epochpilot.data.table.read_csv`'s
messages by a test that compares the two on generated files.
"""

from __future__ import annotations

import csv
import difflib
import io
import os
from pathlib import Path

from epochpilot.data.csvfile import _duplicate_columns, check_csv_file
from epochpilot.errors import ConfigError, DataError, short_list

__all__ = ["SCAN_LIMIT", "check_csv", "check_frame", "check_run_dir_arg", "fresh_run_dir"]

#: Largest CSV read whole here (bytes): a bigger file gets only the checks of its path and first bytes.
SCAN_LIMIT = 8 * 1024 * 1024

#: What pandas counts as a blank line (skipped, though counted in line numbers): only spaces and tabs.
_BLANK = " \t"


def fresh_run_dir(path: str | Path, *, overwrite: bool = False, resume: bool = False) -> bool:
    """True when the run-directory check of a training command would pass without a word: the folder is
    missing or empty and no copy of it was left aside by a killed ``--overwrite``. Only then are the data
    checked first (the commands check the folder before the data)."""
    if overwrite and resume:  # refused by the run-directory check
        return False
    path = Path(os.path.abspath(path))
    try:
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            return False
        if path.parent.is_dir():
            prefix = f".{path.name}"
            return not any(entry.name.startswith(prefix) for entry in path.parent.iterdir())
    except OSError:
        return False
    return True


def check_run_dir_arg(path: Path) -> None:
    """A RUN_DIR of ``predict``/``evaluate``/``resume``/``report``/``compare`` that is not a folder, as
    :func:`epochpilot.cli.runs._run_dir` refuses it (when no copy of it was left aside, which it would
    settle first)."""
    key = Path(os.path.abspath(path))
    try:
        if key.is_dir() or (
            key.parent.is_dir()
            and any(e.name.startswith(f".{key.name}") for e in key.parent.iterdir())
        ):
            return
    except OSError:
        return
    raise ConfigError(f"{path} is not a run directory: give the directory 'epochpilot train' wrote")


def check_csv(csv_path: str | Path, target: str, limit: int = SCAN_LIMIT) -> None:
    """Raise the DataError that :func:`epochpilot.data.table.read_csv` would raise first for this file and target
    (missing, a folder, binary, UTF-16, empty, a line with too many fields, duplicate or missing columns),
    without pandas; return when it would raise none of them, or when only pandas can tell."""
    path = Path(csv_path)
    table = check_frame(path, limit=limit)
    if table is None:
        return
    names, has_rows = table
    if not has_rows:
        raise DataError(f"{path} has a header but no data rows: add rows")
    if target not in names:
        near = difflib.get_close_matches(target, names, n=1)
        hint = f"did you mean {near[0]!r}?" if near else f"columns are: {short_list(names)}"
        raise DataError(f"{path} has no target column {target!r}: {hint}")
    if len(names) < 2:
        raise DataError(f"{path} has only the target column: add feature columns")


def check_frame(
    csv_path: str | Path, field: str | None = None, limit: int = SCAN_LIMIT
) -> tuple[list[str], bool] | None:
    """Raise the DataError that :func:`epochpilot.data.csvfile.read_frame` would raise for this file (``field``: the
    flag that gave it), without pandas; else return the column names pandas would read and whether it has
    a data row, or None when only pandas can tell (a line break inside quotes, not UTF-8, over ``limit``
    bytes, ...)."""
    label, data = check_csv_file(csv_path, field, limit)
    path = Path(csv_path)
    if len(data) > limit or b"\x00" in data:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:  # pandas names the byte by an offset of its own
        return None
    # a byte-order mark, or old Mac line ends (a lone CR): pandas reads those its own way
    if text.startswith("\ufeff") or "\r" in text.replace("\r\n", ""):
        return None
    parsed = _parse(text)
    if parsed is None:
        return None
    if not parsed:
        raise DataError(f"{label} is empty: give a CSV with a header row and data rows")
    names, has_rows, problem = parsed
    if problem:
        raise DataError(f"{label} cannot be parsed as CSV {problem}: fix that line")
    duplicates = _duplicate_columns(path)
    if duplicates:
        raise DataError(
            f"{label} has duplicate column names {short_list(duplicates)}: give each column its own name"
        )
    if len(set(names)) < len(names):  # blank names the check above skips: pandas renames them
        return None
    return names, has_rows


def _field_counts(lines: list[str], quoted: bool) -> list[int] | None:
    """The number of fields on each line; None when a quoted field holds a line break (a record spans
    lines: pandas numbers those its own way). Without quotes, a line's fields are its commas plus one."""
    if not quoted:
        return [line.count(",") + 1 for line in lines]
    reader = csv.reader(lines)
    counts = []
    for number, record in enumerate(reader, start=1):
        if reader.line_num != number:
            return None
        counts.append(len(record))
    return counts


def _parse(text: str) -> tuple[list[str], bool, str | None] | tuple[()] | None:
    """Read ``text`` as pandas' C parser would, where the two surely agree: ``()`` for no header (an
    empty file), else (column names, whether a data row follows, the first line with too many fields as
    "at line L: expected N fields, saw M" or None); None when only pandas can tell."""
    lines = io.StringIO(text, newline="").readlines()
    counts = _field_counts(lines, '"' in text)
    if counts is None:
        return None
    # lines of spaces and tabs are skipped (though counted in line numbers), as pandas skips them
    filled = (
        i for i, line in enumerate(lines) if counts[i] > 1 or line.rstrip("\r\n").strip(_BLANK)
    )
    header = next(filled, None)
    if header is None:
        return ()
    names = [cell or f"Unnamed: {i}" for i, cell in enumerate(next(csv.reader([lines[header]])))]
    first = next(filled, None)
    if first is None:
        return names, False, None
    # more fields on the first data row than in the header: pandas reads the first ones as the index
    expected = max(len(names), counts[first])
    if max(counts[first:]) > expected:
        bad = next(i for i in range(first, len(counts)) if counts[i] > expected)
        return names, True, f"at line {bad + 1}: expected {expected} fields, saw {counts[bad]}"
    return names, True, None

"""Reading a CSV file as a user gave it: UTF-8 text with a header row, every problem one line naming the file.

Used by every command that reads a CSV (training data, rows to predict, audit splits), so that an encoding other
than UTF-8, a binary file, a bad line or duplicate column names give the same message everywhere.
"""

from __future__ import annotations

import collections
import csv
import errno
import re
from pathlib import Path
from typing import TYPE_CHECKING

from epochpilot.errors import DataError, short_list

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["read_frame"]

#: Byte-order marks of the encodings a spreadsheet may save that are not UTF-8.
_BOMS = {
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}


#: the fix for text that is not UTF-8
_SAVE = "save it as UTF-8 CSV (in a spreadsheet: Save As > CSV UTF-8)"
_FIELDS = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def check_csv_file(path: str | Path, field: str | None = None, limit: int = 0) -> tuple[str, bytes]:
    """The file-level checks of a CSV, without pandas: ``(label, bytes)`` (the first 8 KiB, or up to ``limit``
    + 1 bytes when ``limit`` is larger), else one DataError line naming the file (and ``field``) and the fix:
    an empty path, missing, a folder, unreadable, UTF-16/32 or binary."""
    if not str(path).strip():
        raise DataError(f"{field or 'the CSV path'} is empty ({str(path)!r}): give a CSV file")
    path = Path(path)
    label = f"{field} {path}" if field else str(path)
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except OSError as exc:  # a name too long, a loop of links: stat itself fails
        fix = "use a shorter path" if exc.errno == errno.ENAMETOOLONG else "check the path"
        raise DataError(f"{label}: cannot read it ({exc.strerror}): {fix}") from None
    if not exists:
        raise DataError(f"{label}: no such file; check the path")
    if is_dir:
        raise DataError(f"{label} is a directory; give a CSV file")
    try:
        with path.open("rb") as fh:
            head = fh.read(8192)
            more = fh.read(max(0, limit + 1 - len(head))) if len(head) == 8192 else b""
    except OSError as exc:
        raise DataError(
            f"{label}: cannot read it ({exc.strerror}): check its permissions"
        ) from None
    save = _SAVE
    for bom, name in _BOMS.items():
        if head.startswith(bom):
            raise DataError(f"{label} is {name} text, not UTF-8: {save}")
    if b"\x00" in head:
        raise DataError(f"{label} is a binary file, not CSV text: {save}")
    return label, head + more


def read_frame(path: str | Path, field: str | None = None) -> pd.DataFrame:
    """Read a CSV with a header row, as text in UTF-8; every problem is one DataError line naming the file (and
    ``field``, the flag or key that gave it, when known) and the fix: missing, a folder, empty, binary or
    UTF-16, unparsable, or with duplicate column names (which pandas would silently rename ``a.1``)."""
    label, _ = check_csv_file(path, field)
    path = Path(path)
    import pandas as pd  # here: the file checks above answer without it (see epochpilot.cli._precheck)

    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{label} is empty: give a CSV with a header row and data rows") from None
    except pd.errors.ParserError as exc:
        match = _FIELDS.search(str(exc))
        where = (
            "at line {1}: expected {0} fields, saw {2}".format(*match.groups())
            if match
            else " ".join(str(exc).split())
        )
        raise DataError(f"{label} cannot be parsed as CSV {where}: fix that line") from None
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{label} is not UTF-8 text (byte {exc.object[exc.start : exc.start + 1]!r} at offset "
            f"{exc.start:,}): {_SAVE}"
        ) from None
    duplicates = _duplicate_columns(path)
    if duplicates:
        raise DataError(
            f"{label} has duplicate column names {short_list(duplicates)}: give each column its own name"
        )
    # named by later errors about these rows (kept by slices and splits)
    frame.attrs["source"] = str(path)
    return frame


def _duplicate_columns(path: Path) -> list[str]:
    """Names that appear more than once in the header row (the first non-blank line)."""
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.reader(fh):
            if any(cell.strip() for cell in row):
                counts = collections.Counter(cell for cell in row if cell)
                return [name for name, n in counts.items() if n > 1]
    return []

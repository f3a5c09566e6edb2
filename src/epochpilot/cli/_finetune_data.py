"""The labelled texts of ``epochpilot finetune`` from a CSV file, shared by the plain and the mixed run (so
neither command module imports the other)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def missing_column(path: Path, columns: Any, text_column: str, target: str, flag: str) -> None:
    """Refuse a CSV without the text or the label column, naming the option that names it."""
    from epochpilot.errors import DataError, short_list

    for column, option in ((text_column, "--text-column"), (target, "--target")):
        if column not in columns:
            raise DataError(
                f"{flag} {path} has no column {column!r}: set {option} "
                f"(columns: {short_list(columns)})"
            )


def csv_texts(path: Path, text_column: str, target: str, flag: str) -> Any:
    """A TextSet from a CSV's text and label columns (classes sorted by name); bad files are DataErrors."""
    import numpy as np

    from epochpilot.data.csvfile import read_frame
    from epochpilot.data.text import TextSet
    from epochpilot.errors import DataError

    frame = read_frame(
        path, flag
    )  # missing, empty, binary, UTF-16, unparsable: one line naming the file
    missing_column(path, frame.columns, text_column, target, flag)
    frame = frame.dropna(subset=[text_column, target])
    classes = sorted(frame[target].astype(str).unique())
    if len(classes) < 2 and flag == "--data":
        raise DataError(
            f"{flag} {path}: column {target!r} has a single class: fine-tuning a classifier needs two"
        )
    if not classes:
        raise DataError(f"{flag} {path} has no labelled rows")
    index = {c: i for i, c in enumerate(classes)}
    labels = np.asarray([index[v] for v in frame[target].astype(str)], dtype=np.int64)
    return TextSet(frame[text_column].astype(str).tolist(), labels, classes)

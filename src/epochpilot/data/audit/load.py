"""Turn what users pass to ``audit`` (arrays, DataFrames, torch Datasets, CSV paths) into one frame shape.

Every split becomes a :class:`Split`: a pandas DataFrame of feature columns (numeric ones cast to float64 so
that the same value hashes the same in every split) plus an optional label Series. Bad input raises a one-line
:class:`DataError` naming the split and the fix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from epochpilot.errors import DataError, short_list

__all__ = ["DataError", "Split", "load_split"]


@dataclass(frozen=True)
class Split:
    """One data split: features (DataFrame), labels (Series or None), and where it came from."""

    name: str
    features: pd.DataFrame
    labels: pd.Series | None
    text_column: str | None
    where: str = (
        ""  # how messages name it: "train (data.csv)", or "--val val.csv" from the command line
    )


def read_csv(path: str | os.PathLike[str], name: str = "data") -> pd.DataFrame:
    """Read a CSV file; every problem (missing, empty, binary, not UTF-8, a bad line, duplicate column names)
    is a one-line DataError naming the split, the file and the fix."""
    from epochpilot.data.table import read_frame

    try:
        return read_frame(os.fspath(path))
    except DataError as exc:
        raise DataError(f"{name}: {exc}") from None


def _from_torch(data: Any, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Materialise a torch Dataset (TensorDataset fast path, else item by item) as (X, y) arrays."""
    import torch  # only here: audit works without torch for arrays, frames and CSVs

    tensors = getattr(data, "tensors", None)
    if isinstance(tensors, tuple) and tensors and all(isinstance(t, torch.Tensor) for t in tensors):
        x = tensors[0].detach().cpu()
        y = tensors[1].detach().cpu().numpy() if len(tensors) > 1 else None
        return x.reshape(len(x), -1).numpy(), y
    xs, ys = [], []
    for i in range(len(data)):
        item = data[i]
        if isinstance(item, (tuple, list)):
            x, y = item[0], (item[1] if len(item) > 1 else None)
        else:
            x, y = item, None
        xs.append(np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x).reshape(-1))
        if y is not None:
            ys.append(y.item() if isinstance(y, torch.Tensor) and y.numel() == 1 else np.asarray(y))
    if not xs:
        raise DataError(f"{name}: the Dataset is empty: pass at least one sample")
    if len({x.shape for x in xs}) > 1:
        raise DataError(
            f"{name}: Dataset items have different shapes: pad or resize them to one shape"
        )
    return np.stack(xs), (np.asarray(ys) if len(ys) == len(xs) else None)


def _is_torch_dataset(data: Any) -> bool:
    return type(data).__module__.startswith("torch") or any(
        c.__module__.startswith("torch.utils.data") for c in type(data).__mro__
    )


def _frame_from_arrays(
    x: Any, y: Any, name: str, target: str | None
) -> tuple[pd.DataFrame, str | None]:
    x = np.asarray(x)
    if x.ndim == 1:
        x = x.reshape(-1, 1)
    elif x.ndim > 2:
        x = x.reshape(len(x), -1)
    if x.ndim == 0:
        raise DataError(f"{name}: got a scalar: pass a 2-D array of rows (samples x features)")
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])])
    if y is None:
        return frame, None
    y = np.asarray(y)
    if y.ndim > 1:
        y = y.reshape(len(y), -1)
        if y.shape[1] != 1:
            raise DataError(f"{name}: labels have shape {y.shape}: pass one label per row (1-D)")
        y = y[:, 0]
    if len(y) != len(frame):
        raise DataError(
            f"{name}: X has {len(frame)} rows but y has {len(y)}: pass one label per row"
        )
    label = target or "target"
    frame[label] = y
    return frame, label


def load_split(
    data: Any,
    name: str,
    *,
    target: str | None,
    text_column: str | None,
    field: str | None = None,
) -> Split:
    """Normalise one split; ``data`` is an array, (X, y) tuple, DataFrame, torch Dataset, list of
    strings or CSV path. ``field``, for a CSV path given on the command line, is the flag that gave it
    (``--val``; ``""`` for a positional argument): messages then name the flag and the file, not the split."""
    label, where = target, name
    if isinstance(data, (str, os.PathLike)):
        if field is None:
            frame = read_csv(data, name)
            where = f"{name} ({os.fspath(data)})"  # later messages name the file too
        else:
            from epochpilot.data.table import read_frame

            frame = read_frame(os.fspath(data), field or None)
            where = f"{field} {os.fspath(data)}".strip()
    elif isinstance(data, pd.DataFrame):
        frame = data.reset_index(drop=True)
    elif isinstance(data, pd.Series):
        frame = data.to_frame(name=data.name if data.name is not None else "x0").reset_index(
            drop=True
        )
    elif isinstance(data, tuple) and len(data) == 2:
        frame, label = _frame_from_arrays(data[0], data[1], name, target)
    elif isinstance(data, list) and data and all(isinstance(s, str) for s in data):
        column = text_column or "text"
        frame, text_column = pd.DataFrame({column: data}), column
    elif isinstance(data, np.ndarray):
        frame, _ = _frame_from_arrays(data, None, name, None)
    elif _is_torch_dataset(data):
        x, y = _from_torch(data, name)
        frame, label = _frame_from_arrays(x, y, name, target)
    elif isinstance(data, list):
        if not data:
            raise DataError(f"{name}: the data is empty: pass at least one row")
        frame, _ = _frame_from_arrays(np.asarray(data), None, name, None)
    else:
        raise DataError(
            f"{name}: cannot audit a {type(data).__name__}: pass an array, (X, y) tuple, DataFrame, "
            "torch Dataset or CSV path"
        )
    if len(frame) == 0 or frame.shape[1] == 0:
        raise DataError(f"{where}: the data is empty (0 rows): pass at least one row")
    if label is not None and label not in frame.columns:
        raise DataError(
            f"{where}: target column {label!r} not found (--target); columns are "
            f"{short_list(frame.columns)}"
        )
    if text_column is not None and text_column not in frame.columns:
        raise DataError(
            f"{where}: text_column {text_column!r} not found (--text-column); columns are "
            f"{short_list(frame.columns)}"
        )
    labels = frame[label].reset_index(drop=True) if label is not None else None
    features = frame.drop(columns=[label]) if label is not None else frame
    if features.shape[1] == 0:
        raise DataError(
            f"{where}: no feature columns besides the target {label!r}: add feature columns"
        )
    return Split(name, _normalise(features, where, text_column), labels, text_column, where)


def _normalise(features: pd.DataFrame, name: str, text_column: str | None) -> pd.DataFrame:
    """Cast numeric and boolean columns to float64; reject text columns unless named as text."""
    out = {}
    for column in features.columns:
        series = features[column]
        if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
            out[column] = series.astype("float64")
            if np.isinf(out[column].to_numpy()).any():
                inf = [c for c in features.columns if _has_inf(features[c])]
                rows = int(np.isinf(features[inf].to_numpy(dtype="float64")).any(axis=1).sum())
                raise DataError(
                    f"{name}: infinite values (inf) in {rows:,} row(s) of columns [{short_list(inf)}]: "
                    "replace them with numbers or drop those rows"
                )
        elif column == text_column:
            out[column] = series.astype("string").fillna("").astype(object)
        elif text_column is None:
            raise DataError(
                f"{name}: column {column!r} is not numeric: pass text_column={column!r} "
                "(--text-column) if it is text, or encode it as numbers"
            )
        else:  # other categorical columns alongside a text column: compared as strings
            out[column] = series.astype("string").fillna("<NA>").astype(object)
    return pd.DataFrame(out, index=range(len(features)))


def _has_inf(series: pd.Series) -> bool:
    numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    return bool(numeric and np.isinf(series.to_numpy(dtype="float64")).any())

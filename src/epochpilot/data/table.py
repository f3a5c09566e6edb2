"""Built-in data sets and CSV loading with the preprocessing a prediction needs later, kept in plain JSON.

Everything that turns a raw table into model input (column order, imputation values, scaling statistics, label
mapping, task) lives in a :class:`Preprocessor` that is saved beside the weights, so new data is scored without the
training data.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from epochpilot._files import atomic_write_text
from epochpilot.data.csvfile import read_frame
from epochpilot.errors import DataError, short_list

__all__ = [
    "BUILTINS",
    "Preprocessor",
    "Table",
    "load_builtin",
    "read_csv",
    "read_frame",
    "write_builtin_csv",
]

BUILTINS = ("digits", "breast_cancer", "wine", "mnist1d", "diabetes")
IMPUTE = ("mean", "median", "zero")
TASKS = ("classification", "regression")


@dataclass
class Table:
    """A feature table with its target column: ``frame`` holds features + target as loaded."""

    frame: pd.DataFrame
    target: str
    name: str = "data"
    #: the file the rows came from (named in error messages), when they came from one
    source: str | None = None

    @property
    def features(self) -> list[str]:
        """Feature column names in file order."""
        return [c for c in self.frame.columns if c != self.target]


def load_builtin(name: str, *, n_samples: int | None = None, seed: int = 0) -> Table:
    """One of scikit-learn's digits/breast_cancer/wine/diabetes (shipped with it) or MNIST-1D (generated
    locally); diabetes is a regression target, the others are classes."""
    if name not in BUILTINS:
        raise DataError(f"unknown built-in data set {name!r}: choose one of {', '.join(BUILTINS)}")
    if name == "mnist1d":
        X, y = _mnist1d(n_samples or 4000, seed)
    else:
        from sklearn import datasets

        bunch = getattr(datasets, f"load_{name}")()
        X, y = bunch.data, bunch.target
    columns = [f"x{i}" for i in range(X.shape[1])]
    frame = pd.DataFrame(np.asarray(X, dtype=np.float64), columns=columns)
    frame["target"] = (
        np.asarray(y, dtype=np.float64) if name == "diabetes" else np.asarray(y).astype(int)
    )
    if n_samples is not None and n_samples < len(frame):
        frame = frame.sample(n=n_samples, random_state=seed).reset_index(drop=True)
    return Table(frame, "target", name)


def _mnist1d(n_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Generate MNIST-1D locally (no download): 40-long signals, 10 classes."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = int(n_samples / (1 - args.train_split)) + 1
    args.seed = seed
    data = make_dataset(args)
    X = np.concatenate([data["x"], data["x_test"]])[:n_samples]
    y = np.concatenate([data["y"], data["y_test"]])[:n_samples]
    return X, y


def write_builtin_csv(name: str, path: str | Path, **kwargs: Any) -> Path:
    """Write a built-in data set as a CSV with a ``target`` column (for trying the CLI on a file)."""
    table = load_builtin(name, **kwargs)
    path = Path(path)
    atomic_write_text(path, table.frame.to_csv(index=False))
    return path


def read_csv(path: str | Path, target: str) -> Table:
    """Read a CSV with a header row; errors name the file, the line or the column, and the fix."""
    path = Path(path)
    frame = read_frame(path)
    if frame.empty:
        raise DataError(f"{path} has a header but no data rows: add rows")
    if target not in frame.columns:
        columns = [str(c) for c in frame.columns]
        near = difflib.get_close_matches(target, columns, n=1)
        hint = f"did you mean {near[0]!r}?" if near else f"columns are: {short_list(columns)}"
        raise DataError(f"{path} has no target column {target!r}: {hint}")
    if len(frame.columns) < 2:
        raise DataError(f"{path} has only the target column: add feature columns")
    return Table(frame, target, path.stem, str(path))


def infer_task(y: pd.Series) -> str:
    """'classification' for text labels or a few distinct integers, else 'regression'."""
    if not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y):
        return "classification"
    values = y.dropna().to_numpy()
    if np.all(np.equal(np.mod(values, 1), 0)) and len(np.unique(values)) <= 20:
        return "classification"
    return "regression"


@dataclass
class Preprocessor:
    """Column order, imputation, standardisation and label mapping learned on the training rows."""

    features: list[str]
    target: str
    task: str
    mean: list[float]
    scale: list[float]
    fill: list[float] = field(default_factory=list)
    classes: list[Any] = field(default_factory=list)
    impute: str | None = None
    #: regression targets are standardised for training (an MLP learns far better on unit-scale targets)
    y_mean: float = 0.0
    y_scale: float = 1.0

    @classmethod
    def fit(
        cls, table: Table, *, task: str | None = None, impute: str | None = None
    ) -> Preprocessor:
        """Learn the preprocessing from a training table; bad columns raise a DataError naming them."""
        if impute is not None and impute not in IMPUTE:
            raise DataError(f"impute must be one of {', '.join(IMPUTE)}, got {impute!r}")
        frame, target = table.frame, table.target
        where = _where(frame, table.source)
        y = frame[target]
        if y.isna().any():
            rows = [int(i) + 2 for i in np.flatnonzero(y.isna().to_numpy())[:5]]
            raise DataError(
                f"{where}target column {target!r} is empty on CSV lines {rows}: fill or drop those rows"
            )
        if pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(y):
            _refuse_inf(y.to_numpy(dtype=np.float64).reshape(-1, 1), [target], where)
        task = task or infer_task(y)
        if task not in TASKS:
            raise DataError(f"task must be 'classification' or 'regression', got {task!r}")
        features = table.features
        bad = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
        if bad:
            raise DataError(
                f"{where}non-numeric feature columns [{short_list(bad)}]: encode them as numbers or drop "
                f"them (text columns need --text-column in 'epochpilot audit')"
            )
        X = frame[features].to_numpy(dtype=np.float64)
        _refuse_inf(X, features, where)
        missing = [c for c, m in zip(features, np.isnan(X).any(axis=0)) if m]
        if missing and impute is None:
            raise DataError(
                f"{where}missing values in columns [{short_list(missing)}]: pass --impute "
                f"mean|median|zero or fill them"
            )
        if impute == "median":
            fill = np.nanmedian(X, axis=0)
        elif impute == "mean":
            fill = np.nanmean(X, axis=0)
        else:
            fill = np.zeros(X.shape[1])
        fill = np.where(np.isnan(fill), 0.0, fill)
        X = np.where(np.isnan(X), fill, X)
        with np.errstate(over="ignore", invalid="ignore"):
            mean, scale = X.mean(axis=0), X.std(axis=0)
        huge = [
            c for c, m, v in zip(features, mean, scale) if not (np.isfinite(m) and np.isfinite(v))
        ]
        if huge:
            raise DataError(
                f"{where}values too large to scale in columns [{short_list(huge)}]: rescale them "
                f"(e.g. divide by 1e6) or take their log"
            )
        scale = np.where(scale > 0, scale, 1.0)
        classes: list[Any] = []
        if task == "classification":
            classes = sorted(pd.unique(y).tolist(), key=lambda v: (str(type(v)), v))
            if len(classes) < 2:
                raise DataError(
                    f"target column {target!r} has a single class ({classes[0]!r}): "
                    f"classification needs at least two; use --task regression or add data"
                )
        y_mean, y_scale = 0.0, 1.0
        if task == "regression":
            values = y.to_numpy(dtype=np.float64)
            y_mean, y_scale = float(values.mean()), float(values.std()) or 1.0
        return cls(
            features,
            target,
            task,
            mean.tolist(),
            scale.tolist(),
            fill.tolist(),
            classes,
            impute,
            y_mean,
            y_scale,
        )

    @property
    def n_outputs(self) -> int:
        """Width of the model's output layer."""
        return len(self.classes) if self.task == "classification" else 1

    def transform(
        self, frame: pd.DataFrame, *, with_target: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Features as float32 (and encoded targets) for new rows; column mismatches raise a DataError."""
        where = _where(frame)
        absent = [c for c in self.features if c not in frame.columns]
        if absent:
            raise DataError(
                f"{where}missing feature columns [{short_list(absent)}]: the model was trained with "
                f"{len(self.features):,} columns ({short_list(self.features)})"
            )
        extra = [c for c in frame.columns if c not in self.features and c != self.target]
        if extra:
            raise DataError(
                f"{where}unexpected columns [{short_list(extra)}]: drop them (the model uses "
                f"{short_list(self.features)})"
            )
        bad = [c for c in self.features if not pd.api.types.is_numeric_dtype(frame[c])]
        if bad:
            raise DataError(
                f"{where}non-numeric values in columns [{short_list(bad)}]: the model needs numbers there"
            )
        X = frame[self.features].to_numpy(dtype=np.float64)
        _refuse_inf(X, self.features, where)
        nan_cols = [c for c, m in zip(self.features, np.isnan(X).any(axis=0)) if m]
        if nan_cols and self.impute is None:
            raise DataError(
                f"{where}missing values in columns [{short_list(nan_cols)}]: fill them (the model was "
                f"trained without --impute)"
            )
        X = np.where(np.isnan(X), np.asarray(self.fill), X)
        X = ((X - np.asarray(self.mean)) / np.asarray(self.scale)).astype(np.float32)
        if not with_target or self.target not in frame.columns:
            return X, None
        return X, self.encode(frame[self.target])

    def encode(self, y: pd.Series) -> np.ndarray:
        """Targets as class indices (int64) or standardised float32 values."""
        if self.task == "regression":
            return ((y.to_numpy(dtype=np.float64) - self.y_mean) / self.y_scale).astype(np.float32)
        index = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted({v for v in y.tolist() if v not in index}, key=str)
        if unknown:
            raise DataError(
                f"labels [{short_list(unknown)}] were not seen in training (known: "
                f"{short_list(self.classes)})"
            )
        return np.asarray([index[v] for v in y.tolist()], dtype=np.int64)

    def decode(self, indices: np.ndarray) -> list[Any]:
        """Class indices back to the original labels."""
        return [self.classes[int(i)] for i in indices]

    def decode_values(self, outputs: np.ndarray) -> np.ndarray:
        """Regression outputs back to the target's own units."""
        return np.asarray(outputs, dtype=np.float64) * self.y_scale + self.y_mean

    def to_json(self, path: str | Path) -> None:
        """Save as plain JSON (no pickle)."""
        atomic_write_text(path, json.dumps(asdict(self), indent=2, default=_json_default))

    @classmethod
    def from_json(cls, path: str | Path) -> Preprocessor:
        """Load what :meth:`to_json` wrote; a damaged or foreign file is one DataError naming the file and
        what is wrong with it."""
        import dataclasses
        import math

        from epochpilot._files import read_json_file

        path = Path(path)
        fix = "restore the file or train the run again"
        data = read_json_file(path, DataError, fix)

        def bad(what: str) -> DataError:
            return DataError(f"{path} is not an epochpilot preprocessor: {what}; {fix}")

        if not isinstance(data, dict):
            raise bad(f"it holds a JSON {type(data).__name__}, not an object")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in data if k not in names]
        if unknown:
            raise bad(f"unknown keys {short_list(unknown, 5)}")
        absent = [k for k in ("features", "target", "task", "mean", "scale") if k not in data]
        if absent:
            raise bad(f"missing keys {short_list(absent, 5)}")

        def numbers(key: str, n: int | None) -> None:
            values = data.get(key, [])
            ok = isinstance(values, list) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in values
            )
            if not ok or (n is not None and len(values) != n):
                size = f"{n} " if n is not None else ""
                raise bad(f"{key!r} must be a list of {size}finite numbers")

        features = data["features"]
        if not isinstance(features, list) or not all(isinstance(c, str) for c in features):
            raise bad("'features' must be a list of column names")
        if not isinstance(data["target"], str):
            raise bad("'target' must be a column name")
        if data["task"] not in TASKS:
            raise bad(f"'task' must be one of {', '.join(TASKS)}, got {data['task']!r}")
        numbers("mean", len(features))
        numbers("scale", len(features))
        if any(v == 0 for v in data["scale"]):
            raise bad("'scale' holds a zero")
        if data.get("fill"):
            numbers("fill", len(features))
        if data.get("impute") is not None and data["impute"] not in IMPUTE:
            raise bad(
                f"'impute' must be one of {', '.join(IMPUTE)} or null, got {data['impute']!r}"
            )
        classes = data.get("classes", [])
        if not isinstance(classes, list) or any(isinstance(c, (list, dict)) for c in classes):
            raise bad("'classes' must be a list of labels")
        if data["task"] == "classification" and len(classes) < 2:
            raise bad("a classifier needs at least two 'classes'")
        for key in ("y_mean", "y_scale"):
            value = data.get(key, 0.0 if key == "y_mean" else 1.0)
            if (
                not isinstance(value, (int, float))
                or isinstance(value, bool)
                or not math.isfinite(value)
            ):
                raise bad(f"{key!r} must be a finite number")
        if data.get("y_scale", 1.0) == 0:
            raise bad("'y_scale' is zero")
        return cls(**data)


def _where(frame: pd.DataFrame, source: str | None = None) -> str:
    """``"FILE: "`` for messages about rows read from FILE (by :func:`read_frame`), else ``""``."""
    source = source or frame.attrs.get("source")
    return f"{source}: " if source else ""


def _refuse_inf(X: np.ndarray, columns: list[str], where: str) -> None:
    """A DataError naming the columns and the number of rows holding inf or -inf (never trained on)."""
    inf = np.isinf(X)
    if not inf.any():
        return
    named = [c for c, m in zip(columns, inf.any(axis=0)) if m]
    rows = int(inf.any(axis=1).sum())
    raise DataError(
        f"{where}infinite values (inf) in {rows:,} row{'s' if rows != 1 else ''} of columns "
        f"[{short_list(named)}]: replace them with numbers (or leave them empty and use --impute) "
        f"or drop those rows"
    )


def _json_default(value: Any) -> Any:
    """numpy scalars in class lists become plain Python values."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in JSON")

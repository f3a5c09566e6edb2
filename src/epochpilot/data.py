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

from epochpilot.errors import DataError

__all__ = [
    "BUILTINS",
    "Preprocessor",
    "Table",
    "load_builtin",
    "read_csv",
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
    table.frame.to_csv(path, index=False)
    return path


def read_csv(path: str | Path, target: str) -> Table:
    """Read a CSV with a header row; errors name the file, the line or the column, and the fix."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise DataError(f"{path} is a directory; give a CSV file")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty: give a CSV with a header row and data rows") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path} cannot be parsed as CSV: {' '.join(str(exc).split())}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text: save it as a UTF-8 CSV") from None
    if frame.empty:
        raise DataError(f"{path} has a header but no data rows: add rows")
    if target not in frame.columns:
        near = difflib.get_close_matches(target, [str(c) for c in frame.columns], n=1)
        hint = (
            f"did you mean {near[0]!r}?"
            if near
            else f"columns are: {', '.join(map(str, frame.columns))}"
        )
        raise DataError(f"{path} has no target column {target!r}: {hint}")
    if len(frame.columns) < 2:
        raise DataError(f"{path} has only the target column: add feature columns")
    return Table(frame, target, path.stem)


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
        y = frame[target]
        if y.isna().any():
            rows = [int(i) + 2 for i in np.flatnonzero(y.isna().to_numpy())[:5]]
            raise DataError(
                f"target column {target!r} is empty on CSV lines {rows}: fill or drop those rows"
            )
        task = task or infer_task(y)
        if task not in TASKS:
            raise DataError(f"task must be 'classification' or 'regression', got {task!r}")
        features = table.features
        bad = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
        if bad:
            raise DataError(
                f"non-numeric feature columns {bad}: encode them as numbers or drop them "
                f"(text columns need --text-column in 'epochpilot audit')"
            )
        X = frame[features].to_numpy(dtype=np.float64)
        missing = [c for c, m in zip(features, np.isnan(X).any(axis=0)) if m]
        if missing and impute is None:
            raise DataError(
                f"missing values in columns {missing}: pass --impute mean|median|zero or fill them"
            )
        if impute == "median":
            fill = np.nanmedian(X, axis=0)
        elif impute == "mean":
            fill = np.nanmean(X, axis=0)
        else:
            fill = np.zeros(X.shape[1])
        fill = np.where(np.isnan(fill), 0.0, fill)
        X = np.where(np.isnan(X), fill, X)
        mean, scale = X.mean(axis=0), X.std(axis=0)
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
        absent = [c for c in self.features if c not in frame.columns]
        if absent:
            raise DataError(
                f"missing feature columns {absent}: the model was trained with {self.features}"
            )
        extra = [c for c in frame.columns if c not in self.features and c != self.target]
        if extra:
            raise DataError(
                f"unexpected columns {extra}: drop them (the model uses {self.features})"
            )
        bad = [c for c in self.features if not pd.api.types.is_numeric_dtype(frame[c])]
        if bad:
            raise DataError(f"non-numeric values in columns {bad}: the model needs numbers there")
        X = frame[self.features].to_numpy(dtype=np.float64)
        nan_cols = [c for c, m in zip(self.features, np.isnan(X).any(axis=0)) if m]
        if nan_cols and self.impute is None:
            raise DataError(
                f"missing values in columns {nan_cols}: fill them (the model was trained without --impute)"
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
                f"labels {unknown[:5]} were not seen in training (known: {self.classes})"
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
        Path(path).write_text(json.dumps(asdict(self), indent=2, default=_json_default))

    @classmethod
    def from_json(cls, path: str | Path) -> Preprocessor:
        """Load what :meth:`to_json` wrote."""
        return cls(**json.loads(Path(path).read_text()))


def _json_default(value: Any) -> Any:
    """numpy scalars in class lists become plain Python values."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in JSON")

"""Data audit: duplicates, near-duplicates, train/val/test leakage, label conflicts, balance and columns.

The numbers here change the epoch budget: 1,000 rows that are 100 rows repeated ten times behave like 100 rows
(``effective_samples``), and a validation set that overlaps the training set makes early stopping lie.

Exact duplicates hash each row's features (``pandas.util.hash_pandas_object``, 64-bit, vectorised). Near-
duplicates are MinHash + LSH banding over character (or word) shingles for text (signatures from ``datasketch``,
candidate pairs then checked on their exact shingle Jaccard similarity) and quantised-row hashing for numeric rows: two rows are near-duplicates when every feature agrees to within
``numeric_resolution`` standard deviations of its column (a grid, so a pair straddling a cell edge can be missed).

>>> import numpy as np
>>> from epochpilot.data.audit.report import audit
>>> X = np.repeat(np.arange(20.0).reshape(10, 2), 3, axis=0)  # 10 rows, each three times
>>> report = audit((X, np.zeros(30)))
>>> report.exact_duplicates, report.effective_samples
(20, 10)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from epochpilot.data.audit.load import DataError, Split, load_split
from epochpilot.data.audit.near import NearIndex, text_lengths
from epochpilot.errors import short_list

__all__ = ["AuditReport", "DataError", "Overlap", "audit"]

_MAX_EXAMPLES = 5


@dataclass(frozen=True)
class Overlap:
    """Rows of ``split`` whose input also appears in train: exactly, or as a near-duplicate."""

    split: str
    n_rows: int
    exact: int
    near: int
    examples: tuple[dict[str, Any], ...] = ()

    @property
    def fraction(self) -> float:
        """Share of the split's rows that leak from train (exact or near)."""
        return (self.exact + self.near) / self.n_rows if self.n_rows else 0.0


@dataclass(frozen=True)
class AuditReport:
    """What ``audit`` found; ``to_dict()`` is JSON-safe, ``str(report)`` is a readable table.

    Counts are over the training split unless named otherwise. ``exact_duplicates`` counts rows that repeat
    an earlier row's features; ``near_duplicates`` counts the further rows folded away by near-duplicate
    clustering; ``effective_samples`` is the number of distinct inputs left, the size ``plan`` budgets for.
    """

    n_rows: int
    n_features: int
    target: str | None
    text_column: str | None
    task: str | None
    exact_duplicates: int
    duplicate_groups: int
    max_repeats: int
    near_duplicates: int
    effective_samples: int
    overlaps: tuple[Overlap, ...] = ()
    label_conflicts: int = 0
    label_conflict_rows: int = 0
    conflict_examples: tuple[dict[str, Any], ...] = ()
    class_counts: dict[str, int] = field(default_factory=dict)
    imbalance_ratio: float | None = None
    class_entropy: float | None = None
    text_lengths: dict[str, dict[str, float]] | None = None
    constant_columns: tuple[str, ...] = ()
    missing: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def duplicate_ratio(self) -> float:
        """Share of rows that are exact or near copies: ``1 - effective_samples / n_rows``."""
        return 1.0 - self.effective_samples / self.n_rows if self.n_rows else 0.0

    @property
    def n_classes(self) -> int | None:
        """Distinct labels for a classification target, else None."""
        return len(self.class_counts) if self.task == "classification" else None

    def overlap(self, split: str) -> Overlap | None:
        """The overlap record for ``"val"`` or ``"test"``, or None when that split was not given."""
        return next((o for o in self.overlaps if o.split == split), None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of every field plus ``duplicate_ratio`` and each overlap's ``fraction``."""
        out = _jsonable(asdict(self))
        out["duplicate_ratio"] = round(self.duplicate_ratio, 6)
        for record, overlap in zip(out["overlaps"], self.overlaps, strict=True):
            record["fraction"] = round(overlap.fraction, 6)
        return out

    def render(self, width: int = 100) -> str:
        """The report as rich tables (plain text, no colour codes)."""
        from epochpilot.data.audit.render import render

        return render(self, width=width)

    def __str__(self) -> str:
        return self.render()


def _jsonable(value: Any) -> Any:
    """Convert numpy scalars, tuples and non-finite floats into plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _row(features: pd.DataFrame, labels: pd.Series | None, i: int) -> dict[str, Any]:
    """One example row (features, label, index) as a JSON-safe dict, long texts shortened."""
    record: dict[str, Any] = {"row": int(i)}
    for column in list(features.columns)[:12]:
        value = _jsonable(features.iat[i, features.columns.get_loc(column)])
        if isinstance(value, str) and len(value) > 120:
            value = value[:117] + "..."
        record[str(column)] = value
    if labels is not None:
        record["label"] = _jsonable(labels.iat[i])
    return record


def row_hashes(features: pd.DataFrame) -> np.ndarray:
    """A uint64 hash per row of ``features`` (all columns), equal for equal rows."""
    return pd.util.hash_pandas_object(features, index=False).to_numpy()


def _task(labels: pd.Series | None) -> str | None:
    """ "classification" for discrete labels, "regression" for continuous ones, None without labels."""
    if labels is None:
        return None
    values = labels.dropna()
    if pd.api.types.is_float_dtype(values):
        integral = bool(np.all(np.mod(values.to_numpy(), 1.0) == 0))
        if not integral or values.nunique() > 1000:
            return "regression"
    return "classification"


def _balance(labels: pd.Series) -> tuple[dict[str, int], float | None, float | None]:
    """Class counts (largest first), max/min count ratio, and label entropy in bits."""
    counts = labels.value_counts(dropna=True)
    as_dict = {str(_jsonable(k)): int(v) for k, v in counts.items()}
    if counts.empty:
        return as_dict, None, None
    p = counts.to_numpy(dtype=float) / counts.sum()
    entropy = float(-(p * np.log2(p)).sum()) + 0.0
    return as_dict, float(counts.max() / counts.min()), entropy


def _conflicts(hashes: np.ndarray, split: Split) -> tuple[int, int, tuple[dict[str, Any], ...]]:
    """Inputs seen with more than one label: (groups, rows in them, up to 5 examples)."""
    if split.labels is None:
        return 0, 0, ()
    frame = pd.DataFrame({"h": hashes, "y": split.labels.to_numpy()})
    per_input = frame.groupby("h", sort=False)["y"].nunique()
    bad = per_input.index[per_input.to_numpy() > 1]
    if len(bad) == 0:
        return 0, 0, ()
    in_bad = np.isin(hashes, bad.to_numpy())
    examples = []
    for h in bad[:_MAX_EXAMPLES]:
        rows = np.flatnonzero(hashes == h)
        labels = sorted({str(_jsonable(v)) for v in split.labels.iloc[rows].dropna()})
        example = _row(split.features, None, int(rows[0]))
        example["rows"] = [int(r) for r in rows[:10]]
        example["labels"] = labels
        examples.append(example)
    return len(bad), int(in_bad.sum()), tuple(examples)


def _columns(frame: pd.DataFrame) -> tuple[tuple[str, ...], dict[str, float]]:
    """Constant columns (one distinct value, NaN counted) and the missing share of each gappy column."""
    constant = tuple(str(c) for c in frame.columns if frame[c].nunique(dropna=False) <= 1)
    share = frame.isna().mean()
    missing = {str(c): round(float(v), 6) for c, v in share.items() if v > 0}
    return constant, missing


def audit(
    train: Any,
    val: Any = None,
    test: Any = None,
    *,
    target: str | None = None,
    text_column: str | None = None,
    near_threshold: float = 0.8,
    numeric_resolution: float = 0.01,
    shingle: str = "char",
    num_perm: int = 128,
    fields: Mapping[str, str] | None = None,
) -> AuditReport:
    """Audit a training split (and optional val/test splits) for the data problems that mislead training.

    Each split is an array, an ``(X, y)`` tuple, a DataFrame, a torch Dataset, a list of strings or a CSV
    path; ``target`` names the label column of a frame or CSV. Text needs ``text_column``: any other
    non-numeric feature is an error (encode it first). A target with a single class is reported as a
    warning here (``plan`` and training refuse it). Raises ``DataError`` (a ValueError) on bad input.
    ``fields`` maps a split given as a CSV path ("train", "val", "test") to the command-line flag that gave
    it (``""`` for a positional argument), so that messages name the flag and the file the user wrote.
    """
    if not 0.0 < near_threshold <= 1.0:
        raise ValueError(f"near_threshold must be in (0, 1], got {near_threshold}: 0.8 is typical")
    if not numeric_resolution > 0:
        raise ValueError(
            f"numeric_resolution must be > 0, got {numeric_resolution}: 0.01 is typical"
        )
    if shingle not in ("char", "word"):
        raise ValueError(f"shingle must be 'char' or 'word', got {shingle!r}")
    if isinstance(num_perm, bool) or not isinstance(num_perm, int) or num_perm < 16:
        raise ValueError(f"num_perm must be an int >= 16, got {num_perm!r}: 128 is typical")
    fields = dict(fields or {})
    tr = load_split(
        train, "train", target=target, text_column=text_column, field=fields.get("train")
    )
    others = [
        load_split(data, name, target=target, text_column=tr.text_column, field=fields.get(name))
        for name, data in (("val", val), ("test", test))
        if data is not None
    ]
    for other in others:
        missing = [c for c in tr.features.columns if c not in other.features.columns]
        if missing:
            raise DataError(
                f"{other.where or other.name}: missing feature columns [{short_list(missing)}] that "
                f"{tr.where or tr.name} has: give every split the same columns"
            )
    text = tr.text_column
    n = len(tr.features)
    hashes = row_hashes(tr.features)
    first = pd.Series(hashes).duplicated(keep="first").to_numpy()
    counts = pd.Series(hashes).value_counts(sort=False).to_numpy()
    index = NearIndex(
        tr.features,
        hashes,
        text_column=text,
        threshold=near_threshold,
        resolution=numeric_resolution,
        shingle=shingle,
        num_perm=num_perm,
    )
    exact = int(first.sum())
    effective = index.n_clusters
    overlaps = tuple(_overlap(tr, other, hashes, index) for other in others)
    task = _task(tr.labels)
    conflicts, conflict_rows, conflict_examples = _conflicts(hashes, tr)
    class_counts, imbalance, entropy = ({}, None, None)
    if task == "classification":
        class_counts, imbalance, entropy = _balance(tr.labels)
    constant, missing = _columns(tr.features)
    lengths = text_lengths(tr.features[text]) if text is not None else None
    report = AuditReport(
        n_rows=n,
        n_features=tr.features.shape[1],
        target=str(tr.labels.name) if tr.labels is not None else None,
        text_column=text,
        task=task,
        exact_duplicates=exact,
        duplicate_groups=int((counts > 1).sum()),
        max_repeats=int(counts.max()),
        near_duplicates=n - exact - effective,
        effective_samples=effective,
        overlaps=overlaps,
        label_conflicts=conflicts,
        label_conflict_rows=conflict_rows,
        conflict_examples=conflict_examples,
        class_counts=class_counts,
        imbalance_ratio=imbalance,
        class_entropy=entropy,
        text_lengths=lengths,
        constant_columns=constant,
        missing=missing,
    )
    return _with_warnings(report)


def _overlap(tr: Split, other: Split, train_hashes: np.ndarray, index: NearIndex) -> Overlap:
    """Rows of ``other`` that appear in train exactly, or as near-duplicates of a train row."""
    features = other.features[list(tr.features.columns)]
    hashes = row_hashes(features)
    exact_mask = np.isin(hashes, train_hashes)
    near_mask, partner = index.match(features)
    near_mask &= ~exact_mask
    first_train = pd.Series(np.arange(len(train_hashes))).groupby(train_hashes).first()
    examples = []
    for i in np.flatnonzero(exact_mask | near_mask)[:_MAX_EXAMPLES]:
        record = _row(features, other.labels, int(i))
        record["kind"] = "exact" if exact_mask[i] else "near"
        record["train_row"] = int(first_train[hashes[i]] if exact_mask[i] else partner[i])
        examples.append(record)
    return Overlap(
        split=other.name,
        n_rows=len(features),
        exact=int(exact_mask.sum()),
        near=int(near_mask.sum()),
        examples=tuple(examples),
    )


def _with_warnings(report: AuditReport) -> AuditReport:
    """Attach one sentence, with its numbers, per finding that should change how the data is used."""
    notes = []
    if report.duplicate_ratio >= 0.01:
        notes.append(
            f"{report.n_rows - report.effective_samples} of {report.n_rows} rows "
            f"({report.duplicate_ratio:.1%}) are exact or near copies: budget epochs for "
            f"{report.effective_samples} effective samples, or deduplicate."
        )
    for o in report.overlaps:
        if o.exact or o.near:
            notes.append(
                f"{o.exact + o.near} of {o.n_rows} {o.split} rows ({o.fraction:.1%}) also appear in train "
                f"({o.exact} exact, {o.near} near): {o.split} scores will be optimistic; remove them."
            )
    if report.label_conflicts:
        notes.append(
            f"{report.label_conflicts} inputs carry different labels ({report.label_conflict_rows} rows): "
            "no model can fit them all; fix or drop them."
        )
    if report.task == "classification" and len(report.class_counts) == 1:
        notes.append(
            f"target {report.target!r} has a single class: nothing to learn; plan and train will refuse it."
        )
    if report.imbalance_ratio is not None and report.imbalance_ratio >= 10:
        notes.append(
            f"classes are imbalanced {report.imbalance_ratio:.1f}:1: prefer balanced accuracy, F1 or a "
            "weighted loss to plain accuracy."
        )
    if report.constant_columns:
        notes.append(
            f"constant columns carry no signal: {', '.join(report.constant_columns[:10])}."
        )
    if report.missing:
        worst = max(report.missing, key=report.missing.get)
        notes.append(
            f"{len(report.missing)} columns have missing values (worst: {worst!r}, "
            f"{report.missing[worst]:.1%}): impute them before training."
        )
    return dataclasses.replace(report, warnings=tuple(notes))

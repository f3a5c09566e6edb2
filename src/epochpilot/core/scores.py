"""Scores of a kept model in the units people read, and the words that label them.

Regression jobs train on a standardised target (``(y - mean) / std``), so their loss is not in the target's
units: :func:`regression_scores` gives R², MAE and RMSE (and MSE) in the target's own units, from predictions
in those units or, with :func:`standardised_regression_scores`, from standardised ones and the scaler.
:func:`classification_scores` gives accuracy, and ROC AUC for a binary target. The values are scikit-learn's
(``sklearn.metrics``, imported when a score is computed).

Pure: numpy and scikit-learn, no torch. A score that is undefined (R² of a constant target or of fewer than 2
rows, ROC AUC when the rows hold one class only, anything computed from non-finite predictions) is NaN;
:func:`json_safe` turns NaN into ``None`` (JSON ``null``) for summary.json and ``--json`` output.

>>> s = regression_scores([1.0, 2.0, 3.0, 4.0], [1.5, 2.0, 2.5, 4.0])
>>> round(s["r2"], 3), s["mae"], s["n"]
(0.9, 0.25, 4.0)
>>> classification_scores([0, 1, 1, 0], [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])["roc_auc"]
1.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = [
    "SCORE_ORDER",
    "classification_scores",
    "json_safe",
    "loss_note",
    "loss_units",
    "regression_scores",
    "score_label",
    "score_rows",
    "standardised_regression_scores",
    "target_scale",
    "to_target_units",
    "unit_note",
]

#: the order scores are shown in (console, ``evaluate``, report); other keys follow in their own order
SCORE_ORDER = ("r2", "mae", "rmse", "mse", "loss", "accuracy", "roc_auc", "n")

_LABELS = {
    "r2": "R²",
    "mae": "MAE",
    "rmse": "RMSE",
    "mse": "MSE",
    "accuracy": "accuracy",
    "roc_auc": "ROC AUC",
    "loss": "loss",
    "n": "rows",
}


def to_target_units(values: Any, mean: float, scale: float) -> np.ndarray:
    """Standardised values ``(y - mean) / scale`` back to the target's own units (float64, flattened)."""
    return np.asarray(values, dtype=np.float64).reshape(-1) * float(scale) + float(mean)


def regression_scores(y_true: Any, y_pred: Any) -> dict[str, float]:
    """R², MAE, RMSE and MSE of ``y_pred`` against ``y_true`` (both in the target's own units), and ``n``."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y = np.asarray(y_true, dtype=np.float64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        raise ValueError(f"{len(y)} targets but {len(p)} predictions: give one prediction per row")
    n = float(len(y))
    if len(y) == 0 or not (np.isfinite(y).all() and np.isfinite(p).all()):
        return {"r2": math.nan, "mae": math.nan, "rmse": math.nan, "mse": math.nan, "n": n}
    mse = float(mean_squared_error(y, p))
    # R² is undefined when the target does not vary (sklearn would report 0 or 1 there)
    r2 = float(r2_score(y, p)) if len(y) >= 2 and np.ptp(y) > 0 else math.nan
    return {
        "r2": r2,
        "mae": float(mean_absolute_error(y, p)),
        "rmse": math.sqrt(mse),
        "mse": mse,
        "n": n,
    }


def standardised_regression_scores(
    y_true_std: Any, y_pred_std: Any, mean: float, scale: float
) -> dict[str, float]:
    """:func:`regression_scores` in the target's units from standardised targets and predictions, given the
    scaler's ``mean`` and ``scale`` (``Preprocessor.y_mean`` / ``y_scale``)."""
    return regression_scores(
        to_target_units(y_true_std, mean, scale), to_target_units(y_pred_std, mean, scale)
    )


def classification_scores(y_true: Any, proba: Any) -> dict[str, float]:
    """Accuracy of the most probable class and, for two classes, ROC AUC of class 1's probability; ``n``.

    ``y_true`` holds class indices (0..k-1), ``proba`` one row of k class probabilities per sample.
    """
    from sklearn.metrics import accuracy_score, roc_auc_score

    y = np.asarray(y_true).reshape(-1)
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or len(p) != len(y):
        raise ValueError(
            f"proba must hold one row of class probabilities per target ({len(y)}), got shape {p.shape}"
        )
    out = {"accuracy": math.nan, "n": float(len(y))}
    binary = p.shape[1] == 2
    if binary:
        out["roc_auc"] = math.nan
    if len(y) == 0 or not np.isfinite(p).all():
        return out
    out["accuracy"] = float(accuracy_score(y, p.argmax(axis=1)))
    if binary and len(np.unique(y)) == 2:  # AUC needs both classes among the rows
        out["roc_auc"] = float(roc_auc_score(y, p[:, 1]))
    return dict(sorted(out.items(), key=lambda kv: _rank(kv[0])))


def json_safe(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``metrics`` with NaN and inf as ``None``, numpy numbers as Python floats (for JSON files)."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
            value = float(value)
            out[key] = value if math.isfinite(value) else None
        else:
            out[key] = value
    return out


def _rank(key: str) -> int:
    return SCORE_ORDER.index(key) if key in SCORE_ORDER else len(SCORE_ORDER)


def score_label(key: str) -> str:
    """How a score key reads for people: ``"r2"`` -> ``"R²"``, ``"roc_auc"`` -> ``"ROC AUC"``."""
    return _LABELS.get(key, key)


def unit_note(key: str, task: str | None, target: str | None = None) -> str:
    """The unit a score is in, for a regression job's target-unit scores (``"price units"``); else ``""``."""
    if task != "regression" or key not in ("mae", "rmse", "mse"):
        return ""
    units = f"{target} units" if target else "target units"
    return f"{units}²" if key == "mse" else units


def target_scale(task: str, target: str, mean: float, std: float) -> dict[str, Any] | None:
    """A regression job's target scaler as summary.json keeps it, ``{"target", "mean", "std"}`` (None for
    classification): the trainer's loss is on ``(y - mean) / std``, so its MSE in target units is
    ``loss * std**2``."""
    if task != "regression":
        return None
    return {"target": target, "mean": float(mean), "std": float(std)}


def loss_units(target_scale: Mapping[str, Any]) -> str:
    """summary.json's ``loss_units``: one sentence on what a regression job's losses and scores are in."""
    name, mean, std = target_scale["target"], target_scale["mean"], target_scale["std"]
    return (
        f"losses are MSE on the standardised target ({name} - {mean:.6g}) / {std:.6g}: MSE in {name} "
        f"units² = loss × {std:.6g}²; val_metrics and test_metrics are in {name}'s own units"
    )


def loss_note(value: Any, target_scale: Mapping[str, Any] | None) -> str:
    """What a regression loss is measured in, with its MSE in target units² when ``value`` is a number:
    ``"standardised target; MSE in target units² = 0.545 × 77.06² = 3236"``.

    ``target_scale`` is summary.json's ``{"target": ..., "mean": ..., "std": ...}``; ``""`` without it.
    """
    if not isinstance(target_scale, Mapping):
        return ""
    std, name = target_scale.get("std"), target_scale.get("target") or "target"
    if not _finite(std):
        return ""
    text = "standardised target"
    if _finite(value):
        mse = float(value) * float(std) ** 2
        text += f"; MSE in {name} units² = {_g(value)} × {_g(std)}² = {_g(mse)}"
    return text


def score_rows(
    metrics: Mapping[str, Any],
    *,
    task: str | None,
    target: str | None = None,
    prefix: str = "",
    skip: Iterable[str] = ("n",),
) -> list[tuple[str, str]]:
    """``(prefix + key, "value (unit)")`` for each score, in :data:`SCORE_ORDER`; the shared text of the run
    summary table and ``epochpilot evaluate``. Undefined scores read ``n/a``."""
    skipped = set(skip)
    rows = []
    for key in sorted(metrics, key=_rank):
        if key in skipped:
            continue
        value = metrics[key]
        numeric = value is None or isinstance(value, (int, float, np.number))
        text = _g(value) if numeric else str(value)
        unit = unit_note(key, task, target)
        rows.append((f"{prefix}{key}", f"{text} ({unit})" if unit else text))
    return rows


def _finite(x: Any) -> bool:
    return (
        isinstance(x, (int, float, np.number))
        and not isinstance(x, bool)
        and math.isfinite(float(x))
    )


def _g(x: Any) -> str:
    """A number to 4 significant figures; ``n/a`` for None/NaN (an undefined score)."""
    if not _finite(x):
        return "n/a"
    return f"{float(x):.4g}"

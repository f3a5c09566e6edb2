"""epochpilot.scores: target-unit regression scores and classification scores, checked against
scikit-learn, plus the words that label them (console, evaluate, report)."""

from __future__ import annotations

import doctest
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from sklearn import metrics as skm

from epochpilot.core import scores
from epochpilot.core.scores import (
    classification_scores,
    json_safe,
    loss_note,
    regression_scores,
    score_rows,
    standardised_regression_scores,
    to_target_units,
)


def test_docstring_examples_run():
    result = doctest.testmod(scores)
    assert result.attempted >= 3 and result.failed == 0


def test_regression_scores_equal_sklearn():
    rng = np.random.default_rng(0)
    y = rng.normal(150, 80, size=200)
    p = y + rng.normal(0, 40, size=200)
    s = regression_scores(y, p)
    assert s["r2"] == pytest.approx(skm.r2_score(y, p), rel=1e-12)
    assert s["mae"] == pytest.approx(skm.mean_absolute_error(y, p), rel=1e-12)
    assert s["mse"] == pytest.approx(skm.mean_squared_error(y, p), rel=1e-12)
    assert s["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y, p)), rel=1e-12)
    assert s["n"] == 200.0


def test_standardised_scores_are_in_target_units():
    """The trainer sees (y - mean) / std; the scores come back in y's units, as sklearn gives on y."""
    rng = np.random.default_rng(1)
    y = rng.normal(150, 80, size=100)
    p = y + rng.normal(0, 30, size=100)
    mean, std = float(y.mean()), float(y.std())
    z_y, z_p = ((y - mean) / std).astype(np.float32), ((p - mean) / std).astype(np.float32)
    s = standardised_regression_scores(z_y.reshape(-1, 1), z_p, mean, std)
    assert s["mae"] == pytest.approx(skm.mean_absolute_error(y, p), rel=1e-5)
    assert s["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y, p)), rel=1e-5)
    assert s["r2"] == pytest.approx(skm.r2_score(y, p), rel=1e-5)
    # the standardised MSE (the trainer's loss) times std² is the MSE in target units
    assert float(np.mean((z_p - z_y) ** 2)) * std**2 == pytest.approx(s["mse"], rel=1e-5)
    np.testing.assert_allclose(to_target_units(z_y, mean, std), y, rtol=1e-5)


@pytest.mark.parametrize(
    ("y", "p"),
    [([3.0, 3.0, 3.0], [2.0, 3.0, 4.0]), ([1.0], [2.0])],
    ids=["constant target", "one row"],
)
def test_r2_is_nan_where_undefined(y, p):
    s = regression_scores(y, p)
    assert math.isnan(s["r2"]) and math.isfinite(s["mae"])


def test_non_finite_predictions_give_nan_not_an_error():
    s = regression_scores([1.0, 2.0, 3.0], [1.0, float("nan"), 3.0])
    assert all(math.isnan(s[k]) for k in ("r2", "mae", "rmse", "mse")) and s["n"] == 3.0
    c = classification_scores([0, 1], [[0.5, 0.5], [float("nan"), 0.5]])
    assert math.isnan(c["accuracy"]) and math.isnan(c["roc_auc"])


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="3 targets but 2 predictions"):
        regression_scores([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="one row of class probabilities"):
        classification_scores([0, 1, 1], [[0.1, 0.9], [0.2, 0.8]])


def test_binary_classification_equals_sklearn():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, size=300)
    p1 = np.clip(0.3 * y + rng.uniform(0, 0.7, size=300), 0, 1)
    proba = np.column_stack([1 - p1, p1])
    s = classification_scores(y, proba)
    assert list(s) == ["accuracy", "roc_auc", "n"]
    assert s["accuracy"] == pytest.approx(skm.accuracy_score(y, proba.argmax(axis=1)))
    assert s["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p1))


def test_multiclass_has_accuracy_but_no_roc_auc():
    proba = np.eye(3)[[0, 1, 2, 2]] * 0.8 + 0.2 / 3
    s = classification_scores([0, 1, 2, 1], proba)
    assert "roc_auc" not in s and s["accuracy"] == pytest.approx(0.75)


def test_roc_auc_is_nan_when_the_rows_hold_one_class():
    s = classification_scores([1, 1, 1], [[0.2, 0.8], [0.6, 0.4], [0.1, 0.9]])
    assert math.isnan(s["roc_auc"]) and s["accuracy"] == pytest.approx(2 / 3)


def test_json_safe_writes_strict_json():
    safe = json_safe({"r2": float("nan"), "mae": np.float32(1.5), "rmse": float("inf"), "n": 3})
    assert safe == {"r2": None, "mae": 1.5, "rmse": None, "n": 3.0}
    json.dumps(safe, allow_nan=False)


def test_loss_note_gives_the_mse_in_target_units():
    scale = {"target": "price", "mean": 10.0, "std": 2.0}
    assert loss_note(0.5, scale) == "standardised target; MSE in price units² = 0.5 × 2² = 2"
    assert loss_note(None, scale) == "standardised target"
    assert loss_note(0.5, None) == "" and loss_note(0.5, {"target": "y", "std": None}) == ""


def test_score_rows_label_units_and_undefined_scores():
    rows = dict(
        score_rows(
            {"mse": 4.0, "r2": float("nan"), "mae": 1.25, "rmse": 2.0, "n": 9.0},
            task="regression",
            target="price",
            prefix="test_",
        )
    )
    assert list(rows) == ["test_r2", "test_mae", "test_rmse", "test_mse"]  # n skipped by default
    assert rows == {
        "test_r2": "n/a",
        "test_mae": "1.25 (price units)",
        "test_rmse": "2 (price units)",
        "test_mse": "4 (price units²)",
    }
    # classification scores carry no unit
    assert score_rows({"accuracy": 0.5, "roc_auc": 0.75}, task="classification") == [
        ("accuracy", "0.5"),
        ("roc_auc", "0.75"),
    ]


def test_scores_import_neither_torch_nor_sklearn():
    """Pure: importing it (as the report and the CLI summary do) loads neither torch nor scikit-learn."""
    code = (
        "import sys, epochpilot.core.scores, epochpilot.report.regularisers;"
        "assert 'torch' not in sys.modules and 'sklearn' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

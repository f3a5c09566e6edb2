"""``epochpilot train`` reports regression scores in the target's own units (console, summary.json, report),
labels the standardised loss, and reports ROC AUC for a binary target; the numbers are scikit-learn's on the
kept model's predictions."""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
from sklearn import metrics as skm

import epochpilot
from epochpilot.data.table import write_builtin_csv
from epochpilot.jobs.pipeline import load_table, split
from epochpilot.jobs.spec import load_spec

FAST = ["--max-epochs", "3", "--no-tensorboard", "--test-fraction", "0.2"]


def _splits(run: Path, task: str) -> dict[str, pd.DataFrame]:
    """The run's validation and test rows, split again from its job.toml (the split is seeded)."""
    spec = load_spec(run / "job.toml")
    _, val, test = split(load_table(spec), spec, task)
    return {"val": val, "test": test}


def _report_text(run: Path) -> str:
    page = (run / "report.html").read_text(encoding="utf-8")
    page = re.sub(r"<(style|script)>.*?</\1>", " ", page, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def _g(x: float) -> str:
    return f"{x:.4g}"


@pytest.fixture
def diabetes_run(cli, tmp_path):
    write_builtin_csv("diabetes", tmp_path / "diabetes.csv")
    proc = cli(
        "train", "--data", "diabetes.csv", "--target", "target", *FAST, "--run-dir", "runs/d"
    )
    assert proc.returncode == 0, proc.stderr
    return tmp_path / "runs" / "d", proc.stdout


def test_regression_scores_are_sklearns_in_target_units(diabetes_run):
    run, stdout = diabetes_run
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "regression"
    predictor = epochpilot.load(run)
    for name, rows in _splits(run, "regression").items():
        y = rows["target"].to_numpy()
        pred = predictor.predict(rows.drop(columns=["target"]))["prediction"].to_numpy()
        got = summary[f"{name}_metrics"]
        assert got["n"] == len(rows)
        assert got["r2"] == pytest.approx(skm.r2_score(y, pred), rel=1e-5)
        assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, pred), rel=1e-5)
        assert got["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y, pred)), rel=1e-5)
        # the console shows the same numbers, with their unit
        assert f"{name}_r2" in stdout and _g(got["r2"]) in stdout
        assert f"{_g(got['mae'])} (target units)" in stdout
        assert f"{_g(got['rmse'])} (target units)" in stdout
    # MAE of tens on a target whose standard deviation is about 77: target units, not standardised ones
    assert 20 < summary["val_metrics"]["mae"] < 150


def test_the_standardised_loss_is_labelled_with_its_target_unit_mse(diabetes_run):
    run, stdout = diabetes_run
    summary = json.loads((run / "summary.json").read_text())
    scale = summary["target_scale"]
    assert scale["target"] == "target" and 60 < scale["std"] < 90
    assert "standardised target" in summary["loss_units"]
    kept = summary["best_epoch"]
    row = next(
        json.loads(line)
        for line in (run / "history.jsonl").read_text().splitlines()
        if json.loads(line)["epoch"] == kept
    )
    mse = row["val_loss"] * scale["std"] ** 2
    assert mse == pytest.approx(summary["val_metrics"]["mse"], rel=1e-3)  # loss × std² is the MSE
    flat = re.sub(r"\s*│\s*", " ", stdout)  # the table wraps long cells
    flat = re.sub(r"\s+", " ", flat)
    assert (
        f"val_loss {_g(row['val_loss'])} (standardised target; MSE in target units² = "
        f"{_g(row['val_loss'])} × {_g(scale['std'])}² = {_g(mse)})" in flat
    )
    assert f"train_loss {_g(row['train_loss'])} (standardised target)" in flat


def test_regression_report_and_evaluate_show_the_scores(cli, diabetes_run, tmp_path):
    run, _ = diabetes_run
    summary = json.loads((run / "summary.json").read_text())
    text = _report_text(run)
    val, test = summary["val_metrics"], summary["test_metrics"]
    assert f"R² {_g(val['r2'])} {_g(test['r2'])}" in text
    assert f"MAE (target units) {_g(val['mae'])} {_g(test['mae'])}" in text
    assert "val_loss (standardised target)" in text

    proc = cli("evaluate", run, "--data", "diabetes.csv")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"rmse: [\d.]+ \(target units\)", proc.stdout), proc.stdout
    proc = cli("evaluate", run, "--data", "diabetes.csv", "--json")
    assert {"r2", "mae", "rmse", "mse", "n"} <= set(json.loads(proc.stdout))


def test_resume_prints_the_scores_again(cli, diabetes_run):
    run, _ = diabetes_run
    proc = cli("resume", run)
    assert proc.returncode == 0, proc.stderr
    assert (
        "val_rmse" in proc.stdout and "test_r2" in proc.stdout and "(target units)" in proc.stdout
    )


def test_binary_classification_shows_roc_auc(cli, tmp_path):
    proc = cli("train", "--builtin", "breast_cancer", *FAST, "--run-dir", "runs/b")
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "runs" / "b"
    summary = json.loads((run / "summary.json").read_text())
    predictor = epochpilot.load(run)
    for name, rows in _splits(run, "classification").items():
        y = rows["target"].to_numpy()
        pred = predictor.predict(rows.drop(columns=["target"]))
        got = summary[f"{name}_metrics"]
        assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, pred["p_1"]), rel=1e-6)
        assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred["prediction"]))
        assert re.search(rf"{name}_roc_auc\s*│\s*{re.escape(_g(got['roc_auc']))}", proc.stdout)
    assert "standardised" not in proc.stdout and "target_scale" not in summary
    assert f"ROC AUC {_g(summary['val_metrics']['roc_auc'])}" in _report_text(run)

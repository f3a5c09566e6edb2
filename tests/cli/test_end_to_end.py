"""The CLI end to end on real data: train -> predict / evaluate -> report -> compare, resume, examples."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from epochpilot.data.table import write_builtin_csv

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--max-epochs", "4", "--no-tensorboard"]


@pytest.fixture
def wine_csv(tmp_path: Path) -> Path:
    return write_builtin_csv("wine", tmp_path / "wine.csv")


def test_train_predict_evaluate_report_compare(cli, tmp_path, wine_csv):
    proc = cli("train", "--data", wine_csv, "--target", "target", *FAST, "--run-dir", "runs/a")
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "runs" / "a"
    for name in [
        "job.toml",
        "config.toml",
        "history.jsonl",
        "history.csv",
        "summary.json",
        "report.html",
        "preprocessor.json",
        "model.json",
        "model.pt",
    ]:
        assert (run / name).exists(), name
    assert "report" in proc.stdout and "best epoch" in proc.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_run"] <= 4 and summary["task"] == "classification"

    # New rows without the target: scored with the saved preprocessing alone.
    new = pd.read_csv(wine_csv).drop(columns=["target"]).head(7)
    new.to_csv(tmp_path / "new.csv", index=False)
    proc = cli("predict", run, "--data", "new.csv", "--out", "pred.csv")
    assert proc.returncode == 0, proc.stderr
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert len(pred) == 7 and set(pred["prediction"]) <= {0, 1, 2}
    assert pred[["p_0", "p_1", "p_2"]].sum(axis=1).round(5).eq(1).all()

    proc = cli("evaluate", run, "--data", wine_csv, "--json")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["n"] == 178

    # Missing and extra columns are named.
    new.drop(columns=["x3"]).to_csv(tmp_path / "less.csv", index=False)
    proc = cli("predict", run, "--data", "less.csv")
    assert proc.returncode == 2 and "['x3']" in proc.stderr
    new.assign(extra=1).to_csv(tmp_path / "more.csv", index=False)
    proc = cli("predict", run, "--data", "more.csv")
    assert proc.returncode == 2 and "['extra']" in proc.stderr

    (run / "report.html").unlink()
    proc = cli("report", run)
    assert proc.returncode == 0 and (run / "report.html").exists()

    proc = cli(
        "train",
        "--data",
        wine_csv,
        "--target",
        "target",
        *FAST,
        "--lr",
        "0.01",
        "--run-dir",
        "runs/b",
    )
    assert proc.returncode == 0, proc.stderr
    proc = cli("compare", "runs/a", "runs/b", "--out", "cmp.html")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cmp.html").stat().st_size > 1000


def test_python_load_matches_cli(cli, tmp_path, wine_csv):
    import epochpilot

    proc = cli("train", "--data", wine_csv, "--target", "target", *FAST, "--run-dir", "runs/p")
    assert proc.returncode == 0, proc.stderr
    predictor = epochpilot.load(tmp_path / "runs" / "p")
    frame = pd.read_csv(wine_csv)
    assert len(predictor.predict(frame.drop(columns=["target"]))) == len(frame)
    assert predictor.evaluate(frame)["n"] == len(frame)


def test_regression_csv(cli, tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.1 * rng.normal(size=300)
    pd.DataFrame(X, columns=list("abcd")).assign(price=y).to_csv(tmp_path / "r.csv", index=False)
    proc = cli("train", "--data", "r.csv", "--target", "price", *FAST, "--run-dir", "runs/r")
    assert proc.returncode == 0, proc.stderr
    proc = cli("evaluate", "runs/r", "--data", "r.csv", "--json")
    metrics = json.loads(proc.stdout)
    assert {"mse", "mae", "r2"} <= set(metrics)


def test_resume_and_overwrite(cli, tmp_path, wine_csv):
    args = ["train", "--data", wine_csv, "--target", "target", *FAST, "--run-dir", "runs/w"]
    assert cli(*args).returncode == 0
    history = (tmp_path / "runs/w/history.jsonl").read_text()
    proc = cli("resume", "runs/w")
    assert proc.returncode == 0, proc.stderr
    # The run had finished: resuming it changes no history row.
    assert (tmp_path / "runs/w/history.jsonl").read_text() == history
    assert cli(*args, "--overwrite").returncode == 0


def test_examples_job_files(cli, tmp_path):
    for name in ["digits.toml", "my_model.toml", "my_model.py"]:
        (tmp_path / name).write_text((ROOT / "examples" / name).read_text())
    proc = cli("train", "digits.toml", *FAST, "--run-dir", "runs/d")
    assert proc.returncode == 0, proc.stderr
    assert "test_accuracy" in proc.stdout
    proc = cli("train", "my_model.toml", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert (
        json.loads((tmp_path / "runs/my_model/model.json").read_text())["factory"]
        == "my_model:wide_and_shallow"
    )


@pytest.mark.slow
def test_demo_in_a_real_process(cli_process, tmp_path):
    proc = cli_process("demo", "--run-dir", "runs/demo", timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert (
        "1. budget:" in proc.stdout
        and "2. schedule:" in proc.stdout
        and "3. stopping:" in proc.stdout
    )
    assert "test_accuracy" in proc.stdout
    summary = json.loads((tmp_path / "runs/demo/summary.json").read_text())
    assert summary["test_metrics"]["accuracy"] > 0.9
    assert (tmp_path / "runs/demo/report.html").exists()


def test_same_job_trains_the_same_model(cli, tmp_path, wine_csv):
    """The model's initial weights come from the job's seed: two runs of one job agree row for row."""
    timing = {"epoch_time_s", "samples_per_s"}
    rows = []
    for name in ("s1", "s2"):
        proc = cli("train", "--data", wine_csv, "--target", "target", *FAST, "--run-dir", name)
        assert proc.returncode == 0, proc.stderr
        lines = (tmp_path / name / "history.jsonl").read_text().splitlines()
        rows.append([{k: v for k, v in json.loads(x).items() if k not in timing} for x in lines])
    assert rows[0] == rows[1]

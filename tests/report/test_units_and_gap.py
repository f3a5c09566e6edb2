"""The report shows the kept model's scores in the target's units, labels standardised losses, and explains
a negative generalization gap from the run's own settings (job.toml [model] dropout)."""

from __future__ import annotations

import html
import re
from pathlib import Path

from epochpilot.report import load_run, write_report
from epochpilot.report.regularisers import regularisers

from .runs import summary_for, write_run


def _text(path: Path) -> str:
    """The report's text as a reader sees it (tags dropped, entities decoded, spaces collapsed)."""
    page = path.read_text(encoding="utf-8")
    page = re.sub(r"<(style|script)>.*?</\1>", " ", page, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def _regression_rows(n: int = 12) -> list[dict]:
    """train_loss above val_loss every epoch (dropout in training), both falling."""
    return [
        {"epoch": e, "step": 10 * e, "train_loss": 0.9 / e + 0.5, "val_loss": 0.9 / e + 0.4}
        for e in range(1, n + 1)
    ]


JOB = """\
[data]
builtin = "diabetes"

[model]
factory = "epochpilot.models:mlp"
hidden = [128, 64]
dropout = 0.3

[train]
max_epochs = 12
"""


def _regression_run(tmp_path: Path, job: str | None = JOB) -> Path:
    rows = _regression_rows()
    summary = summary_for(rows, plan=False)
    summary.update(
        task="regression",
        target_scale={"target": "price", "mean": 150.0, "std": 80.0},
        val_metrics={"r2": 0.4321, "mae": 51.23, "rmse": 60.76, "mse": 3691.0, "n": 89.0},
        test_metrics={"r2": None, "mae": 49.14, "rmse": 60.36, "mse": 3644.0, "n": 89.0},
    )
    run = write_run(tmp_path / "reg", rows, summary, config=None)
    if job is not None:
        (run / "job.toml").write_text(job)
    return run


def test_regression_scores_and_standardised_losses_in_the_report(tmp_path):
    text = _text(write_report(_regression_run(tmp_path)))
    assert "Scores of the kept model (epoch 12) score validation test" in text
    assert "R² 0.4321 —" in text  # an undefined test R² (null in summary.json) reads as a dash
    assert "MAE (price units) 51.23 49.14" in text and "RMSE (price units) 60.76 60.36" in text
    assert "val_loss (standardised target)" in text and "train_loss (standardised target)" in text
    val_loss = _regression_rows()[-1]["val_loss"]
    assert (
        f"for val_loss, MSE in price units² = {val_loss:.4g} × 80² = {val_loss * 6400:.4g}" in text
    )


def test_negative_gap_is_explained_with_the_jobs_dropout(tmp_path):
    text = _text(write_report(_regression_run(tmp_path)))
    assert (
        "val_loss is better than train_loss (generalization gap -0.1 at epoch 12, median -0.1 over "
        "epochs 1-12): expected with this "
        "run's dropout 0.3 (job.toml [model] dropout), which acts in training only" in text
    )


def test_negative_gap_without_dropout_points_at_the_split(tmp_path):
    run = _regression_run(tmp_path, job=JOB.replace("dropout = 0.3", "dropout = 0.0"))
    advice = " ".join(load_run(run).analysis.advice)
    assert "this run's" not in advice and "epochpilot audit TRAIN.csv --val VAL.csv" in advice


def test_classification_scores_show_roc_auc(tmp_path, run_dir):
    import json

    summary = json.loads((run_dir / "summary.json").read_text())
    summary.update(
        task="classification",
        val_metrics={"loss": 0.2, "accuracy": 0.95, "roc_auc": 0.991, "n": 114.0},
        test_metrics={"loss": 0.25, "accuracy": 0.93, "roc_auc": 0.987, "n": 114.0},
    )
    (run_dir / "summary.json").write_text(json.dumps(summary))
    text = _text(write_report(run_dir))
    assert "ROC AUC 0.991 0.987" in text and "accuracy 0.95 0.93" in text
    assert "standardised" not in text  # classification losses are not on a standardised target


def test_old_summary_with_test_metrics_only_still_shows_them(tmp_path, run_dir):
    import json

    summary = json.loads((run_dir / "summary.json").read_text())
    summary["test_metrics"] = {"loss": 0.3, "accuracy": 0.9, "n": 50.0}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    text = _text(write_report(run_dir))
    assert "score test loss 0.3 accuracy 0.9 rows 50" in text


def test_regularisers_read_from_job_and_config(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "job.toml").write_text('[model]\ndropout = 0.2\naugment = "none"\n')
    config = {
        "model": {"dropout": 0.2, "drop_path_rate": 0.0},
        "train": {"loss_fn": "CrossEntropyLoss(label_smoothing=0.1)", "mixup": True},
    }
    assert regularisers(run, config) == [
        "dropout 0.2 (job.toml [model] dropout)",  # named once, from the first file holding it
        "label smoothing 0.1 (config.toml [train] loss_fn)",
        "mixup on (config.toml [train] mixup)",
    ]
    (run / "job.toml").write_text("not toml [")
    assert regularisers(run, None) == []  # a damaged job.toml only loses the hint

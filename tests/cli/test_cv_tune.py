"""``epochpilot cv`` and ``epochpilot tune`` end to end on wine, and their bad-input messages."""

from __future__ import annotations

import json

import pytest

from epochpilot.cli.tune import parse_space_arg
from epochpilot.data.table import write_builtin_csv

FAST = ["--builtin", "wine", "--max-epochs", "3", "--no-tensorboard"]


def test_help_shows_examples(cli):
    for command in ("cv", "tune"):
        proc = cli(command, "--help")
        assert proc.returncode == 0
        assert "examples:" in proc.stdout and f"epochpilot {command} " in proc.stdout


def test_cv_writes_folds_selection_report_and_a_refit_predictor(cli, tmp_path):
    proc = cli("cv", *FAST, "--folds", "2", "--rule", "one_se", "--refit", "--run-dir", "runs/cv")
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "runs" / "cv"
    sel = json.loads((run / "selection.json").read_text())
    assert sel["k"] == 2 and sel["rule"] == "one_se" and 1 <= sel["epochs"] <= 3
    assert len(sel["mean_curve"]) == 3 and sel["counts"] == [2, 2, 2]
    for i in (1, 2):
        assert len((run / f"fold-{i}" / "history.jsonl").read_text().splitlines()) == 3
    html = (run / "report.html").read_text()
    assert "data:image/png;base64," in html and f"Train for {sel['epochs']} epochs" in html
    assert f"chosen: {sel['epochs']} epochs" in proc.stdout
    summary = json.loads((run / "refit" / "summary.json").read_text())
    assert summary["epochs_run"] == sel["epochs"] and summary["n_val"] is None
    assert summary["n_train"] == 178  # every row
    write_builtin_csv("wine", tmp_path / "wine.csv")
    proc = cli("evaluate", run / "refit", "--data", "wine.csv", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["n"] == 178


@pytest.mark.parametrize(
    "args, message",
    [
        (["--folds", "1"], "--folds must be >= 2, got 1"),
        (["--folds", "60"], "k=60 is larger than the smallest class (48 rows of class 2)"),
    ],
)
def test_cv_bad_folds_exit_2_with_one_line(cli, tmp_path, args, message):
    proc = cli("cv", *FAST, *args, "--run-dir", "runs/bad")
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_tune_prints_the_best_trial_writes_a_report_and_resumes(cli, tmp_path):
    space = ["--space", "lr=log:1e-3:1e-1", "--space", "model.hidden=choice:[[16],[32]]"]
    proc = cli("tune", *FAST, "--trials", "4", *space, "--run-dir", "runs/t")
    assert proc.returncode == 0, proc.stderr
    assert "study epochpilot: 4 trials" in proc.stdout and "best trial: #" in proc.stdout
    assert "lr = " in proc.stdout and "optuna-dashboard sqlite:///" in proc.stdout
    run = tmp_path / "runs" / "t"
    html = (run / "report.html").read_text()
    assert "Optimisation history" not in html or "data:image/png" in html
    assert html.count("data:image/png;base64,") == 2 and "why it ended" in html
    best = json.loads((run / "best.json").read_text())
    assert set(best["params"]) == {"lr", "model.hidden"}
    proc = cli("tune", *FAST, "--trials", "5", *space, "--run-dir", "runs/t")
    assert proc.returncode == 2  # a study that holds trials is not continued by accident
    assert (
        "holds 4 trials (4 finished) of these settings: pass --resume to continue it" in proc.stderr
    )
    proc = cli("tune", *FAST, "--trials", "5", *space, "--run-dir", "runs/t", "--pruner", "median")
    assert proc.returncode == 2 and "(pruner epochpilot, not median)" in proc.stderr
    proc = cli("tune", *FAST, "--trials", "5", *space, "--run-dir", "runs/t", "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "study epochpilot: 5 trials" in proc.stdout  # resumed: one more trial
    proc = cli("tune", *FAST, "--trials", "6", "--space", "lr=log:1e-3:1e-2", "--run-dir", "runs/t")
    assert proc.returncode == 2 and "different search space" in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--space", "lr=uniform:0:1"], "space['lr']: unknown kind 'uniform'"),
        (["--space", "lr=float:0.1:0.1"], "space['lr'] has an empty range"),
        (["--space", "learning_rat=log:1e-3:1e-1"], "unknown parameter 'learning_rat'"),
        (["--space", "lr"], "--space 'lr': write NAME=KIND:LOW:HIGH"),
        (["--storage", "postgresql://u:hunter2@127.0.0.1:9/x"], "postgresql://u:***@127.0.0.1:9/x"),
        (["--pruner", "sometimes"], "invalid choice"),
    ],
)
def test_tune_bad_input_exit_2_with_one_line(cli, tmp_path, args, message):
    proc = cli("tune", *FAST, "--trials", "1", *args, "--run-dir", "runs/bad")
    assert proc.returncode == 2
    assert message in proc.stderr and "hunter2" not in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if "error" in line]) == 1


def test_space_arguments_parse():
    assert parse_space_arg("lr=log:1e-4:0.1") == ("lr", ("log", 1e-4, 0.1))
    assert parse_space_arg("batch_size=choice:16,32") == ("batch_size", ("choice", [16, 32]))
    assert parse_space_arg("schedule=choice:warmup(cosine),onecycle") == (
        "schedule",
        ("choice", ["warmup(cosine)", "onecycle"]),
    )
    assert parse_space_arg("model.hidden=choice:[[64],[128,64]]") == (
        "model.hidden",
        ("choice", [[64], [128, 64]]),
    )

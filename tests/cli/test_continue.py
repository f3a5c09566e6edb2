"""``epochpilot continue RUN_DIR --data NEW``: replay + retention guard + short budget, from the CLI and Python."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from epochpilot.data import write_builtin_csv

FAST = ["--max-epochs", "3", "--no-tensorboard"]


@pytest.fixture
def old_run(cli, tmp_path: Path) -> Path:
    frame = pd.read_csv(write_builtin_csv("wine", tmp_path / "wine.csv")).sample(
        frac=1.0, random_state=0
    )
    frame.iloc[:110].to_csv(tmp_path / "old.csv", index=False)
    frame.iloc[110:].to_csv(tmp_path / "new.csv", index=False)
    proc = cli(
        "train", "--data", tmp_path / "old.csv", "--target", "target", *FAST, "--run-dir", "runs/a"
    )
    assert proc.returncode == 0, proc.stderr
    return tmp_path / "runs" / "a"


def test_continue_writes_a_new_run_with_the_guard_in_every_row(cli, tmp_path, old_run):
    proc = cli(
        "continue", old_run, "--data", tmp_path / "new.csv", "--epochs", "2", "--replay", "0.5"
    )
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "runs" / "a-continued"
    for name in [
        "history.jsonl",
        "summary.json",
        "report.html",
        "model.pt",
        "preprocessor.json",
        "job.toml",
    ]:
        assert (out / name).exists(), name
    rows = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert 1 <= len(rows) <= 2 and all(0.0 <= r["old_val_accuracy"] <= 1.0 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["continued_from"] == str(old_run) and summary["replay"] == 0.5
    assert 0.0 <= summary["old_reference"] <= 1.0
    assert (old_run / "history.jsonl").read_text().count("\n") == 3  # the old run is untouched
    evaluated = cli("evaluate", out, "--data", tmp_path / "new.csv", "--json")
    assert evaluated.returncode == 0 and "accuracy" in json.loads(evaluated.stdout)


def test_budget_plan_is_short_and_bounded():
    from epochpilot.cli.continual import plan_budget

    assert plan_budget({"best_epoch": 40}, n_old=1000, n_new=100)[0] == 8
    assert plan_budget({"best_epoch": 2}, n_old=1000, n_new=100)[0] == 3
    assert plan_budget({}, n_old=10, n_new=1000)[0] == 20


def test_bad_inputs_are_one_line_errors(cli, tmp_path, old_run):
    new = tmp_path / "new.csv"
    proc = cli("continue", tmp_path / "nowhere", "--data", new)
    assert proc.returncode == 2 and "no job.toml" in proc.stderr
    proc = cli("continue", old_run, "--data", new, "--replay", "1.0")
    assert proc.returncode == 2 and "--replay must be" in proc.stderr and "[0, 1)" in proc.stderr
    shutil.rmtree(old_run / "checkpoints")
    proc = cli("continue", old_run, "--data", new)
    assert proc.returncode == 2 and "has no checkpoint to continue from" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1

"""``epochpilot train --stopper auto`` with ``--max-time`` / ``--max-steps`` and the TOML keys (fake clock)."""

from __future__ import annotations

import json

import pytest

from epochpilot.errors import ConfigError
from epochpilot.jobs.spec import TrainSpec
from epochpilot.train import budgets as B


@pytest.fixture
def fast_clock(monkeypatch):
    """Each reading of the budget's clock moves it 1 s on: a '30s' budget lasts a handful of epochs."""
    now = [0.0]

    def clock() -> float:
        now[0] += 1.0
        return now[0]

    monkeypatch.setattr(B, "_clock", clock)


def test_auto_max_time(cli, tmp_path, fast_clock):
    args = ["--builtin", "wine", "--stopper", "auto", "--max-time", "30s", "--no-tensorboard"]
    proc = cli("train", *args, "--run-dir", "runs/t")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "runs" / "t" / "summary.json").read_text())
    assert summary["budget_kind"] == "time"
    detail = summary["budget_detail"]
    assert detail["max_time_s"] == 30.0 and detail["epoch_time_s"] > 0
    assert summary["stop_reason"] in ("max_time", "patience", "forecast", "divergence", "budget")
    assert summary["epochs_run"] <= detail["budget_epochs"] + 15  # extensions at most half of 30
    job = (tmp_path / "runs" / "t" / "job.toml").read_text()
    assert 'max_time = "30s"' in job and 'stopper = "auto"' in job


def test_max_steps_flag_and_toml(cli, tmp_path):
    proc = cli(
        "train", "--builtin", "wine", "--max-steps", "12", "--no-tensorboard", "--run-dir", "runs/s"
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "runs" / "s" / "summary.json").read_text())
    assert summary["budget_kind"] == "steps" and summary["total_steps"] <= 12
    job = tmp_path / "job.toml"
    job.write_text('[data]\nbuiltin = "wine"\n[train]\nmax_steps = 7\ntensorboard = false\n')
    proc = cli("train", job, "--run-dir", "runs/toml")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "runs" / "toml" / "summary.json").read_text())
    assert summary["budget_detail"]["max_steps"] == 7 and summary["total_steps"] <= 7


def test_bad_max_time_flag(cli):
    proc = cli("train", "--builtin", "wine", "--max-time", "ten minutes")
    assert proc.returncode != 0
    assert "--max-time" in proc.stderr and "10min" in proc.stderr


@pytest.mark.parametrize(("field", "value"), [("max_steps", 0), ("max_time", "soon")])
def test_train_spec_validation(field, value):
    with pytest.raises(ConfigError, match=f"train.{field}"):
        TrainSpec(**{field: value})

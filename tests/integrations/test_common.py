"""The adapters' shared core: pure imports, the run-dir records, state checks, the schedule driver."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from epochpilot.cli.main import main as cli
from epochpilot.integrations._common import PilotCore, ScheduleDriver, policy_target, scalar
from epochpilot.schedules import Constant, ReduceOnPlateau
from epochpilot.stopping import AnyOf, EarlyStopping, GeneralizationLoss

SRC = Path(__file__).resolve().parents[2] / "src" / "epochpilot" / "integrations"


def test_importing_the_package_imports_no_framework() -> None:
    code = (
        "import sys, epochpilot.integrations, epochpilot.integrations._common;"
        "print(sorted(m for m in ('torch', 'keras', 'lightning', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    for name in ("__init__.py", "_common.py", "keras.py"):  # Keras must run on any backend
        lines = (SRC / name).read_text().splitlines()
        assert not [
            line for line in lines if line.strip().startswith(("import torch", "from torch"))
        ]


def test_rows_summary_and_report(tmp_path: Path) -> None:
    core = PilotCore(
        EarlyStopping("val_loss", mode="min", patience=1), run_dir=tmp_path, framework="test"
    )
    core.start()
    core.observe({"epoch": 1, "step": 4, "train_loss": 1.0, "val_loss": 0.9})
    core.observe({"epoch": 2, "step": 8, "train_loss": math.nan, "val_loss": 0.8, "val_acc": 0.5})
    decision = core.observe({"epoch": 3, "step": 12, "train_loss": 0.5, "val_loss": 0.85})
    assert decision.stop and core.stop_epoch == 3 and core.best_epoch == 2
    rows = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert rows[1]["train_loss"] is None and rows[1]["val_acc"] == 0.5
    csv = (tmp_path / "history.csv").read_text().splitlines()
    assert csv[0] == "epoch,step,train_loss,val_loss,val_acc"  # rewritten when val_acc appeared
    assert csv[2] == "2,8,NaN,0.8,0.5" and csv[3] == "3,12,0.5,0.85,"
    summary = core.finish(report=False, max_epochs=10, batch_size=32)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved.keys() == summary.keys() and saved["final_metrics"]["train_loss"] is None
    assert (saved["max_epochs"], saved["batch_size"], saved["epochs_run"]) == (10, 32, 3)
    assert saved["stop_reason"] == "patience" and saved["stopped_epoch"] == 3
    assert saved["final_metrics"]["epoch"] == 2 and saved["total_steps"] == 12
    assert saved["stop_message"].endswith("[patience unit: 1 epoch]")
    assert cli(["report", str(tmp_path)]) == 0
    assert (tmp_path / "report.html").is_file()


def test_epochs_must_increase_and_missing_metrics_name_what_was_logged() -> None:
    core = PilotCore(EarlyStopping("val_loss", mode="min"), framework="keras")
    core.observe({"epoch": 1, "val_loss": 1.0})
    with pytest.raises(ValueError, match="epoch 1 was already observed"):
        core.observe({"epoch": 1, "val_loss": 1.0})
    with pytest.raises(KeyError, match="keras logged: epoch, loss"):
        core.observe({"epoch": 2, "loss": 1.0})


def test_state_round_trip_and_checks() -> None:
    core = PilotCore(EarlyStopping("val_loss", mode="min", patience=2), framework="x")
    for epoch, value in enumerate([1.0, 0.5, 0.7], start=1):
        core.observe({"epoch": epoch, "val_loss": value})
    state = json.loads(json.dumps(core.state_dict()))
    other = PilotCore(EarlyStopping("val_loss", mode="min", patience=2), framework="x")
    other.load_state_dict(state)
    assert other.state_dict() == core.state_dict()
    assert other.observe({"epoch": 4, "val_loss": 0.9}).stop
    with pytest.raises(ValueError, match="must have keys"):
        other.load_state_dict({**state, "extra": 1})
    with pytest.raises(ValueError, match="version"):
        other.load_state_dict({**state, "version": 99})
    with pytest.raises(ValueError, match="state is for"):
        PilotCore(GeneralizationLoss(alpha=5.0, monitor="val_loss"), framework="x").load_state_dict(
            state
        )


def test_schedule_driver_feeds_plateaus_and_round_trips() -> None:
    plateau = ReduceOnPlateau("val_loss", mode="min", patience=0, factor=0.5)
    driver = ScheduleDriver(plateau.wrap(Constant(0.1)))
    core = PilotCore(EarlyStopping("val_loss", mode="min", patience=9), framework="x")
    core.driver = driver
    core.observe({"epoch": 1, "val_loss": 1.0})
    core.observe({"epoch": 2, "val_loss": 1.1})
    assert driver.lr(5) == pytest.approx(0.05)
    saved = driver.state_dict()
    fresh = ReduceOnPlateau("val_loss", mode="min", patience=0, factor=0.5)
    other = ScheduleDriver(fresh.wrap(Constant(0.1)))
    other.load_state_dict(saved)
    assert other.lr(5) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="ReduceOnPlateau states"):
        ScheduleDriver(Constant(0.1)).load_state_dict(saved)
    with pytest.raises(ValueError, match="finite"):
        ScheduleDriver(lambda step: math.inf).lr(0)


def test_scalars_and_targets() -> None:
    import numpy as np

    assert scalar(np.float32(0.5)) == 0.5 and scalar(np.array([[2.0]])) == 2.0
    assert scalar("x") is None and scalar(True) is None and scalar(np.ones(3)) is None
    policy = AnyOf(
        EarlyStopping("val_acc", mode="max"), GeneralizationLoss(alpha=5.0, monitor="val_loss")
    )
    assert policy_target(policy) == ("val_acc", "max")
    with pytest.raises(TypeError, match="policy must be an epochpilot stop policy"):
        PilotCore(object(), framework="x")  # type: ignore[arg-type]

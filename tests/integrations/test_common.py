"""The adapters' shared core: pure imports, the run-dir records, state checks, the schedule driver."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from epochpilot.cli.main import main as cli
from epochpilot.core.schedules import Constant, ReduceOnPlateau
from epochpilot.core.stopping import AnyOf, EarlyStopping, GeneralizationLoss
from epochpilot.integrations._common import PilotCore, ScheduleDriver, policy_target, scalar
from epochpilot.integrations._lines import plain, stop_line
from epochpilot.integrations._save import check_save_model, save_atomically

SRC = Path(__file__).resolve().parents[2] / "src" / "epochpilot" / "integrations"


def test_importing_the_package_imports_no_framework() -> None:
    code = (
        "import sys, epochpilot.integrations, epochpilot.integrations._common,"
        "epochpilot.integrations._lines, epochpilot.integrations._policy, epochpilot.integrations._save;"
        "print(sorted(m for m in ('torch', 'keras', 'lightning', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    pure = ("__init__.py", "_common.py", "_lines.py", "_policy.py", "_save.py", "_schedule.py")
    for name in (*pure, "_attributes.py", "keras.py"):  # Keras must run on any backend
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
    assert saved["stop_message"] == decision.message  # epochs are the trainer's: no note
    assert saved["extended_by"] == 0
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


def _core(values: list[float], patience: int = 2, **kw: object) -> PilotCore:
    core = PilotCore(EarlyStopping("val_loss", mode="min", patience=patience), framework="x", **kw)
    for epoch, value in enumerate(values, start=1):
        core.observe({"epoch": epoch, "val_loss": value})
    return core


def test_the_stop_line_says_the_stop_the_kept_epoch_and_the_file() -> None:
    core = _core([1.0, 0.5, 0.7, 0.8])
    line = stop_line(core, restored=True, saved="runs/x/model.keras")
    assert line.startswith("Epoch 4: early stopping: ") and "\n" not in line
    assert line.endswith(
        "Kept epoch 2 (val_loss 0.5): its weights are restored. Saved to runs/x/model.keras."
    )
    assert line.count("Kept epoch") == 1 and ": stop" not in line and "Stopped at" not in line
    kept_last = stop_line(core, restored=False)
    assert "keeps the last epoch (4; restore_best=False); the best was epoch 2 (val_loss 0.5)." in (
        kept_last
    )
    assert "Kept epoch 2" not in kept_last  # the policy's own "Kept epoch" would be wrong here
    running = _core([1.0, 0.9], patience=9)
    assert stop_line(running, restored=False) == (
        "Epoch 2: training ran to its end; the stop policy did not fire. "
        "Kept epoch 2 (val_loss 0.9), the last one."
    )
    nan = _core([math.nan], patience=9)
    assert "No epoch had a finite val_loss" in stop_line(nan, restored=False)
    assert "before the first evaluation" in stop_line(_core([]), restored=False, unit="evaluation")


@pytest.mark.parametrize(
    ("message", "body"),
    [
        (
            "val_loss did not improve for 2 epochs (best 0.5 at epoch 2): stop",
            "val_loss did not improve for 2 epochs (best 0.5 at epoch 2).",
        ),
        (
            "Stopped at epoch 21: validation loss has not improved for 6 epochs. Kept epoch 15 (val_loss 0.145).",
            "validation loss has not improved for 6 epochs.",
        ),
        ("Stopped at evaluation 3: it diverged.", "it diverged."),
    ],
)
def test_plain_takes_what_the_line_says_itself_out_of_the_message(message: str, body: str) -> None:
    assert plain(message) == body


def test_a_policy_built_from_a_name_is_fits_and_reads_the_trainers_budget() -> None:
    from epochpilot.core.stopping import AutoStopper, default_stopper

    assert repr(PilotCore(None, framework="x").policy) == repr(default_stopper("val_loss", "min"))
    assert PilotCore("early", framework="x").policy.patience == 5
    core = PilotCore("forecast", framework="x")
    assert isinstance(core.policy, AutoStopper) and core.spec == "forecast"
    assert core.policy.forecast.max_extension == 0  # the trainer's budget is a hard cap
    core.set_budget(40)
    assert core.policy.budget == 40
    with pytest.raises(ValueError, match="policy='forecast' plans for the trainer's epoch budget"):
        core.set_budget(None)
    user = AnyOf(EarlyStopping("val_loss", mode="min"))
    PilotCore(user, framework="x").set_budget(None)  # a user's policy keeps its own budget
    with pytest.raises(TypeError, match="'auto'.*'early'.*'forecast'; got 'val_loss'"):
        PilotCore("val_loss", framework="x")


def test_without_validation_a_named_policy_watches_train_loss_and_keeps_its_state() -> None:
    core = PilotCore(None, framework="x")
    assert not core.fallback({"train_loss": 1.0, "val_loss": 0.9})
    assert not core.fallback(
        {"loss": 1.0}
    )  # no train_loss either: the policy names what is missing
    assert core.fallback({"train_loss": 1.0, "lr": 0.1}) and core.monitor == "train_loss"
    core.observe({"epoch": 1, "train_loss": 1.0})
    core.observe({"epoch": 2, "train_loss": 0.5})
    assert core.best_epoch == 2 and not core.fallback({"train_loss": 0.4})
    user = PilotCore(EarlyStopping("val_loss", mode="min"), framework="x")
    assert not user.fallback({"train_loss": 1.0}) and user.monitor == "val_loss"


def test_saving_goes_through_a_temporary_and_a_failure_is_one_warning(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.bin").write_text("old")

    def write(folder: Path) -> None:
        folder.mkdir()
        (folder / "new.bin").write_text("new")

    assert save_atomically(target, write, "x") == target
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    assert [p.name for p in target.iterdir()] == ["new.bin"]

    def broken(path: Path) -> None:
        path.write_text("half")
        raise OSError(28, "No space left on device")

    file = tmp_path / "model.keras"
    file.write_text("previous")
    with pytest.warns(UserWarning, match="not saved to .*model.keras.*No space left"):
        assert save_atomically(file, broken, "x") is None
    assert file.read_text() == "previous" and sorted(p.name for p in tmp_path.iterdir()) == [
        "model",
        "model.keras",
    ]
    assert check_save_model(None, tmp_path) and not check_save_model(None, None)
    with pytest.raises(ValueError, match="save_model=True needs run_dir"):
        check_save_model(True, None)

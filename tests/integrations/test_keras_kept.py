"""The Keras adapter's policy default, verbose line and kept model: ``EpochPilot(run_dir=...)`` with no policy
stops as ``epochpilot.fit``'s default would, prints one line like Keras' ``EarlyStopping(verbose=1)`` and
writes ``model.keras`` that loads back to the kept model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

from epochpilot.core.stopping import AutoStopper, EarlyStopping, default_stopper  # noqa: E402
from epochpilot.integrations.keras import EpochPilot  # noqa: E402

from .test_keras import Script, data, fit, model, same  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
CURVE = [1.0, 0.8, 0.7] + [0.75 + 0.01 * i for i in range(20)]  # best at epoch 3, then worse


def test_no_policy_is_fits_default_and_the_kept_model_is_saved_as_keras(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = Script(CURVE)
    pilot = EpochPilot(run_dir=tmp_path / "run")
    net = model()
    fit(net, [script, pilot], epochs=len(CURVE))

    assert repr(pilot.policy) == repr(default_stopper("val_loss", "min"))
    replay = default_stopper("val_loss", "min").decide([{"val_loss": v} for v in CURVE])
    assert pilot.stopped_epoch_ == len(pilot.history_) == 13 and replay.best_epoch == 3
    assert pilot.best_epoch_ == 3 and same(net.get_weights(), script.weights[3])

    path = tmp_path / "run" / "model.keras"
    assert pilot.model_path_ == path and path.is_file()
    loaded = keras.saving.load_model(path)
    assert same(loaded.get_weights(), net.get_weights())
    x, _ = data()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), net.predict(x, verbose=0))
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary left
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["saved_model"] == "model.keras" and summary["monitor"] == "val_loss"
    assert (
        summary["stop_details"] == pilot.core.stop_details != ""
    )  # the numbers behind the sentence

    out = capsys.readouterr().out.splitlines()
    assert out == [pilot.stop_line_]  # one line, like Keras' EarlyStopping(verbose=1)
    line = pilot.stop_line_
    assert line.startswith("Epoch 13: early stopping: ")
    assert "Kept epoch 3 (val_loss 0.7" in line and ": stop" not in line
    assert line.endswith(f"Saved to {path}.")


def test_verbose_false_prints_nothing_and_save_model_false_writes_no_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pilot = EpochPilot("early", run_dir=tmp_path, verbose=False, save_model=False, report=False)
    fit(model(), [Script(CURVE), pilot], epochs=len(CURVE))
    assert pilot.policy.patience == 5 and pilot.stopped_epoch_ == 8
    assert capsys.readouterr().out == "" and pilot.stop_line_.startswith("Epoch 8: early stopping")
    assert pilot.model_path_ is None and not (tmp_path / "model.keras").exists()
    assert json.loads((tmp_path / "summary.json").read_text())["saved_model"] is None


def test_forecast_reads_its_budget_from_fits_epochs() -> None:
    pilot = EpochPilot("forecast", verbose=False, report=False)
    assert isinstance(pilot.policy, AutoStopper)
    fit(model(), [Script(CURVE[:7]), pilot], epochs=7)
    assert pilot.policy.budget == 7 and pilot.policy.forecast.train_monitor == "train_loss"
    fit(model(), [Script(CURVE), pilot], epochs=len(CURVE))
    assert pilot.policy.budget == len(CURVE)


def test_without_validation_the_default_watches_train_loss(tmp_path: Path) -> None:
    pilot = EpochPilot(run_dir=tmp_path, verbose=False, report=False)
    x, y = data()
    net = model()
    net.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[pilot])
    assert pilot.core.monitor == "train_loss" and pilot.policy.monitor == "train_loss"
    assert len(pilot.history_) == 3 and pilot.best_epoch_ is not None
    assert json.loads((tmp_path / "summary.json").read_text())["monitor"] == "train_loss"
    resumed = EpochPilot(run_dir=tmp_path, resume=True, verbose=False, report=False)
    net.fit(x, y, epochs=5, initial_epoch=3, batch_size=32, verbose=0, callbacks=[resumed])
    assert resumed.core.monitor == "train_loss"
    assert [row["epoch"] for row in resumed.history_] == [1, 2, 3, 4, 5]


def test_restore_best_false_says_the_model_keeps_the_last_epoch(tmp_path: Path) -> None:
    pilot = EpochPilot(run_dir=tmp_path, restore_best=False, verbose=False, report=False)
    net = model()
    script = Script(CURVE)
    fit(net, [script, pilot], epochs=len(CURVE))
    assert same(net.get_weights(), script.weights[13])
    assert same(keras.saving.load_model(tmp_path / "model.keras").get_weights(), script.weights[13])
    assert "keeps the last epoch (13; restore_best=False); the best was epoch 3" in pilot.stop_line_


def test_a_failed_save_warns_and_keeps_the_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    net = model()

    def broken(path: str, **kw: object) -> None:
        Path(path).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(net, "save", broken)
    pilot = EpochPilot(
        EarlyStopping("val_loss", mode="min", patience=2), run_dir=tmp_path, report=False
    )
    with pytest.warns(
        UserWarning, match="not saved to .*model.keras.*No space left.*save_model=False"
    ):
        fit(net, [Script(CURVE), pilot], epochs=len(CURVE))
    assert pilot.model_path_ is None and sorted(p.name for p in tmp_path.iterdir()) == [
        "best.weights.npz",
        "epochpilot_state.json",
        "history.csv",
        "history.jsonl",
        "summary.json",
    ]
    assert "Saved to" not in pilot.stop_line_


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="save_model=True needs run_dir"):
        EpochPilot(save_model=True)
    with pytest.raises(TypeError, match="save_model must be"):
        EpochPilot(run_dir="x", save_model="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="verbose must be True or False"):
        EpochPilot(verbose=2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'auto'.*'early'.*'forecast'; got 'patience'"):
        EpochPilot("patience")  # type: ignore[arg-type]
    assert EpochPilot(verbose=0).verbose is False  # Keras' 0/1 spelling

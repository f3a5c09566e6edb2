"""The Keras adapter: stops where epochpilot's trainer stops on the same metrics, restores the best weights,
sets the lr per batch, resumes after a crash, and leaves a run dir the report reads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

from epochpilot.core.schedules import cosine_with_warmup  # noqa: E402
from epochpilot.core.stopping import AnyOf, EarlyStopping, GeneralizationLoss  # noqa: E402
from epochpilot.core.stopping.forecast import Forecast  # noqa: E402
from epochpilot.integrations.keras import EpochPilot, history_name  # noqa: E402
from epochpilot.report import write_report  # noqa: E402

from ._native import native_run  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def data(n: int = 160) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = (x[:, 0] + rng.normal(size=n) > 0).astype("int32")
    return x, y


def model(lr: float = 0.01) -> keras.Model:
    keras.utils.set_random_seed(0)
    net = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)]
    )
    net.compile(
        optimizer=keras.optimizers.Adam(learning_rate=lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return net


class Script(keras.callbacks.Callback):
    """Replaces val_loss in the logs by a scripted sequence and keeps each epoch's weights."""

    def __init__(self, values: list[float] | None = None) -> None:
        super().__init__()
        self.values = values
        self.weights: dict[int, list[np.ndarray]] = {}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.values is not None and logs is not None:
            logs["val_loss"] = self.values[epoch]
        self.weights[epoch + 1] = [np.array(w) for w in self.model.get_weights()]


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def fit(net: keras.Model, callbacks: list, epochs: int, **kw: object) -> None:
    x, y = data()
    net.fit(
        x[:120],
        y[:120],
        validation_data=(x[120:], y[120:]),
        epochs=epochs,
        batch_size=16,
        shuffle=False,
        verbose=0,
        callbacks=callbacks,
        **kw,
    )


def test_stops_where_epochpilots_trainer_stops_and_restores_best(tmp_path: Path) -> None:
    def policy() -> EarlyStopping:
        return EarlyStopping("val_loss", mode="min", patience=2)

    native = native_run(policy())
    curve = [row["val_loss"] for row in native.history] + [9.0] * 10
    script = Script(curve)
    pilot = EpochPilot(policy(), run_dir=tmp_path / "run")
    net = model()
    fit(net, [script, pilot], epochs=len(curve))

    assert native.stop_reason.value == "patience" and native.best_epoch < native.stopped_epoch
    assert pilot.stopped_epoch_ == native.stopped_epoch
    assert pilot.best_epoch_ == native.best_epoch
    assert pilot.core.stop_reason == native.stop_reason
    replay = policy().decide(pilot.history_)
    assert (replay.stop, replay.best_epoch) == (True, pilot.best_epoch_)
    assert [row["epoch"] for row in pilot.history_] == list(range(1, native.stopped_epoch + 1))
    assert same(net.get_weights(), script.weights[pilot.best_epoch_])
    assert not same(net.get_weights(), script.weights[pilot.stopped_epoch_])

    run = tmp_path / "run"
    rows = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert rows == pilot.history_
    assert {"epoch", "step", "train_loss", "val_loss", "train_accuracy", "lr"} <= set(rows[0])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["monitor"] == "val_loss" and summary["stop_reason"] == "patience"
    assert summary["best_epoch"] == native.best_epoch
    assert summary["stopped_epoch"] == native.stopped_epoch
    assert summary["stop_message"] == native.stop_message  # the policy's own words, no unit note
    assert (run / "report.html").is_file()
    assert write_report(run).is_file()


CURVE = [1 / e + 0.02 * max(0, e - 10) for e in range(1, 31)]  # best at epoch 10, then overfits


@pytest.mark.parametrize(
    "make",
    [
        lambda: EarlyStopping("val_loss", mode="min", patience=4),
        lambda: AnyOf(
            EarlyStopping("val_loss", mode="min", patience=20),
            GeneralizationLoss(alpha=5.0, monitor="val_loss"),
        ),
        lambda: Forecast("val_loss", mode="min", budget=30),
    ],
    ids=["early", "anyof-gl", "forecast"],
)
def test_every_policy_stops_where_it_decides_on_the_same_curve(make) -> None:
    script = Script(CURVE)  # no validation pass: the script supplies val_loss
    pilot = EpochPilot(make(), report=False)
    net = model()
    x, y = data()
    net.fit(x[:120], y[:120], epochs=30, batch_size=120, verbose=0, callbacks=[script, pilot])
    replay = make().decide([{"val_loss": v} for v in CURVE])
    assert replay.stop and pilot.stopped_epoch_ == len(pilot.history_) < 30
    assert pilot.core.stop_reason == replay.reason and pilot.best_epoch_ == replay.best_epoch == 10
    assert same(net.get_weights(), script.weights[10])


def test_restores_best_when_the_policy_never_stops() -> None:
    script = Script([1.0, 0.5, 0.7])
    pilot = EpochPilot(EarlyStopping("val_loss", mode="min", patience=10))
    net = model()
    fit(net, [script, pilot], epochs=3)
    assert pilot.stopped_epoch_ is None and pilot.best_epoch_ == 2
    assert same(net.get_weights(), script.weights[2])
    assert pilot.summary_["stop_reason"] == "max_epochs"


def test_keras_names_reach_the_policy() -> None:
    assert [history_name(k) for k in ("loss", "accuracy", "val_loss", "learning_rate")] == [
        "train_loss",
        "train_accuracy",
        "val_loss",
        "lr",
    ]
    pilot = EpochPilot(EarlyStopping("loss", mode="min", patience=0), report=False)
    fit(model(lr=0.5), [pilot], epochs=6)  # a diverging lr: train loss goes up at some epoch
    assert pilot.core.monitor == "train_loss" and pilot.stopped_epoch_ is not None
    losses = [row["train_loss"] for row in pilot.history_]
    assert pilot.stopped_epoch_ == next(
        (i + 1 for i in range(1, len(losses)) if losses[i] >= min(losses[:i])), None
    )


class LrSpy(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, float]] = []

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        opt = self.model.optimizer
        step = int(keras.ops.convert_to_numpy(opt.iterations))
        self.seen.append((step, float(keras.ops.convert_to_numpy(opt.learning_rate))))


def test_schedule_sets_the_lr_before_every_batch() -> None:
    schedule = cosine_with_warmup(0.05, warmup_steps=4, total_steps=32)
    spy = LrSpy()
    pilot = EpochPilot(EarlyStopping("val_loss", mode="min", patience=99), schedule=schedule)
    fit(model(), [pilot, spy], epochs=4)
    assert [s for s, _ in spy.seen] == list(range(32))
    np.testing.assert_allclose([lr for _, lr in spy.seen], [schedule(s) for s in range(32)], 1e-6)
    assert pilot.history_[-1]["lr"] == pytest.approx(schedule(32))


class Crash(keras.callbacks.Callback):
    """Saves the model at the end of epoch ``at`` and then kills the fit (no on_train_end)."""

    def __init__(self, at: int, path: Path) -> None:
        super().__init__()
        self.at, self.path = at, path

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch + 1 == self.at:
            self.model.save(self.path)
            raise KeyboardInterrupt


def test_resume_after_a_crash_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    schedule = cosine_with_warmup(0.02, warmup_steps=8, total_steps=8 * 12)

    def policy() -> EarlyStopping:
        return EarlyStopping("val_loss", mode="min", patience=2)

    whole = EpochPilot(policy(), schedule=schedule, report=False)
    net = model()
    fit(net, [whole], epochs=12)

    assert whole.stopped_epoch_ is not None and whole.best_epoch_ > 1
    at = whole.best_epoch_ + 1  # the best weights must come back from the run dir

    crashed = EpochPilot(policy(), schedule=schedule, run_dir=tmp_path / "run", report=False)
    with pytest.raises(KeyboardInterrupt):
        fit(model(), [crashed, Crash(at, tmp_path / "m.keras")], epochs=12)
    assert not (tmp_path / "run" / "summary.json").exists()

    resumed = EpochPilot(policy(), schedule=schedule, run_dir=tmp_path / "run", resume=True)
    assert len(resumed.history_) == at and resumed.best_weights_ is not None
    net2 = keras.saving.load_model(tmp_path / "m.keras")
    fit(net2, [resumed], epochs=12, initial_epoch=at)

    assert resumed.stopped_epoch_ == whole.stopped_epoch_
    assert resumed.best_epoch_ == whole.best_epoch_
    assert [r["epoch"] for r in resumed.history_] == [r["epoch"] for r in whole.history_]
    for a, b in zip(resumed.history_, whole.history_):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
        assert a["lr"] == pytest.approx(b["lr"]) and a["step"] == b["step"]
    for a, b in zip(net2.get_weights(), net.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    lines = (tmp_path / "run" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [r["epoch"] for r in whole.history_]
    assert write_report(tmp_path / "run").is_file()


def test_state_round_trips_through_json() -> None:
    pilot = EpochPilot(EarlyStopping("val_loss", mode="min", patience=2), report=False)
    for epoch, value in enumerate([1.0, 0.8, 0.9], start=1):
        pilot.core.observe({"epoch": epoch, "val_loss": value})
    state = json.loads(json.dumps(pilot.state_dict()))
    other = EpochPilot(EarlyStopping("val_loss", mode="min", patience=2))
    other.load_state_dict(state)
    assert other.state_dict() == pilot.state_dict()
    assert other.core.observe({"epoch": 4, "val_loss": 0.95}).stop
    with pytest.raises(ValueError, match="keys"):
        other.load_state_dict({"policy": {}})


def test_bad_input_is_named() -> None:
    with pytest.raises(TypeError, match="policy must be an epochpilot stop policy"):
        EpochPilot("val_loss")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="resume=True needs run_dir"):
        EpochPilot(EarlyStopping("val_loss", mode="min"), resume=True)
    with pytest.raises(TypeError, match="restore_best"):
        EpochPilot(EarlyStopping("val_loss", mode="min"), restore_best="yes")  # type: ignore[arg-type]
    pilot = EpochPilot(EarlyStopping("val_acc", mode="max"))
    with pytest.raises(KeyError, match="val_accuracy"):
        fit(model(), [pilot], epochs=1)

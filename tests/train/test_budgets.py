"""Budgets in steps and wall time (with a fake clock: no timed assertions), schedules that follow them, stopper="auto"."""

from __future__ import annotations

import json

import pytest

from epochpilot.core.schedules import LinearDecay
from epochpilot.core.stopping.base import Reason
from epochpilot.errors import ConfigError
from epochpilot.train import Callback, Trainer, fit
from epochpilot.train import budgets as B
from epochpilot.train.budgets import build_schedule, parse_duration
from epochpilot.train.checkpoint import load_checkpoint

from .conftest import mlp

SPE = 3  # 96 rows / batch 32


class FakeClock:
    """A clock that moves only when told: ``advance[epoch]`` seconds at the start of each epoch."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, advance: dict[int, float], default: float):
        self.now = 1000.0
        self.advance = advance
        self.default = default
        monkeypatch.setattr(B, "_clock", lambda: self.now)

    def callback(self, interrupt_at: int | None = None) -> Callback:
        clock = self

        class Tick(Callback):
            def on_epoch_start(self, state):
                if state.epoch == interrupt_at:
                    raise KeyboardInterrupt  # a killed process, after the previous epoch's checkpoint
                clock.now += clock.advance.get(state.epoch, clock.default)

        return Tick()


class Factory:
    """A schedule factory that records the lengths it was asked for (linear decay 0.1 -> 0)."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, total_steps: int) -> LinearDecay:
        self.calls.append(total_steps)
        return LinearDecay(0.1, total_steps)


def base_kwargs(**kw):
    return {"batch_size": 32, "seed": 0, "stopper": False, "progress": False, **kw}


@pytest.mark.parametrize("max_steps", [1, 6, 7])
def test_max_steps_exact_and_schedule_ends(blobs, max_steps):
    factory = Factory()
    result = fit(mlp(), blobs, blobs, max_steps=max_steps, schedule=factory, **base_kwargs())
    assert result.total_steps == max_steps
    assert len(result.history) == -(-max_steps // SPE)  # ceil: the last epoch may be partial
    assert result.history[-1]["step"] == max_steps
    assert result.stop_reason is Reason.MAX_STEPS
    assert factory.calls == [max_steps]
    assert result.history[-1]["lr"] == pytest.approx(
        0.0
    )  # the schedule's end value at the last update
    assert result.summary["budget_kind"] == "steps"
    assert result.summary["budget_detail"]["budget_steps"] == max_steps


def test_max_steps_replaces_max_epochs(blobs):
    result = fit(mlp(), blobs, max_steps=12, max_epochs=2, **base_kwargs())
    assert result.total_steps == 12 and len(result.history) == 4
    assert result.summary["max_epochs"] == 4


def test_fixed_schedule_does_not_follow(blobs):
    result = fit(mlp(), blobs, max_steps=6, schedule=LinearDecay(0.1, 600), **base_kwargs())
    assert result.history[-1]["lr"] == pytest.approx(0.1 * (1 - 6 / 600))


def test_max_time_sets_the_epoch_budget(blobs, monkeypatch):
    clock = FakeClock(monkeypatch, {}, default=10.0)
    factory = Factory()
    result = fit(
        mlp(),
        blobs,
        blobs,
        max_time="45s",
        max_epochs=100,
        schedule=factory,
        callbacks=[clock.callback()],
        **base_kwargs(),
    )
    assert factory.calls == [
        100 * SPE,
        4 * SPE,
    ]  # first estimate from max_epochs, then floor(45 / 10)
    assert len(result.history) == 4 and result.total_steps == 4 * SPE
    assert result.stop_reason is Reason.MAX_TIME and "time budget" in result.stop_message
    assert result.history[-1]["lr"] == pytest.approx(0.0)
    detail = result.summary["budget_detail"]
    assert result.summary["budget_kind"] == "time"
    assert (detail["max_time_s"], detail["epoch_time_s"], detail["budget_epochs"]) == (
        45.0,
        10.0,
        4,
    )


def test_max_time_spent_mid_way(blobs, monkeypatch):
    clock = FakeClock(monkeypatch, {1: 10.0, 2: 40.0}, default=10.0)
    result = fit(
        mlp(), blobs, max_time=45, callbacks=[clock.callback()], **base_kwargs()
    )  # epoch 2 takes 40 s: 50 s spent at its end
    assert len(result.history) == 2
    assert result.stop_reason is Reason.MAX_TIME and "spent" in result.stop_message


def test_max_time_reestimated_when_epochs_slow_down(blobs, monkeypatch):
    clock = FakeClock(monkeypatch, {1: 10.0}, default=20.0)
    factory = Factory()
    kw = base_kwargs(callbacks=[clock.callback()], schedule=factory)
    result = fit(mlp(), blobs, max_time="100s", **kw)
    # epoch 1: 10 s -> 10 epochs; epoch 2: mean 15 s -> 6 epochs (moved > 20%); then 5-6: kept at 6
    assert factory.calls == [100 * SPE, 10 * SPE, 6 * SPE]
    assert len(result.history) == 6 and result.stop_reason is Reason.MAX_TIME
    assert result.history[-1]["lr"] == pytest.approx(0.0)


def test_max_time_never_below_epochs_done(blobs, monkeypatch):
    clock = FakeClock(monkeypatch, {}, default=100.0)
    result = fit(mlp(), blobs, max_time="1min", callbacks=[clock.callback()], **base_kwargs())
    assert len(result.history) == 1 and result.stop_reason is Reason.MAX_TIME


def test_steps_and_time_whichever_first(blobs, monkeypatch):
    clock = FakeClock(monkeypatch, {}, default=10.0)
    kw = dict(callbacks=[clock.callback()], **base_kwargs())
    by_steps = fit(mlp(), blobs, max_steps=5, max_time="10min", **kw)
    assert by_steps.total_steps == 5 and by_steps.stop_reason is Reason.MAX_STEPS
    assert by_steps.summary["budget_kind"] == "steps+time"
    by_time = fit(mlp(), blobs, max_steps=500, max_time="25s", **kw)
    assert len(by_time.history) == 2 and by_time.stop_reason is Reason.MAX_TIME


def test_time_budget_survives_resume(blobs, monkeypatch, tmp_path):
    clock = FakeClock(monkeypatch, {}, default=10.0)
    kw = dict(run_dir=tmp_path / "run", max_time="45s", **base_kwargs())
    with pytest.raises(KeyboardInterrupt):
        fit(
            mlp(),
            blobs,
            blobs,
            callbacks=[clock.callback(interrupt_at=3)],
            schedule=Factory(),
            **kw,
        )
    meta = load_checkpoint(tmp_path / "run" / "checkpoints" / "epoch-0002")["meta"]
    assert meta["counters"]["budget"]["epochs"] == 4
    assert meta["counters"]["budget"]["used_s"] == pytest.approx(20.0)
    factory = Factory()
    result = fit(
        mlp(), blobs, blobs, callbacks=[clock.callback()], schedule=factory, resume="auto", **kw
    )
    assert len(result.history) == 4 and result.stop_reason is Reason.MAX_TIME
    assert factory.calls[-1] == 4 * SPE  # the restored budget, not a re-measured one
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["budget_detail"]["elapsed_s"] == pytest.approx(40.0)


def test_stopper_forecast_trains_and_stops(blobs):
    result = fit(mlp(), blobs, blobs, max_epochs=40, **base_kwargs(stopper="forecast"))
    assert result.stop_reason in (
        Reason.FORECAST,
        Reason.BUDGET,
        Reason.DIVERGENCE,
        Reason.PATIENCE,
    )
    assert result.stop_message.startswith(f"Stopped at epoch {result.stopped_epoch}: ")
    details = result.summary["stop_details"]
    assert "Forecast" in details or "BlowUpGuard" in details or not details
    assert result.best_epoch is not None and result.summary["budget_kind"] == "epochs"
    assert result.stopped_epoch <= 40  # no extension past the budget unless extend= says so


def test_stopper_forecast_budget_follows_max_steps(blobs):
    trainer = Trainer(max_steps=30, **base_kwargs(stopper="forecast"))
    result = trainer.fit(mlp(), blobs, blobs)
    assert result.total_steps <= 30
    assert result.summary["max_epochs"] >= 10  # budget 10 epochs (+ any extension, capped by steps)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("10min", 600.0),
        ("2h", 7200.0),
        ("1h30min", 5400.0),
        (" 1.5 m ", 90.0),
        (30, 30.0),
        ("45", 45.0),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "10 parsecs", "min", "1h 30", "-5s", 0, -1, True, [1]])
def test_bad_max_time(bad):
    with pytest.raises(ConfigError, match=r"max_time.*'10min'"):
        Trainer(max_time=bad)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_bad_max_steps(bad):
    with pytest.raises(ConfigError, match="max_steps must be an int >= 1"):
        Trainer(max_steps=bad)


def test_bad_stopper_name_and_schedule_name():
    with pytest.raises(ConfigError, match="stopper must be a stop policy.*'patience'"):
        Trainer(stopper="patience")
    with pytest.raises(ConfigError, match="schedule="):
        Trainer(schedule="warmup(nope)")


def test_build_schedule_kinds():
    fixed = LinearDecay(0.1, 10)
    assert build_schedule(fixed, 99) == (fixed, None)
    factory = Factory()
    schedule, again = build_schedule(factory, 50)
    assert again is factory and schedule.total_steps == 50
    plain = lambda step: 0.5  # noqa: E731 - a plain step -> lr function is used as is
    assert build_schedule(plain, 50) == (plain, None)
    named, rebuild = build_schedule("cosine", 40, lr=0.2)
    assert named(0) == pytest.approx(0.2) and rebuild(80)(40) == pytest.approx(0.1)
    assert build_schedule(None, 5) == (None, None)


def test_default_stopper_is_patience_10_and_forecast_reads_the_train_loss():
    from epochpilot.core.stopping import AutoStopper, EarlyStopping
    from epochpilot.train.build import build_stopper

    for spec in (None, "auto"):
        stopper = build_stopper(spec, has_val=True, max_epochs=30)
        assert isinstance(stopper, EarlyStopping) and stopper.patience == 10
        assert stopper.monitor == "val_loss" and stopper.mode == "min"
    assert build_stopper("auto", has_val=False, max_epochs=30).monitor == "train_loss"
    forecast = build_stopper("forecast", has_val=True, max_epochs=30)
    assert isinstance(forecast, AutoStopper)
    assert (
        forecast.forecast.monitor == "val_loss" and forecast.forecast.train_monitor == "train_loss"
    )
    assert forecast.forecast.budget == 30
    alone = build_stopper("forecast", has_val=False, max_epochs=30)
    assert alone.forecast.monitor == "train_loss" and alone.forecast.train_monitor is None
    early = build_stopper("early", has_val=True, max_epochs=30)
    assert isinstance(early, EarlyStopping) and early.patience == 5 and early.monitor == "val_loss"


def test_default_fit_stops_by_patience_10_within_the_budget(blobs):
    result = fit(mlp(), blobs, blobs, max_epochs=40, **base_kwargs(stopper=None))
    assert result.stop_reason in (Reason.PATIENCE, Reason.MAX_EPOCHS)
    assert len(result.history) <= 40
    if result.stop_reason is Reason.PATIENCE:
        assert len(result.history) - result.best_epoch == 10


def test_unknown_stopper_name_is_one_line():
    from epochpilot.errors import ConfigError

    with pytest.raises(
        ConfigError, match="'auto' \\(the default, patience 10\\), 'early'.*'patience'"
    ):
        Trainer(stopper="patience")

"""The budget the user gives is a hard cap, and every stop of a run is told in one plain sentence that names
the epoch the loop kept (issue 22, items 1 and 3)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from epochpilot.core.schedules import Constant, ReduceOnPlateau
from epochpilot.core.stopping import EarlyStopping, Forecast
from epochpilot.core.stopping.base import Reason
from epochpilot.errors import ConfigError
from epochpilot.train import budgets as B
from epochpilot.train import fit
from epochpilot.train.budgets import Budget, check_extend
from epochpilot.train.callbacks import ScheduleCallback
from epochpilot.train.events import TrainState

from .conftest import mlp


def kw(**extra):
    return {"batch_size": 32, "seed": 0, "progress": False, **extra}


def kept(result) -> str:
    return f"Kept epoch {result.best_epoch} ({result.monitor} {result.best_value:.4g})."


# -- the hard cap ---------------------------------------------------------------------------------------
def test_a_stopper_asking_for_more_epochs_does_not_get_them_by_default(blobs, scripted, caplog):
    X, y = blobs
    caplog.set_level(logging.INFO, "epochpilot")
    policy = scripted({3: {"extend_by": 2, "message": "still improving: 2 more epochs, please"}})
    result = fit(mlp(), (X[:64], y[:64]), (X[64:], y[64:]), max_epochs=3, stopper=policy, **kw())
    assert len(result.history) == 3 and policy.seen == [1, 2, 3]
    assert result.stop_reason is Reason.MAX_EPOCHS
    assert result.stop_message.startswith(
        "Stopped at epoch 3: the budget you set, max_epochs=3, is used up; the stopper expected "
        "further gains and asked for 2 more epochs, but max_epochs=3 is a hard cap unless extend= "
        "allows more"
    )
    assert "still improving: 2 more epochs, please. Not granted: max_epochs=3 is a hard cap" in (
        caplog.text
    )


def test_forecast_built_to_extend_is_capped_too(blobs):
    # a user's Forecast(max_extension=0.5) asks at the budget; the run still ends at max_epochs
    X, y = blobs
    stopper = Forecast("val_loss", "min", budget=6, max_extension=0.5, min_fraction=1.0)
    result = fit(mlp(), (X[:64], y[:64]), (X[64:], y[64:]), max_epochs=6, stopper=stopper, **kw())
    assert len(result.history) == 6
    assert result.stop_message.startswith("Stopped at epoch 6: ")
    assert "budget reached" not in result.stop_message and "fired" not in result.stop_message


def test_extend_grants_at_most_its_fraction_and_the_end_says_so(blobs, scripted, monkeypatch):
    X, y = blobs
    policy = scripted({4: {"extend_by": 5}})
    result = fit(
        mlp(), (X[:64], y[:64]), (X[64:], y[64:]), max_epochs=4, stopper=policy, extend=0.5, **kw()
    )
    assert len(result.history) == 6  # 2 of the 5 asked: floor(0.5 * 4)
    assert result.stop_reason is Reason.MAX_EPOCHS
    assert result.stop_message.startswith(
        "Stopped at epoch 6: the budget you set, max_epochs=4, and the 2 epochs the stopper added to "
        "it (extend=0.5) are used up; the stopper expected further gains and asked for 3 more epochs, "
        "but extend=0.5 allows 2 extra epochs in all"
    )


def test_budget_grant_rules():
    assert Budget(10, None, None).grant(3, 0) == 0  # no extend: a hard cap
    b = Budget(10, None, None, extend=0.5)
    assert [b.grant(3, 0), b.grant(3, 3), b.grant(3, 5)] == [3, 2, 0]
    assert b.refusal() == "extend=0.5 allows 5 extra epochs in all"
    steps = Budget(10, 100, None, extend=0.5)
    assert steps.grant(3, 0) == 0 and steps.refusal() == "a steps budget is never extended"
    assert Budget(10, 100, "1h", extend=1).refusal() == "a steps and time budget is never extended"
    assert b.summary(5, extended=3)["extend"] == 0.5
    assert b.summary(5, extended=3)["extended_by"] == 3
    assert Budget(10, None, None).summary(5)["extend"] is None


@pytest.mark.parametrize("bad", [-0.1, float("nan"), "half", True])
def test_extend_must_be_a_fraction(bad):
    with pytest.raises(ConfigError, match="extend="):
        check_extend(bad)


# -- plain sentences in the loop's own numbers ------------------------------------------------------------
def test_early_stopping_in_fit_names_the_kept_epoch(blobs):
    X, y = blobs
    stopper = EarlyStopping("val_loss", "min", patience=2)
    result = fit(
        mlp(), (X[:64], y[:64]), (X[64:], y[64:]), lr=0.3, max_epochs=60, stopper=stopper, **kw()
    )
    assert result.stop_reason is Reason.PATIENCE
    assert result.stop_message == (
        f"Stopped at epoch {result.stopped_epoch}: validation loss has not improved for 2 epochs "
        f"(patience 2). {kept(result)}"
    )


def test_a_stop_counted_in_validations_names_the_epoch_and_the_validation(blobs):
    X, y = blobs
    stopper = EarlyStopping("val_loss", "min", patience=1)
    result = fit(
        mlp(),
        (X, y),
        (X[:40], y[:40]),
        lr=0.5,
        batch_size=16,
        val_every_steps=2,
        max_epochs=30,
        stopper=stopper,
        seed=0,
        progress=False,
    )
    assert result.stop_reason is Reason.PATIENCE
    msg = result.stop_message
    assert msg.startswith(f"Stopped at epoch {result.stopped_epoch}, validation ")
    assert "(one every 2 updates; the stopper counts validations as epochs)" in msg
    assert msg.endswith(kept(result))


def test_budget_end_still_improving(blobs):
    X, y = blobs
    result = fit(mlp(), (X, y), (X, y), max_epochs=3, lr=0.01, stopper=False, **kw())
    assert result.stop_reason is Reason.MAX_EPOCHS
    assert result.stop_message.startswith(
        "Stopped at epoch 3: the budget you set, max_epochs=3, is used up"
    )


def test_end_reasons_with_the_loop_state():
    state = SimpleNamespace(best_epoch=5, epochs_done=5, monitor="val_loss", best_value=0.25)
    reason, msg = Budget(5, None, None).end_reason(5, state)
    assert reason is Reason.MAX_EPOCHS and msg == (
        "Stopped at epoch 5: the budget you set, max_epochs=5, is used up; validation loss was still "
        "improving at the last epoch: a larger budget may help. Kept epoch 5 (val_loss 0.25)."
    )
    state.best_epoch = 3
    reason, msg = Budget(5, 12, None).end_reason(5, state)
    assert reason is Reason.MAX_STEPS and msg == (
        "Stopped at epoch 5: the step budget max_steps=12 is used up (5 epochs). "
        "Kept epoch 3 (val_loss 0.25)."
    )
    assert Budget(5, 12, None).steps_reason(4, state) == (
        Reason.MAX_STEPS,
        "Stopped at epoch 4: the step budget max_steps=12 is used up. Kept epoch 3 (val_loss 0.25).",
    )


def test_time_budget_sentence(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(B, "_clock", lambda: now[0])
    budget = Budget(100, None, "30s")
    budget.start()
    now[0] = 40.0
    _, stop = budget.after_epoch(2)
    assert stop == (
        Reason.MAX_TIME,
        "Stopped at epoch 2: the time budget max_time=30s is spent (40s after 2 epochs).",
    )
    assert budget.end_reason(2)[1] == (
        "Stopped at epoch 2: the time budget max_time=30s is used up (2 epochs of 20s fit in it)."
    )


def test_a_plateau_reduction_is_logged_in_words(caplog):
    caplog.set_level(logging.INFO, "epochpilot")
    plateau = ReduceOnPlateau("val_loss", mode="min", patience=0, factor=0.5)
    callback = ScheduleCallback(plateau.wrap(Constant(0.1)))
    state = TrainState(epoch=1, row={"val_loss": 1.0})
    state.optimizer = SimpleNamespace(param_groups=[{"lr": 0.1}])
    callback.on_validation_end(state)
    state.epoch, state.row = 2, {"val_loss": 1.5}
    callback.on_validation_end(state)
    assert (
        "epoch 2: Lowered the learning rate to 0.5x the schedule (reduction 1, factor 0.5): "
        "validation loss has not improved by more than 0.01% for 1 evaluation (patience 0)."
    ) in caplog.text

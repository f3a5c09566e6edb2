"""Tests for ``auto_stopper`` (Forecast + BlowUpGuard): guard limits, NaN, budget, state round trip, decide == stream."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from epochpilot.core.stopping import AutoStopper, BlowUpGuard, Forecast, Reason, auto_stopper
from epochpilot.core.stopping.auto import auto_settings


def curve(n: int = 40, seed: int = 0) -> list[float]:
    """A noisy U-shaped validation loss (best near epoch 15)."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, n + 1, dtype=float)
    return list(0.3 + 1.0 / t + 0.01 * np.maximum(t - 15, 0) + 0.005 * rng.normal(size=n))


def stream(policy, values, key="val_loss"):
    out = []
    for epoch, value in enumerate(values, start=1):
        out.append(policy.update(epoch, {key: value}))
        if out[-1].stop:
            break
    return out


@pytest.mark.parametrize(
    ("mode", "values", "stop_at"),
    [
        ("min", [1.0, 0.5, 4.9, 5.0], 4),  # 5x the first value (1.0) is the limit
        ("min", [-2.0, -3.0, 5.9, 6.0], 4),  # negative first: limit -2 + 4 * 2 = 6
        ("max", [0.5, 0.9, -1.4, -1.5], 4),  # limit 0.5 - 4 * 0.5 = -1.5
        ("min", [0.0, 0.5, 3.9, 4.0], 4),  # first 0: the scale is 1
        ("max", [0.6, 0.7, 0.0, 0.0], None),  # accuracy never reaches the limit (-1.8)
    ],
)
def test_guard_limit(mode, values, stop_at):
    decisions = stream(BlowUpGuard("m", mode, factor=5.0), values, key="m")
    stops = [i for i, d in enumerate(decisions, 1) if d.stop]
    assert stops == ([stop_at] if stop_at else [])
    if stop_at:
        assert decisions[-1].reason is Reason.DIVERGENCE
        assert "diverged" in decisions[-1].message


def test_guard_ignores_nan_and_keeps_best():
    guard = BlowUpGuard("val_loss", "min")
    decisions = stream(guard, [float("nan"), 2.0, float("inf"), 1.5, 9.0, 10.0])
    assert not any(d.stop for d in decisions[:5])
    assert guard.first_ == 2.0  # the first *finite* value fixes the limit
    assert decisions[-1].stop and decisions[-1].best_epoch == 4 and decisions[-1].best_value == 1.5


@pytest.mark.parametrize("bad", [1.0, 0.5, float("nan"), None])
def test_guard_bad_factor(bad):
    with pytest.raises((ValueError, TypeError), match="factor"):
        BlowUpGuard("val_loss", "min", factor=bad)


def test_auto_stops_on_nan_once_via_forecast():
    policy = auto_stopper("val_loss", "min", budget=30)
    decisions = stream(policy, [1.0, 0.8, 0.7, float("nan"), 0.6])
    assert len(decisions) == 4
    last = decisions[-1]
    assert last.stop and last.reason is Reason.NOT_FINITE
    assert (
        last.policy.startswith("Forecast") and "also" not in last.message
    )  # the guard stays quiet
    assert last.best_epoch == 3 and last.best_value == 0.7


def test_auto_stops_on_blowup_with_forecast_best():
    values = [1.0, 0.6, 0.5, 0.45, 0.4, 6.0]
    decisions = stream(auto_stopper("val_loss", "min", budget=50), values)
    last = decisions[-1]
    assert last.stop and last.reason is Reason.DIVERGENCE and last.policy.startswith("BlowUpGuard")
    assert (last.best_epoch, last.best_value) == (5, 0.4)


def test_auto_forecast_stop_on_overfitting_curve():
    decisions = stream(auto_stopper("val_loss", "min", budget=40), curve())
    assert decisions[-1].stop and decisions[-1].reason is Reason.FORECAST


def test_auto_matches_forecast_alone_without_blowup():
    values = curve(seed=4)
    auto = stream(auto_stopper("val_loss", "min", budget=40), values)
    alone = stream(Forecast("val_loss", "min", budget=40, **auto_settings()), values)
    assert [(d.stop, d.reason, d.best_epoch, d.extend_by) for d in auto] == [
        (d.stop, d.reason, d.best_epoch, d.extend_by) for d in alone
    ]


def test_forecast_kwargs_pass_through_and_validate():
    policy = auto_stopper("val_acc", "max", budget=20, confidence=0.9, blowup_factor=3.0)
    assert policy.forecast.confidence == 0.9 and policy.guard.factor == 3.0
    assert (policy.monitor, policy.mode, policy.budget) == ("val_acc", "max", 20)
    with pytest.raises(ValueError, match="confidence"):
        auto_stopper("val_loss", "min", budget=20, confidence=1.5)
    with pytest.raises(TypeError, match="forecast"):
        AutoStopper(BlowUpGuard("a", "min"), BlowUpGuard("a", "min"))


def test_set_budget_changes_the_end_and_survives_state():
    still_improving = [1.0 / math.sqrt(e) for e in range(1, 31)]
    policy = auto_stopper("val_loss", "min", budget=100, max_extension=0.5)
    policy.set_budget(10)
    decisions = stream(policy, still_improving)
    extends = [e for e, d in enumerate(decisions, 1) if d.extend_by > 0]
    assert extends and extends[0] == 10  # epoch 10 is the budget now: still improving, so extend
    state = json.loads(json.dumps(policy.state_dict()))
    assert state["state"]["budget"] == 10
    other = auto_stopper("val_loss", "min", budget=100, max_extension=0.5)
    other.load_state_dict(state)
    assert other.budget == 10 and other.forecast.extended_ == policy.forecast.extended_
    with pytest.raises(ValueError, match="epochs"):
        policy.set_budget(0)


def test_state_round_trip_mid_run_gives_same_decisions():
    values = curve(seed=1)
    full = stream(auto_stopper("val_loss", "min", budget=40), values)
    first = auto_stopper("val_loss", "min", budget=40)
    part = stream(first, values[:8])
    second = auto_stopper("val_loss", "min", budget=40)
    second.load_state_dict(json.loads(json.dumps(first.state_dict())))
    rest = [second.update(e, {"val_loss": v}) for e, v in enumerate(values[8 : len(full)], start=9)]
    assert [(d.stop, d.reason, d.best_epoch) for d in part + rest] == [
        (d.stop, d.reason, d.best_epoch) for d in full
    ]


def test_bad_state_is_refused():
    policy = auto_stopper("val_loss", "min", budget=10)
    state = policy.state_dict()
    del state["state"]["budget"]
    with pytest.raises(ValueError, match="budget"):
        policy.load_state_dict(state)
    with pytest.raises(ValueError, match="AnyOf|AutoStopper"):
        policy.load_state_dict({"policy": "AnyOf", "version": 1, "state": {"policies": []}})


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.one_of(st.floats(0.01, 10.0), st.just(float("nan")), st.just(float("inf"))),
        min_size=1,
        max_size=25,
    )
)
def test_decide_equals_stream(values):
    policy = auto_stopper("val_loss", "min", budget=12)
    streamed = stream(policy, values)[-1]
    decided = auto_stopper("val_loss", "min", budget=12).decide([{"val_loss": v} for v in values])
    assert (streamed.stop, streamed.reason, streamed.best_epoch, streamed.message) == (
        decided.stop,
        decided.reason,
        decided.best_epoch,
        decided.message,
    )


def test_auto_uses_the_settings_shipped_with_the_prior():
    from epochpilot.core.stopping import _prior_weights

    shipped = _prior_weights.WEIGHTS["setting"]
    assert auto_settings() == shipped
    f = auto_stopper("val_loss", "min", budget=40).forecast
    assert (f.confidence, f.patience_cap, f.patience_floor, f.min_fraction) == (
        shipped["confidence"],
        shipped["patience_cap"],
        shipped["patience_floor"],
        shipped["min_fraction"],
    )
    assert auto_stopper("val_loss", "min", budget=40, confidence=0.9).forecast.confidence == 0.9

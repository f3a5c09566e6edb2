"""Tests for the Forecast stop policy: determinism, resumable state, properties, budget extension, errors."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from epochpilot.core.stopping.base import Reason
from epochpilot.core.stopping.forecast import Forecast

TASKSET = Path(__file__).resolve().parents[3] / ".." / "shared" / "curves" / "taskset"


def noisy_curve(kind: str, n: int = 40, seed: int = 0, noise: float = 0.005) -> list[float]:
    """Synthetic validation losses: 'overfit' (U shape, minimum near epoch 15), 'improving', 'flat'."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, n + 1, dtype=float)
    if kind == "overfit":
        y = 0.3 + 1.0 / t + 0.01 * np.maximum(t - 15, 0)
    elif kind == "improving":
        y = 0.2 + 1.0 / np.sqrt(t)
    else:
        y = np.full(n, 0.7)
    return list(y + noise * rng.normal(size=n))


def feed(policy: Forecast, values: list[float], key: str = "val_loss"):
    """Feed values until the policy stops; return the list of decisions."""
    out = []
    for epoch, v in enumerate(values, start=1):
        out.append(policy.update(epoch, {key: v}))
        if out[-1].stop:
            break
    return out


def stop_epoch(policy: Forecast, values: list[float]) -> int | None:
    decisions = feed(policy, values)
    return len(decisions) if decisions[-1].stop else None


def test_deterministic():
    values = noisy_curve("overfit", seed=3)
    a = feed(Forecast("val_loss", "min", budget=40), values)
    b = feed(Forecast("val_loss", "min", budget=40), values)
    assert a == b
    assert a[-1].stop and a[-1].reason is Reason.FORECAST


@pytest.mark.parametrize("kind", ["overfit", "improving", "flat"])
def test_streaming_agrees_with_decide(kind):
    values = noisy_curve(kind, seed=1)
    policy = Forecast("val_loss", "min", budget=40)
    streamed = feed(policy, values)
    history = [{"val_loss": v} for v in values]
    assert policy.decide(history) == streamed[-1]
    # decide on a prefix equals the streamed decision at that epoch
    assert policy.decide(history[:12]) == streamed[11]


def test_state_dict_round_trip_mid_stream():
    values = noisy_curve("overfit", seed=5)
    full = feed(Forecast("val_loss", "min", budget=40, train_monitor="loss"), values)
    first = Forecast("val_loss", "min", budget=40, train_monitor="loss")
    head = [first.update(e, {"val_loss": v}) for e, v in enumerate(values[:9], start=1)]
    state = json.loads(json.dumps(first.state_dict()))  # JSON-safe
    second = Forecast("val_loss", "min", budget=40, train_monitor="loss")
    second.load_state_dict(state)
    tail = []
    for epoch, v in enumerate(values[9:], start=10):
        tail.append(second.update(epoch, {"val_loss": v}))
        if tail[-1].stop:
            break
    assert head + tail == full
    with pytest.raises(ValueError, match="state keys"):
        second.load_state_dict({"policy": "Forecast", "version": state["version"], "state": {}})


curve_strategy = st.lists(
    st.floats(min_value=0.01, max_value=10.0, allow_nan=False), min_size=6, max_size=30
)


@settings(max_examples=15, deadline=None)
@given(values=curve_strategy, min_epochs=st.integers(1, 25))
def test_never_stops_before_min_epochs(values, min_epochs):
    decisions = feed(Forecast("val_loss", "min", budget=30, min_epochs=min_epochs), values)
    for epoch, d in enumerate(decisions, start=1):
        if d.stop:
            assert epoch >= min_epochs


@settings(max_examples=15, deadline=None)
@given(
    values=curve_strategy,
    low=st.floats(0.5, 0.98),
    gap=st.floats(0.001, 0.4),
)
def test_monotone_in_confidence(values, low, gap):
    high = min(low + gap, 0.999)
    budget = len(values)
    a = stop_epoch(
        Forecast("val_loss", "min", budget=budget, max_extension=0.0, confidence=low), values
    )
    b = stop_epoch(
        Forecast("val_loss", "min", budget=budget, max_extension=0.0, confidence=high), values
    )
    a = budget + 1 if a is None else a
    b = budget + 1 if b is None else b
    assert b >= a


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stops_soon_after_overfitting_upturn(seed):
    values = noisy_curve("overfit", n=60, seed=seed)
    decisions = feed(Forecast("val_loss", "min", budget=60), values)
    last = decisions[-1]
    assert last.stop and last.reason is Reason.FORECAST, last.message
    assert len(decisions) <= 30  # minimum near epoch 15; patience 10 would stop at about 25
    assert 10 <= last.best_epoch <= 20
    assert "P(improve)" in last.details and "current best" in last.details
    assert last.message.startswith(f"Stopped at epoch {len(decisions)}: validation loss has not")
    assert "P(improve)" not in last.message


def test_improving_curve_runs_to_budget_and_extends():
    budget = 30
    policy = Forecast("val_loss", "min", budget=budget, max_extension=0.5)
    values = noisy_curve("improving", n=budget, noise=0.0)
    decisions = [policy.update(e, {"val_loss": v}) for e, v in enumerate(values, start=1)]
    assert not any(d.stop for d in decisions[:-1])
    last = decisions[-1]
    assert not last.stop and last.reason is Reason.BUDGET
    assert 1 <= last.extend_by <= budget // 2
    # keep going through the extension: the total never exceeds max_extension * budget
    epoch, granted = budget, last.extend_by
    while True:
        epoch += 1
        d = policy.update(epoch, {"val_loss": 0.2 + 1.0 / math.sqrt(epoch)})
        granted += d.extend_by
        if d.stop:
            break
    assert d.reason is Reason.BUDGET and granted <= budget // 2 and epoch == budget + granted


def test_mode_max_mirrors_mode_min():
    values = noisy_curve("overfit", seed=4)
    lo = feed(Forecast("val_loss", "min", budget=40), values)
    hi = [Forecast("acc", "max", budget=40).decide([{"acc": -v} for v in values[: len(lo)]])]
    assert hi[-1].stop == lo[-1].stop and hi[-1].best_epoch == lo[-1].best_epoch


def test_nan_is_divergence():
    policy = Forecast("val_loss", "min", budget=20)
    policy.update(1, {"val_loss": 1.0})
    d = policy.update(2, {"val_loss": float("nan")})
    assert (
        d.stop and d.reason is Reason.NOT_FINITE and d.best_epoch == 1 and "diverged" in d.message
    )


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"budget": 0}, "budget"),
        ({"confidence": 1.0}, "confidence"),
        ({"confidence": 0.0}, "confidence"),
        ({"min_epochs": 0}, "min_epochs"),
        ({"mode": "up"}, "mode"),
        ({"min_delta": -1.0}, "min_delta"),
        ({"min_delta_mode": "pct"}, "min_delta_mode"),
        ({"max_extension": -0.1}, "max_extension"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    args = {"monitor": "val_loss", "mode": "min", "budget": 10, **kwargs}
    with pytest.raises(ValueError, match=name):
        Forecast(**args)


def test_taskset_curves():
    if not TASKSET.exists():
        pytest.skip(f"TaskSet curves not found at {TASKSET.resolve()} (shared data absent)")
    path = sorted(TASKSET.glob("*.json.gz"))[0]
    records = json.load(gzip.open(path, "rt"))[:40]
    stopped_early = 0
    for r in records:
        values = [math.nan if v is None else float(v) for v in r["valid"]["loss"]]
        policy = Forecast("val_loss", "min", budget=len(values), min_epochs=3)
        decisions = feed(policy, values)
        last = decisions[-1]
        first_bad = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)
        if first_bad is not None and first_bad + 1 < len(decisions):
            raise AssertionError("fed past a non-finite value")
        if first_bad is not None and len(decisions) == first_bad + 1:
            assert last.reason is Reason.NOT_FINITE
        if last.stop and last.reason is Reason.FORECAST:
            stopped_early += 1
            assert len(decisions) >= 5
        finite = [v for v in values[: len(decisions)] if math.isfinite(v)]
        if finite:
            assert last.best_value == min(finite)
        assert policy.decide([{"val_loss": v} for v in values]) == last
    assert stopped_early >= 5  # many TaskSet configs plateau early: the forecast sees it


def spike_then_recover(n: int = 51) -> list[float]:
    """A loss that climbs from 1.65 to 3.8 in epochs 2-6 (an early spike, like some TaskSet runs), then
    trains normally down to about 1.0: the best checkpoint is at the end, not epoch 1."""
    t = np.arange(1, n + 1, dtype=float)
    rise = np.interp(t, [1, 2, 3, 6, 8], [1.65, 1.66, 2.8, 3.8, 3.65])
    return [float(v) for v in np.where(t <= 8, rise, 0.85 + 2.8 * np.exp(-(t - 8) / 15))]


def test_no_stop_in_an_early_spike_that_recovers(monkeypatch):
    from epochpilot.core.stopping import forecast as fmod

    values = spike_then_recover()
    # a confidence at which the unguarded forecast stops inside the spike (0.95 would not, whatever the guard)
    decisions = feed(Forecast("val_loss", "min", budget=len(values), confidence=0.8), values)
    spike = [e for e, v in enumerate(values, 1) if v > 2 * values[0]]
    assert not any(d.stop for d in decisions[: max(spike) + 5])
    held = [d for d in decisions if "spike" in d.message]
    assert held and all(not d.stop for d in held)
    # without the guard the forecast stops inside the spike, keeping epoch 1 (the bad checkpoint)
    monkeypatch.setattr(fmod, "EXCURSION", math.inf)
    unguarded = feed(Forecast("val_loss", "min", budget=len(values), confidence=0.8), values)
    assert unguarded[-1].stop and unguarded[-1].reason is Reason.FORECAST
    assert len(unguarded) <= max(spike)
    assert unguarded[-1].best_epoch == 1


@settings(max_examples=20, deadline=None)
@given(values=curve_strategy)
def test_never_stops_in_an_excursion(values):
    policy = Forecast("val_loss", "min", budget=len(values))
    for epoch, v in enumerate(values, start=1):
        d = policy.update(epoch, {"val_loss": v})
        recent = values[max(0, epoch - policy.lookahead) : epoch]
        if max(recent) > 2.0 * values[0]:
            assert not d.stop or d.reason is Reason.BUDGET
        if d.stop:
            break


@pytest.mark.parametrize("kind", ["overfit", "flat", "improving"])
def test_a_stop_early_in_the_budget_needs_more_evidence(kind):
    """The same 20 epochs read as less finished when the budget is larger: P(improve) rises with it."""
    values = noisy_curve(kind, n=20, seed=1)
    p = []
    for budget in (25, 40, 100):
        policy = Forecast("val_loss", "min", budget=budget)
        for epoch, v in enumerate(values, start=1):
            policy.update(epoch, {"val_loss": v})
        p.append(policy.last_p_improve)
    assert p[0] < p[1] < p[2], p


def test_prior_weight_set_follows_the_train_curve():
    """With a train curve the prior's main weights apply; without one, the set fitted without it."""
    from epochpilot.core.stopping import _prior_weights
    from epochpilot.core.stopping._prior import predict

    values = noisy_curve("overfit", n=12, seed=2)
    for train, weights in (
        ("loss", _prior_weights.WEIGHTS),
        (None, _prior_weights.WEIGHTS_NO_TRAIN),
    ):
        policy = Forecast("val_loss", "min", budget=40, train_monitor=train)
        for epoch, v in enumerate(values, start=1):
            policy.update(epoch, {"val_loss": v, "loss": 0.5 / epoch})
        assert policy.last_p_improve == pytest.approx(predict(policy.last_features, weights))
    assert _prior_weights.WEIGHTS != _prior_weights.WEIGHTS_NO_TRAIN


def test_a_huge_budget_forecasts_on_a_bounded_grid():
    """A budget of a billion epochs (fit(max_steps=2**40) on a small data set) used to allocate one entry per
    future epoch of the look-ahead (hundreds of GiB): the forecast now evaluates a bounded grid."""
    from epochpilot.core.stopping._curvefit import EXACT_HORIZON, _future_steps

    steps = _future_steps(200_000_000)
    assert len(steps) <= EXACT_HORIZON + 256 and steps[-1] == 200_000_000
    assert list(_future_steps(40)) == list(range(1, 41))
    stopper = Forecast("val_loss", "min", budget=10**9)
    for epoch in range(1, 25):
        decision = stopper.update(epoch, {"val_loss": 1 / epoch})
    assert decision.best_epoch == 24

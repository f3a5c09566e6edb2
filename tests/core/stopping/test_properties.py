"""Property tests shared by every stop policy (hypothesis)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from epochpilot.core.stopping import (
    EMA,
    AnyOf,
    EarlyStopping,
    GeneralizationLoss,
    Policy,
    ProgressQuotient,
    Reason,
    UpStrips,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

finite = st.floats(0.0, 10.0, allow_nan=False, allow_infinity=False)
maybe_bad = st.one_of(finite, finite, finite, finite, st.sampled_from([math.nan, math.inf]))


@st.composite
def histories(draw, *, allow_bad: bool = True, min_size: int = 1) -> list[dict[str, float]]:
    values = st.lists(maybe_bad if allow_bad else finite, min_size=min_size, max_size=40)
    valid = draw(values)
    train = draw(st.lists(finite, min_size=len(valid), max_size=len(valid)))
    return [{"val_loss": v, "loss": t} for v, t in zip(valid, train)]


@st.composite
def early_kwargs(draw) -> dict:
    mode = draw(st.sampled_from(["min", "max"]))
    kwargs = {
        "mode": mode,
        "patience": draw(st.integers(0, 8)),
        "min_delta": draw(st.sampled_from([0.0, 0.01, 0.1, 0.5])),
        "min_delta_mode": draw(st.sampled_from(["abs", "rel"])),
        "baseline": draw(st.none() | finite),
        "start_from_epoch": draw(st.integers(0, 6)),
        "check_finite": draw(st.booleans()),
        "smoothing": draw(
            st.none() | st.floats(0.0, 0.95) | st.builds(EMA, st.floats(0.0, 0.95), st.booleans())
        ),
    }
    low, high = sorted(draw(st.lists(finite, min_size=2, max_size=2)))
    good, bad = (low, high) if mode == "min" else (high, low)
    if good != bad:
        kwargs["stopping_threshold"] = draw(st.none() | st.just(good))
        kwargs["divergence_threshold"] = draw(st.none() | st.just(bad))
    return kwargs


def early_factory() -> st.SearchStrategy[Callable[[], Policy]]:
    return early_kwargs().map(lambda kw: lambda: EarlyStopping("val_loss", **kw))


def prechelt_factory() -> st.SearchStrategy[Callable[[], Policy]]:
    alpha = st.floats(0.01, 50.0)
    strip = st.integers(1, 6)
    return st.one_of(
        alpha.map(lambda a: lambda: GeneralizationLoss(a, "val_loss")),
        st.tuples(alpha, strip).map(
            lambda p: lambda: ProgressQuotient(p[0], p[1], monitor="val_loss", train_monitor="loss")
        ),
        st.tuples(st.integers(1, 4), strip).map(
            lambda p: lambda: UpStrips(p[0], p[1], monitor="val_loss")
        ),
    )


def any_factory() -> st.SearchStrategy[Callable[[], Policy]]:
    leaf = st.one_of(early_factory(), prechelt_factory())
    combined = st.lists(leaf, min_size=1, max_size=3).map(
        lambda fs: lambda: AnyOf(*(f() for f in fs))
    )
    return st.one_of(leaf, combined)


def stream(policy: Policy, history):
    decisions = []
    for epoch, metrics in enumerate(history, start=1):
        decisions.append(policy.update(epoch, metrics))
        if decisions[-1].stop:
            break
    return decisions


@SETTINGS
@given(any_factory(), histories())
def test_streaming_update_agrees_with_decide(factory, history):
    policy = factory()
    decisions = stream(policy, history)
    assert factory().decide(history) == decisions[-1]
    # decide() does not touch the policy it is called on, and honours explicit epoch numbers
    snapshot = policy.state_dict()
    numbered = [{**m, "epoch": i + 1} for i, m in enumerate(history)]
    assert policy.decide(numbered) == decisions[-1]
    assert policy.state_dict() == snapshot


@SETTINGS
@given(any_factory(), histories(min_size=2), st.data())
def test_state_round_trip_mid_stream_gives_identical_decisions(factory, history, data):
    cut = data.draw(st.integers(1, len(history) - 1))
    original = factory()
    before = stream(original, history[:cut])
    if before[-1].stop:
        return
    state = json.loads(json.dumps(original.state_dict(), allow_nan=False))
    resumed = factory()
    resumed.load_state_dict(state)
    for epoch, metrics in enumerate(history[cut:], start=cut + 1):
        assert resumed.update(epoch, metrics) == original.update(epoch, metrics)


@SETTINGS
@given(any_factory(), histories())
def test_state_dict_is_strict_json_at_every_epoch(factory, history):
    policy = factory()
    for epoch, metrics in enumerate(history, start=1):
        policy.update(epoch, metrics)
        json.dumps(policy.state_dict(), allow_nan=False)  # raises on NaN/inf or non-JSON types


@SETTINGS
@given(early_kwargs(), histories())
def test_never_stops_before_start_plus_patience_unless_a_guard_fires(kwargs, history):
    decisions = stream(EarlyStopping("val_loss", **kwargs), history)
    last, epoch = decisions[-1], len(decisions)
    if last.stop and last.reason in (Reason.PATIENCE, Reason.BASELINE):
        start, patience = kwargs["start_from_epoch"], kwargs["patience"]
        assert epoch >= start + max(patience, 1)
        if kwargs["baseline"] is None and all(
            math.isfinite(m["val_loss"]) for m in history[:epoch]
        ):
            assert epoch >= start + 1 + patience  # the first monitored epoch always improves
    if last.stop and last.reason is Reason.STOPPING_THRESHOLD:
        assert math.isfinite(history[epoch - 1]["val_loss"])  # NaN/inf never reach the goal
    if last.stop and last.reason is Reason.DIVERGENCE:
        assert not math.isnan(history[epoch - 1]["val_loss"])  # NaN compares as nothing
    if last.reason is Reason.NOT_FINITE:
        assert kwargs["check_finite"] and not math.isfinite(history[epoch - 1]["val_loss"])
    if last.best_value is not None:
        assert math.isfinite(last.best_value)
        assert last.best_value == history[last.best_epoch - 1]["val_loss"]  # the raw value
        assert last.best_epoch > kwargs["start_from_epoch"]


@SETTINGS
@given(st.integers(0, 6), st.integers(0, 4), st.lists(finite, min_size=1, max_size=30))
def test_max_mode_mirrors_min_mode(patience, start, values):
    low = stream(
        EarlyStopping("val_loss", "min", patience, start_from_epoch=start),
        [{"val_loss": v} for v in values],
    )
    high = stream(
        EarlyStopping("val_loss", "max", patience, start_from_epoch=start),
        [{"val_loss": -v} for v in values],
    )
    assert [(d.stop, d.reason, d.best_epoch) for d in low] == [
        (d.stop, d.reason, d.best_epoch) for d in high
    ]


@SETTINGS
@given(st.lists(finite, min_size=1, max_size=30), st.integers(0, 5))
def test_smoothing_with_alpha_zero_changes_no_decision(values, patience):
    history = [{"val_loss": v} for v in values]
    plain = stream(EarlyStopping("val_loss", "min", patience), history)
    smooth = stream(EarlyStopping("val_loss", "min", patience, smoothing=0.0), history)
    key = [(d.stop, d.reason, d.improved, d.best_epoch, d.best_value) for d in plain]
    assert key == [(d.stop, d.reason, d.improved, d.best_epoch, d.best_value) for d in smooth]


@SETTINGS
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=40), st.floats(0.0, 0.99), st.booleans())
def test_ema_stays_within_the_range_of_the_values_seen(values, alpha, bias_correction):
    smoothed = EMA(alpha, bias_correction).smooth(values)
    for i, s in enumerate(smoothed):
        seen = values[: i + 1]
        slack = 1e-9 * max(1.0, max(abs(v) for v in seen))
        assert min(seen) - slack <= s <= max(seen) + slack


@SETTINGS
@given(st.lists(st.floats(0.01, 10.0), min_size=1, max_size=40), st.floats(0.1, 40.0))
def test_generalization_loss_matches_a_numpy_oracle(values, alpha):
    gl = 100.0 * (np.asarray(values) / np.minimum.accumulate(values) - 1.0)
    fired = np.flatnonzero(gl > alpha)
    expected = int(fired[0]) + 1 if fired.size else None
    decisions = stream(GeneralizationLoss(alpha, "val_loss"), [{"val_loss": v} for v in values])
    assert (len(decisions) if decisions[-1].stop else None) == expected


@SETTINGS
@given(st.lists(finite, min_size=1, max_size=40), st.integers(1, 3), st.integers(1, 5))
def test_up_strips_matches_an_oracle(values, strips, strip):
    ends = values[strip - 1 :: strip]
    expected = None
    for i in range(strips, len(ends)):
        if all(ends[j] > ends[j - 1] for j in range(i - strips + 1, i + 1)):
            expected = (i + 1) * strip
            break
    decisions = stream(
        UpStrips(strips, strip, monitor="val_loss"), [{"val_loss": v} for v in values]
    )
    assert (len(decisions) if decisions[-1].stop else None) == expected

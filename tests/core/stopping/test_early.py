"""Unit tests for EarlyStopping: messages, guards, NaN handling, smoothing, bad input, state."""

from __future__ import annotations

import math

import pytest

from epochpilot.core.stopping import EMA, Decision, EarlyStopping, Reason


def feed(policy: EarlyStopping, values: list[float], key: str = "val_loss") -> list[Decision]:
    decisions = []
    for epoch, value in enumerate(values, start=1):
        decisions.append(policy.update(epoch, {key: value}))
        if decisions[-1].stop:
            break
    return decisions


def test_messages_say_why_with_the_patience_unit():
    decisions = feed(EarlyStopping("val_loss", "min", patience=2), [0.5, 0.412, 0.42, 0.43])
    assert [d.message for d in decisions] == [
        "val_loss improved to 0.5 (best so far): continue",
        "val_loss improved to 0.412 (best so far): continue",
        "val_loss: no improvement in 1 of 2 epochs (best 0.412 at epoch 2): continue",
        "Stopped at epoch 4: validation loss has not improved for 2 epochs (patience 2). "
        "Kept epoch 2 (val_loss 0.412).",
    ]
    assert decisions[-1].details == (
        "EarlyStopping(val_loss): val_loss did not improve by more than 0 for 2 epochs "
        "(best 0.412 at epoch 2)"
    )
    assert decisions[-1].why == "validation loss has not improved for 2 epochs (patience 2)"
    last = decisions[-1]
    assert (last.stop, last.reason, last.improved) == (True, Reason.PATIENCE, False)
    assert (last.best_epoch, last.best_value, last.policy) == (2, 0.412, "EarlyStopping(val_loss)")


def test_max_mode_and_patience_zero():
    decisions = feed(EarlyStopping("val_acc", "max", patience=0), [0.5, 0.6, 0.6], key="val_acc")
    assert [d.stop for d in decisions] == [False, False, True]
    assert (
        "has not improved for 1 epoch (patience 0). Kept epoch 2 (val_acc 0.6)."
        in decisions[-1].message
    )
    assert "for 1 epoch (best 0.6 at epoch 2)" in decisions[-1].details


def test_relative_min_delta():
    policy = EarlyStopping("val_loss", "min", patience=1, min_delta=0.1, min_delta_mode="rel")
    decisions = feed(policy, [1.0, 0.95, 0.89])
    assert [d.improved for d in decisions] == [True, False]
    assert (
        decisions[-1].stop and "not improved by more than 10% for 1 epoch" in decisions[-1].message
    )
    policy = EarlyStopping("val_loss", "min", patience=1, min_delta=0.1, min_delta_mode="rel")
    assert [d.improved for d in feed(policy, [1.0, 0.89, 0.85])] == [True, True, False]


def test_baseline_stop_has_its_own_reason():
    # Keras' rule: the wait restarts only on an improvement that also beats the baseline, so the
    # first epoch already counts
    decisions = feed(
        EarlyStopping("val_loss", "min", patience=4, baseline=0.3), [0.5, 0.6, 0.4, 0.45]
    )
    assert [d.improved for d in decisions] == [True, False, True, False]
    assert decisions[2].message.startswith("val_loss improved to 0.4 (best so far) but not")
    assert decisions[-1].reason is Reason.BASELINE
    assert decisions[-1].message == (
        "Stopped at epoch 4: validation loss did not get below the baseline 0.3 in 4 epochs "
        "(patience 4). Kept epoch 3 (val_loss 0.4)."
    )
    assert "did not beat baseline 0.3 by more than 0 in 4 epochs" in decisions[-1].details


def test_warm_up_epochs_are_ignored():
    decisions = feed(
        EarlyStopping("val_loss", "min", patience=1, start_from_epoch=2), [0.1, 0.2, 0.9]
    )
    assert [(d.improved, d.best_epoch) for d in decisions] == [
        (False, None),
        (False, None),
        (True, 3),
    ]
    assert "warm-up (monitoring starts after epoch 2)" in decisions[0].message


@pytest.mark.parametrize(
    ("mode", "values", "stop_at", "word"),
    [("min", [1.0, 0.5, 0.2, 0.1], 4, "below"), ("max", [0.5, 0.8, 0.9, 0.95], 4, "above")],
)
def test_stopping_threshold_is_strict_and_counts_the_best(mode, values, stop_at, word):
    threshold = values[2]
    decisions = feed(EarlyStopping("m", mode, stopping_threshold=threshold), values, key="m")
    assert len(decisions) == stop_at  # equal to the threshold is not past it
    last = decisions[-1]
    assert (last.reason, last.improved, last.best_epoch) == (
        Reason.STOPPING_THRESHOLD,
        True,
        stop_at,
    )
    assert f"is {word} stopping_threshold" in last.details
    assert (
        f"m reached {values[-1]:g}, {word} the stopping_threshold of {threshold:g}: good enough"
        in (last.message)
    )


def test_divergence_threshold_fires_even_during_warm_up():
    policy = EarlyStopping("val_loss", "min", start_from_epoch=5, divergence_threshold=10.0)
    decisions = feed(policy, [3.0, 10.0, 10.5])
    assert decisions[-1].stop and decisions[-1].reason is Reason.DIVERGENCE and len(decisions) == 3
    assert "val_loss = 10.5 is above divergence_threshold 10" in decisions[-1].details
    assert decisions[-1].message == (
        "Stopped at epoch 3: validation loss rose to 10.5, above the divergence_threshold of 10: "
        "training has diverged. No epoch is kept (no best val_loss yet)."
    )
    policy = EarlyStopping("acc", "max", divergence_threshold=0.1)
    assert feed(policy, [0.5, 0.05], key="acc")[-1].reason is Reason.DIVERGENCE


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_stops_when_check_finite(bad):
    policy = EarlyStopping("val_loss", "min", start_from_epoch=3)
    decisions = feed(policy, [1.0, bad])
    assert decisions[-1].stop and decisions[-1].reason is Reason.NOT_FINITE
    assert "(not finite) at epoch 2" in decisions[-1].details
    assert decisions[-1].message.startswith("Stopped at epoch 2: validation loss is ")
    assert (
        "training has diverged. No epoch is kept (no best val_loss yet)." in decisions[-1].message
    )


def test_non_finite_counts_as_no_improvement_without_check_finite():
    policy = EarlyStopping("val_loss", "min", patience=2, check_finite=False)
    decisions = feed(policy, [math.nan, 1.0, math.nan, math.inf, 0.5])
    assert [d.improved for d in decisions] == [False, True, False, False]
    assert decisions[0].best_epoch is None and "counted as no improvement" in decisions[2].message
    assert decisions[-1].reason is Reason.PATIENCE and decisions[-1].best_value == 1.0
    # an infinite loss diverged: it trips divergence_threshold (as in Lightning); NaN compares as nothing
    policy = EarlyStopping("val_loss", "min", check_finite=False, divergence_threshold=5.0)
    assert [d.reason for d in feed(policy, [1.0, math.nan, math.inf])] == [
        Reason.CONTINUE,
        Reason.CONTINUE,
        Reason.DIVERGENCE,
    ]
    # +inf in max mode is not a best either, and never reaches the stopping threshold
    policy = EarlyStopping("acc", "max", patience=5, check_finite=False, stopping_threshold=0.9)
    assert [d.stop for d in feed(policy, [0.5, math.inf], key="acc")] == [False, False]


def test_smoothing_compares_the_ema_but_reports_the_raw_best():
    values = [
        1.0,
        0.9,
        0.6,
        0.8,
        0.7,
        0.65,
        0.62,
        0.58,
    ]  # one lucky epoch (0.6), then steady progress
    raw = feed(EarlyStopping("val_loss", "min", patience=3), values)
    assert len(raw) == 6 and raw[-1].best_epoch == 3
    smoothed = feed(EarlyStopping("val_loss", "min", patience=3, smoothing=0.6), values)
    assert not any(d.stop for d in smoothed) and len(smoothed) == len(values)
    ema = EMA(0.6).smooth(values)
    best_epoch = min(range(len(values)), key=lambda i: ema[i]) + 1
    assert smoothed[-1].best_epoch == best_epoch
    assert smoothed[-1].best_value == values[best_epoch - 1]  # raw, not smoothed
    assert "smoothed" in smoothed[-1].message


def test_smoothing_float_equals_ema_object_and_matches_feeding_the_smoothed_curve():
    values = [1.0, 0.7, 0.8, 0.6, 0.65, 0.66, 0.7, 0.72, 0.9]
    by_float = feed(EarlyStopping("v", "min", patience=2, smoothing=0.3), values, key="v")
    by_ema = feed(EarlyStopping("v", "min", patience=2, smoothing=EMA(0.3)), values, key="v")
    plain = feed(EarlyStopping("v", "min", patience=2), EMA(0.3).smooth(values), key="v")
    assert by_float == by_ema
    assert [(d.stop, d.reason, d.best_epoch) for d in by_float] == [
        (d.stop, d.reason, d.best_epoch) for d in plain
    ]


def test_ema_without_bias_correction_starts_at_the_first_value():
    assert EMA(0.9, bias_correction=False).smooth([2.0, 2.0]) == [2.0, 2.0]
    assert EMA(0.0).smooth([3.0, 1.0]) == [3.0, 1.0]


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        (dict(patience=-1), ValueError, "patience"),
        (dict(patience=2.5), TypeError, "patience"),
        (dict(patience=True), TypeError, "patience"),
        (dict(mode="auto"), ValueError, "mode"),
        (dict(mode=None), ValueError, "mode"),
        (dict(min_delta=-0.1), ValueError, "min_delta"),
        (dict(min_delta=math.nan), ValueError, "min_delta"),
        (dict(min_delta_mode="pct"), ValueError, "min_delta_mode"),
        (dict(baseline=math.nan), ValueError, "baseline"),
        (dict(start_from_epoch=-1), ValueError, "start_from_epoch"),
        (dict(stopping_threshold=math.nan), ValueError, "stopping_threshold"),
        (dict(divergence_threshold=math.inf), ValueError, "divergence_threshold"),
        (dict(stopping_threshold=2.0, divergence_threshold=1.0), ValueError, "stopping_threshold"),
        (dict(check_finite="yes"), TypeError, "check_finite"),
        (dict(smoothing=1.0), ValueError, "smoothing"),
        (dict(smoothing=math.nan), ValueError, "smoothing"),
        (dict(smoothing="ema"), TypeError, "smoothing"),
        (dict(monitor=""), ValueError, "monitor"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, name):
    args = {"monitor": "val_loss", "mode": "min", **kwargs}
    with pytest.raises(error, match=name):
        EarlyStopping(**args)


def test_mode_is_required():
    with pytest.raises(TypeError, match="mode"):
        EarlyStopping("val_loss")  # type: ignore[call-arg]


@pytest.mark.parametrize("alpha", [-0.1, 1.0, math.nan])
def test_bad_ema_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        EMA(alpha)


def test_missing_monitor_lists_the_keys_present():
    policy = EarlyStopping("val_loss", "min")
    with pytest.raises(KeyError, match="present: loss, val_acc"):
        policy.update(1, {"val_acc": 0.5, "loss": 1.0})


def test_non_numeric_metric_is_a_type_error():
    with pytest.raises(TypeError, match=r"metrics\['val_loss'\] must be a number"):
        EarlyStopping("val_loss", "min").update(1, {"val_loss": "low"})


@pytest.mark.parametrize("epoch", [0, -1])
def test_epochs_start_at_one(epoch):
    with pytest.raises(ValueError, match="epoch"):
        EarlyStopping("val_loss", "min").update(epoch, {"val_loss": 1.0})


def test_state_dict_checks_its_envelope_and_keys():
    policy = EarlyStopping("val_loss", "min")
    feed(policy, [1.0, 0.9])
    state = policy.state_dict()
    assert state["policy"] == "EarlyStopping" and state["version"] == 1
    with pytest.raises(ValueError, match="missing"):
        policy.load_state_dict({**state, "state": {"wait_": 0}})
    with pytest.raises(ValueError, match="not 'EarlyStopping'"):
        policy.load_state_dict({**state, "policy": "UpStrips"})
    with pytest.raises(ValueError, match="version"):
        policy.load_state_dict({**state, "version": 99})
    with pytest.raises(ValueError, match="keys"):
        policy.load_state_dict({"state": {}})


def test_reset_and_repr():
    policy = EarlyStopping("val_loss", "min", patience=3, smoothing=EMA(0.5))
    feed(policy, [1.0, 2.0, 0.5])
    policy.reset()
    assert policy.state_dict() == EarlyStopping("val_loss", "min").state_dict()
    assert repr(policy) == (
        "EarlyStopping(monitor='val_loss', mode='min', patience=3, "
        "smoothing=EMA(alpha=0.5, bias_correction=True))"
    )
    assert repr(eval(repr(policy), {"EarlyStopping": EarlyStopping, "EMA": EMA})) == repr(policy)


# -- golden against Lightning: thresholds, check_finite and patience (no baseline, no warm-up) ----------
@pytest.mark.slow  # importing lightning alone takes ~5-15 s on a loaded 2-core machine
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_thresholds_and_check_finite_match_lightning():
    """Drive Lightning's EarlyStopping check directly on random grid curves with NaN/inf mixed in."""
    torch = pytest.importorskip("torch")
    callbacks = pytest.importorskip("lightning.pytorch.callbacks.early_stopping")
    np = pytest.importorskip("numpy")
    reasons = {
        callbacks.EarlyStoppingReason.STOPPING_THRESHOLD: Reason.STOPPING_THRESHOLD,
        callbacks.EarlyStoppingReason.DIVERGENCE_THRESHOLD: Reason.DIVERGENCE,
        callbacks.EarlyStoppingReason.PATIENCE_EXHAUSTED: Reason.PATIENCE,
        callbacks.EarlyStoppingReason.NON_FINITE_METRIC: Reason.NOT_FINITE,
    }
    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(300):
        mode = str(rng.choice(["min", "max"]))
        n = int(rng.integers(1, 30))
        values = [float(v) / 64 for v in 200 + np.cumsum(rng.integers(-4, 5, size=n))]
        worse_inf = (
            math.inf if mode == "min" else -math.inf
        )  # +-inf on the good side: see the report
        for index in rng.choice(n, size=int(rng.integers(0, 3)), replace=True):
            values[int(index)] = float(rng.choice([math.nan, worse_inf]))
        kwargs = dict(
            patience=int(rng.integers(0, 5)),
            min_delta=float(rng.choice([0, 1, 3])) / 64,
            check_finite=bool(rng.random() < 0.5),
        )
        offset = float(rng.integers(4, 20)) / 64
        good, bad = (200 / 64 - offset, 200 / 64 + offset)
        if mode == "max":
            good, bad = bad, good
        if rng.random() < 0.5:
            kwargs["stopping_threshold"] = good
        if rng.random() < 0.5:
            kwargs["divergence_threshold"] = bad
        theirs = callbacks.EarlyStopping("val_loss", mode=mode, **kwargs)
        ours = EarlyStopping("val_loss", mode, **kwargs)
        expected = got = None
        for epoch, value in enumerate(values, start=1):
            should_stop, _ = theirs._evaluate_stopping_criteria(
                torch.tensor(value, dtype=torch.float64)
            )
            if should_stop and expected is None:
                expected = (epoch, reasons[theirs.stopping_reason])
            decision = ours.update(epoch, {"val_loss": value})
            if decision.stop and got is None:
                got = (epoch, decision.reason)
            if expected and got:
                break
        assert got == expected, f"values={values} mode={mode} kwargs={kwargs}"
        seen.add(None if got is None else got[1])
    assert seen >= {
        None,
        Reason.PATIENCE,
        Reason.NOT_FINITE,
        Reason.DIVERGENCE,
        Reason.STOPPING_THRESHOLD,
    }

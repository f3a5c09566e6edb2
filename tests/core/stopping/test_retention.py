"""Retention: the forgetting guard stops (reason RETENTION) once a general-ability score drops too far."""

from __future__ import annotations

import doctest
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import epochpilot.core.stopping.retention as retention_module
from epochpilot.core.stopping import AnyOf, EarlyStopping, Reason, Retention


def feed(policy, values, key="retention"):
    decisions = []
    for epoch, value in enumerate(values, start=1):
        decisions.append(policy.update(epoch, {key: value}))
        if decisions[-1].stop:
            break
    return decisions


def test_docstring_example_runs():
    result = doctest.testmod(retention_module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_stops_at_the_first_epoch_past_the_limit_not_at_it():
    guard = Retention("retention", reference=1.0, max_drop=0.1)
    decisions = feed(guard, [0.95, 0.9, 0.89, 0.5])
    assert [d.stop for d in decisions] == [False, False, True]  # 0.9 is exactly the limit: allowed
    assert decisions[-1].reason is Reason.RETENTION
    assert guard.violating_ == 1
    assert decisions[-1].best_epoch == 1 and decisions[-1].best_value == 0.95


def test_min_mode_reads_drop_as_a_rise():
    guard = Retention("general_loss", reference=2.0, max_drop=0.5, mode="min")
    decisions = feed(guard, [2.2, 2.5, 2.6], key="general_loss")
    assert [d.stop for d in decisions] == [False, False, True]
    assert "above the reference 2" in decisions[-1].message


def test_relative_drop_scales_with_the_reference():
    guard = Retention("acc", reference=0.8, max_drop=0.25, relative=True)  # limit 0.6
    decisions = feed(guard, [0.61, 0.59], key="acc")
    assert guard.limit == pytest.approx(0.6)
    assert [d.stop for d in decisions] == [False, True]


def test_patience_tolerates_consecutive_violations_and_recovery_resets():
    guard = Retention("r", reference=1.0, max_drop=0.1, patience=1)
    decisions = feed(guard, [0.8, 0.95, 0.8, 0.7], key="r")
    assert [d.stop for d in decisions] == [False, False, False, True]
    assert "tolerated 1 of 1" in decisions[0].message


def test_not_finite_stops():
    decision = feed(Retention("r", 1.0, 0.1), [math.nan], key="r")[-1]
    assert decision.stop and decision.reason is Reason.NOT_FINITE


def test_combined_with_any_of_keeps_the_task_best_and_names_the_guard():
    policy = AnyOf(
        EarlyStopping("val_accuracy", mode="max", patience=10),
        Retention("retention", reference=1.0, max_drop=0.05),
    )
    rows = [
        {"val_accuracy": 0.5, "retention": 0.99},
        {"val_accuracy": 0.6, "retention": 0.97},
        {"val_accuracy": 0.7, "retention": 0.9},
    ]
    for epoch, row in enumerate(rows, start=1):
        decision = policy.update(epoch, row)
    assert decision.stop and decision.reason is Reason.RETENTION
    assert decision.policy == "Retention(retention)"
    assert (
        decision.best_epoch == 3
    )  # the task's best; a trainer must not keep it (guard.violating_ > 0)
    assert policy.policies[1].violating_ == 1


def test_state_dict_round_trips_through_json_and_resumes_identically():
    values = [0.99, 0.93, 0.97, 0.91, 0.8]
    whole = Retention("r", 1.0, 0.08, patience=1)
    expected = feed(whole, values, key="r")
    first = Retention("r", 1.0, 0.08, patience=1)
    feed(first, values[:2], key="r")
    second = Retention("r", 1.0, 0.08, patience=1)
    second.load_state_dict(json.loads(json.dumps(first.state_dict())))
    rest = [second.update(e, {"r": v}) for e, v in enumerate(values[2:], start=3)]
    assert [d.stop for d in rest] == [d.stop for d in expected[2:]]
    assert rest[-1] == expected[-1]
    with pytest.raises(ValueError, match="state keys"):
        second.load_state_dict({"policy": "Retention", "version": 1, "state": {"x": 1}})


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=25),
    st.floats(0.0, 0.5),
    st.integers(0, 3),
)
def test_streaming_agrees_with_decide_and_with_the_rule(values, max_drop, patience):
    guard = Retention("r", reference=1.0, max_drop=max_drop, patience=patience)
    streamed = feed(guard, values, key="r")
    assert guard.decide([{"r": v} for v in values]) == streamed[-1]
    # the rule itself: stop at the first epoch that ends a run of patience+1 values below the limit
    run, expected_stop = 0, None
    for epoch, value in enumerate(values, start=1):
        run = run + 1 if value < 1.0 - max_drop else 0
        if run > patience:
            expected_stop = epoch
            break
    assert (streamed[-1].stop, len(streamed)) == (
        (True, expected_stop) if expected_stop else (False, len(values))
    )


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(monitor="", reference=1.0, max_drop=0.1), ValueError, "monitor"),
        (dict(monitor="r", reference=math.nan, max_drop=0.1), ValueError, "reference"),
        (dict(monitor="r", reference=1.0, max_drop=-0.1), ValueError, "max_drop"),
        (dict(monitor="r", reference=1.0, max_drop=0.1, mode="up"), ValueError, "mode"),
        (dict(monitor="r", reference=1.0, max_drop=0.1, patience=-1), ValueError, "patience"),
        (dict(monitor="r", reference=1.0, max_drop=0.1, relative=1), TypeError, "relative"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        Retention(**kwargs)


def test_missing_monitor_lists_present_keys():
    with pytest.raises(KeyError, match="present: val_loss"):
        Retention("retention", 1.0, 0.1).update(1, {"val_loss": 1.0})


def test_repr_rebuilds():
    assert repr(Retention("r", 1.0, 0.1, patience=2)) == (
        "Retention(monitor='r', reference=1.0, max_drop=0.1, patience=2)"
    )

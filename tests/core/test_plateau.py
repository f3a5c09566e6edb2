"""Pure tests of epochpilot.core.schedules.plateau.ReduceOnPlateau: rules, validation, JSON-safe state round-trips."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from epochpilot.core.schedules import Constant, Cosine, Scaled, Warmup
from epochpilot.core.schedules.plateau import ReduceOnPlateau


def test_patience_cooldown_and_scale() -> None:
    plateau = ReduceOnPlateau(mode="min", factor=0.5, patience=1, cooldown=1)
    fed = [plateau.step(v) for v in [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]]
    # 1st sets best; 2 bad -> reduce at the 3rd; cooldown swallows the 4th; 2 more bad -> reduce at the 6th
    assert fed == [False, False, True, False, False, True]
    assert plateau.num_reductions == 2 and plateau.scale == 0.25


def test_threshold_modes() -> None:
    rel = ReduceOnPlateau(mode="min", patience=0, threshold=0.1)
    rel.step(10.0)
    assert rel.step(9.5)  # not 10% better: a bad evaluation, reduce
    absolute = ReduceOnPlateau(mode="max", patience=0, threshold=0.1, threshold_mode="abs")
    absolute.step(1.0)
    assert not absolute.step(1.2) and absolute.best == 1.2


def test_nan_and_inf_count_as_bad() -> None:
    plateau = ReduceOnPlateau(mode="max", patience=1)
    for value in [float("nan"), float("inf"), float("-inf")]:
        plateau.step(value)
    assert plateau.best is None and plateau.num_reductions == 1


def test_apply_floors_at_min_lr_but_never_raises_lr() -> None:
    plateau = ReduceOnPlateau(mode="min", patience=0, factor=0.1, min_lr=0.05)
    assert plateau.apply(0.3) == 0.3
    plateau.step(1.0)
    plateau.step(2.0)
    assert plateau.apply(1.0) == pytest.approx(0.1)
    assert plateau.apply(0.3) == 0.05
    assert plateau.apply(0.01) == 0.01


def test_update_reads_monitor_and_lists_keys() -> None:
    plateau = ReduceOnPlateau("val_loss", mode="min")
    assert plateau.update({"val_loss": 1.0}) is False
    with pytest.raises(KeyError, match="present: loss"):
        plateau.update({"loss": 1.0})
    with pytest.raises(ValueError, match="has no monitor"):
        ReduceOnPlateau(mode="min").update({"val_loss": 1.0})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mode="minimum"), "mode must be 'min' or 'max'"),
        (dict(mode="min", factor=1.0), r"factor must be a finite number in \[0.0, 1.0\)"),
        (dict(mode="min", factor=0.0), r"factor must be in \(0, 1\)"),
        (dict(mode="min", factor=float("nan")), "factor must be a finite number"),
        (dict(mode="min", patience=-1), "patience must be an integer >= 0"),
        (dict(mode="min", patience=1.5), "patience must be an integer >= 0"),
        (dict(mode="min", cooldown=-2), "cooldown must be an integer >= 0"),
        (dict(mode="min", threshold=-1e-4), "threshold must be a finite number"),
        (dict(mode="min", threshold_mode="relative"), "threshold_mode must be 'rel' or 'abs'"),
        (dict(mode="min", min_lr=float("nan")), "min_lr must be a finite number"),
        (dict(mode="min", monitor=""), "monitor must be a metric name"),
        (dict(mode="min", factor="0.5"), "factor must be a number"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ReduceOnPlateau(**kwargs)


def test_mode_is_required() -> None:
    with pytest.raises(TypeError):
        ReduceOnPlateau("val_loss")  # type: ignore[call-arg]


def test_wrap_composes_with_warmup() -> None:
    plateau = ReduceOnPlateau(mode="min", patience=0, factor=0.5)
    inner = Warmup(Cosine(0.1, 100), 10)
    schedule = plateau.wrap(inner)
    assert isinstance(schedule, Scaled) and schedule.schedule == inner
    plateau.step(1.0)
    plateau.step(1.0)
    assert [schedule(s) for s in (0, 5, 50)] == pytest.approx([inner(s) * 0.5 for s in (0, 5, 50)])


values = st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=30)
configs = st.fixed_dictionaries(
    {
        "mode": st.sampled_from(["min", "max"]),
        "factor": st.floats(0.01, 0.99),
        "patience": st.integers(0, 4),
        "threshold": st.floats(0.0, 0.5),
        "threshold_mode": st.sampled_from(["rel", "abs"]),
        "cooldown": st.integers(0, 3),
        "min_lr": st.floats(0.0, 1e-3),
    }
)


@settings(max_examples=150, deadline=None)
@given(configs, values, values)
def test_state_round_trip_through_json_continues_identically(
    config: dict, first: list, second: list
) -> None:
    plateau = ReduceOnPlateau("val_loss", **config)
    for value in first:
        plateau.step(value)
    state = json.loads(json.dumps(plateau.state_dict(), allow_nan=False))  # strict JSON
    clone = ReduceOnPlateau("val_loss", **config)
    clone.load_state_dict(state)
    assert clone == plateau
    assert [clone.step(v) for v in second] == [plateau.step(v) for v in second]
    assert clone.state_dict() == plateau.state_dict()
    assert math.isclose(clone.apply(0.1), plateau.apply(0.1))


def test_load_state_dict_checks_keys_and_version() -> None:
    plateau = ReduceOnPlateau(mode="min")
    state = plateau.state_dict()
    assert state["policy"] == "ReduceOnPlateau" and state["version"] == 1
    with pytest.raises(ValueError, match="keys 'policy', 'version', 'state'"):
        plateau.load_state_dict({"state": state["state"]})
    with pytest.raises(ValueError, match="not 'ReduceOnPlateau'"):
        plateau.load_state_dict({**state, "policy": "EarlyStopping"})
    with pytest.raises(ValueError, match="version 99"):
        plateau.load_state_dict({**state, "version": 99})
    with pytest.raises(ValueError, match="state keys must be"):
        plateau.load_state_dict({**state, "state": {**state["state"], "extra": 0}})


def test_reset_and_repr() -> None:
    plateau = ReduceOnPlateau("val_acc", mode="max", patience=0)
    plateau.step(1.0)
    plateau.step(0.0)
    before = repr(plateau)
    assert plateau.scale < 1
    plateau.reset()
    assert plateau.scale == 1 and plateau.best is None
    assert repr(plateau) == before  # repr shows the configuration only
    assert "mode='max'" in before
    assert Scaled(Constant(1.0), plateau)(0) == 1.0

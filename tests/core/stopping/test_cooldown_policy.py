"""The pure cooldown decisions: branch points, cooldown length, and the trunk's stop rule over branches."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from epochpilot.core.stopping.cooldown import (
    BranchPoints,
    SweepStop,
    cooldown_length,
    next_branch,
    whole_epochs,
)


def test_branch_points_double_in_steps() -> None:
    points = BranchPoints(first_step=25)
    assert points.points_until(500) == [25, 50, 100, 200, 400]
    assert (
        points.next_after(0) == 25 and points.next_after(25) == 50 and points.next_after(399) == 400
    )


@settings(max_examples=200, deadline=None)
@given(first=st.integers(1, 1000), factor=st.floats(1.01, 4.0), until=st.integers(0, 100_000))
def test_branch_points_strictly_increase_and_agree(first, factor, until) -> None:
    bp = BranchPoints(first, factor)
    points = bp.points_until(until)
    assert all(b > a for a, b in zip(points, points[1:]))
    assert all(p <= until for p in points)
    assert bp.next_after(until) > until
    if points:
        assert points[0] == first


def test_cooldown_length() -> None:
    assert cooldown_length(320, 0.2) == 64
    assert cooldown_length(0, 0.2) == 1
    with pytest.raises(ValueError, match="fraction"):
        cooldown_length(100, 0)
    with pytest.raises(ValueError, match="fraction"):
        cooldown_length(100, 1.5)


def test_sweep_stop_patience_over_branches() -> None:
    stop = SweepStop("min", patience=2)
    answers = [stop.update(v) for v in (0.9, 0.8, 0.85, 0.79, 0.795, 0.81)]
    assert [a.stop for a in answers] == [False, False, False, False, False, True]
    assert answers[-1].best_branch == 3 and answers[-1].best_value == 0.79
    assert "stop the trunk" in answers[-1].message


def test_sweep_stop_max_mode_min_delta_and_nan() -> None:
    stop = SweepStop("max", patience=1, min_delta=0.01)
    assert stop.update(math.nan).improved is False
    assert stop.update(0.5).improved is True  # NaN never counted as the best
    assert stop.update(0.504).stop is True  # within 1% of 0.5: not an improvement


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=12))
def test_state_round_trip_through_json_gives_the_same_decisions(values) -> None:
    a = SweepStop("min", patience=3)
    for v in values[: len(values) // 2]:
        a.update(v)
    b = SweepStop("min", patience=3)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    for v in values[len(values) // 2 :]:
        assert a.update(v) == b.update(v)


def test_state_keys_and_version_checked() -> None:
    stop = SweepStop("min")
    with pytest.raises(ValueError, match="keys"):
        stop.load_state_dict({"values": []})
    state = stop.state_dict() | {"version": 99}
    with pytest.raises(ValueError, match="version"):
        stop.load_state_dict(state)


def test_docstring_example_runs() -> None:
    import doctest

    from epochpilot.core.stopping import cooldown

    result = doctest.testmod(cooldown)
    assert result.attempted > 0 and result.failed == 0


# -- next_branch: what the sweep does at the end of a trunk epoch --------------------------------------------
@given(
    trunk=st.integers(0, 5000),
    left=st.integers(0, 5000),
    spe=st.integers(1, 50),
    fraction=st.floats(0.01, 1.0),
    point=st.integers(1, 5000),
)
def test_next_branch_never_overruns_and_ends_annealed(trunk, left, spe, fraction, point):
    action, steps = next_branch(trunk, left, spe, fraction, point)
    assert action in ("none", "branch", "final")
    if action == "none":
        assert steps == 0
        # another trunk epoch still leaves room for the cooldown after it
        assert left == 0 or left - spe >= whole_epochs(cooldown_length(trunk + spe, fraction), spe)
    elif action == "final":
        assert steps == left > 0  # the last branch takes every update left
    else:
        assert trunk >= point and 0 < steps < left
        assert steps % spe == 0 and steps >= cooldown_length(trunk, fraction)
        # and the budget after this branch still fits one more trunk epoch and its cooldown
        assert left - steps - spe >= whole_epochs(cooldown_length(trunk + spe, fraction), spe)


def test_next_branch_examples():
    assert next_branch(40, 1000, 10, 0.2, 80) == ("none", 0)
    assert next_branch(80, 1000, 10, 0.2, 80) == ("branch", 20)
    assert next_branch(80, 29, 10, 0.2, 160) == ("final", 29)  # 19 left after one more epoch < 20
    assert next_branch(80, 0, 10, 0.2, 80) == ("none", 0)
    assert whole_epochs(1, 8) == 8 and whole_epochs(16, 8) == 16 and whole_epochs(17, 8) == 24

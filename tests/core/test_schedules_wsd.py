"""WSD (warmup-stable-decay) against the published cooldown formulas, plus validation and properties."""

from __future__ import annotations

import math
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from epochpilot.core.schedules.wsd import WSD


def published(shape: str, peak: float, final: float, t: int, start: int, length: int) -> float:
    """Hägele et al. 2024, section 3 / MiniCPM: the lr during a cooldown of ``length`` steps from ``start``
    (written out here from the paper, independently of the module)."""
    if t < start:
        return peak
    x = min(1.0, (t - start) / length)
    if shape == "linear":
        factor = 1.0 - x
    elif shape == "1-sqrt":
        factor = 1.0 - x**0.5
    else:
        factor = 0.5 * (1.0 + math.cos(math.pi * x))
    return final + (peak - final) * factor


@pytest.mark.parametrize("shape", ["linear", "1-sqrt", "cosine"])
@pytest.mark.parametrize(
    "start, length, final", [(0, 1, 0.0), (50, 20, 0.0), (13, 7, 1e-4), (100, 100, 0.01)]
)
def test_cooldown_matches_the_published_formula(shape, start, length, final) -> None:
    s = WSD(0.1, shape=shape, final_lr=final).cooldown(start, length)
    for t in range(start + length + 10):
        assert s(t) == pytest.approx(
            published(shape, 0.1, final, t, start, length), rel=1e-12, abs=1e-15
        )


def test_warmup_is_linear_from_start_factor_as_torch_linear_lr() -> None:
    s = WSD(1.0, warmup_steps=10, start_factor=0.1)
    assert [round(s(t), 10) for t in range(12)] == [
        round(0.1 + 0.9 * t / 10, 10) for t in range(10)
    ] + [1.0, 1.0]


def test_stable_phase_holds_until_the_cooldown_is_decided() -> None:
    s = WSD(0.3, warmup_steps=5)
    assert not s.cooling and s.cooldown_end is None
    assert {s(t) for t in range(5, 10_000, 97)} == {0.3}


def test_cooldown_inside_warmup_decays_from_the_lr_reached() -> None:
    s = WSD(1.0, warmup_steps=100, start_factor=0.0 + 0.5).cooldown(50, 10)
    peak = 0.5 + 0.5 * 50 / 100
    assert s(50) == pytest.approx(peak)
    assert s(55) == pytest.approx(peak / 2)
    assert s(60) == 0.0 and s(10_000) == 0.0


def test_cooldown_and_stable_round_trip() -> None:
    base = WSD(0.1, warmup_steps=3, shape="1-sqrt")
    cooled = base.cooldown(40, 8)
    assert cooled.cooling and cooled.cooldown_end == 48
    assert cooled.stable() == base
    assert pickle.loads(pickle.dumps(cooled)) == cooled


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lr": 0}, "lr"),
        ({"lr": 0.1, "shape": "sqrt"}, "shape"),
        ({"lr": 0.1, "final_lr": 0.2}, "final_lr"),
        ({"lr": 0.1, "warmup_steps": -1}, "warmup_steps"),
        ({"lr": 0.1, "cooldown_start": 5, "cooldown_steps": 0}, "cooldown_steps"),
        ({"lr": 0.1, "cooldown_start": -2, "cooldown_steps": 3}, "cooldown_start"),
        ({"lr": 0.1, "start_factor": 0}, "start_factor"),
    ],
)
def test_bad_arguments_name_the_field(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        WSD(**kwargs)


@settings(max_examples=200, deadline=None)
@given(
    lr=st.floats(1e-5, 10),
    warmup=st.integers(0, 50),
    start=st.integers(0, 200),
    length=st.integers(1, 200),
    shape=st.sampled_from(["linear", "1-sqrt", "cosine"]),
    final_share=st.floats(0, 1),
)
def test_cooldown_is_monotone_and_bounded(lr, warmup, start, length, shape, final_share) -> None:
    s = WSD(lr, warmup_steps=warmup, shape=shape, final_lr=lr * final_share).cooldown(start, length)
    values = [s(t) for t in range(start, start + length + 3)]
    assert all(b <= a + 1e-12 for a, b in zip(values, values[1:]))
    final = min(s.final_lr, values[0])
    assert all(final - 1e-12 <= v <= lr + 1e-12 for v in values)
    assert values[-1] == pytest.approx(final)


def test_docstring_example_runs() -> None:
    import doctest

    from epochpilot.core.schedules import wsd

    result = doctest.testmod(wsd)
    assert result.attempted > 0 and result.failed == 0

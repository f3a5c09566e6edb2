"""Pure tests of epochpilot.schedules: formulas, published HF schedules, validation, properties."""

from __future__ import annotations

import dataclasses
import math
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from epochpilot.core import schedules as S
from epochpilot.core.schedules import (
    Constant,
    Cosine,
    CosineWave,
    ExponentialDecay,
    Join,
    LinearDecay,
    MultiStepDecay,
    OneCycle,
    ReduceOnPlateau,
    Scaled,
    StepDecay,
    Warmup,
    cosine_with_warmup,
    linear_with_warmup,
    parse,
    simulate,
)

REL = 1e-9


def close(a: float, b: float, rel: float = REL) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b))


def assert_all_close(ours: list[float], ref: list[float], rel: float = REL) -> None:
    assert len(ours) == len(ref)
    bad = [(i, a, b) for i, (a, b) in enumerate(zip(ours, ref)) if not close(a, b, rel)]
    assert not bad, f"first mismatches (step, ours, reference): {bad[:5]}"


# -- Hugging Face's published formulas (transformers/optimization.py), written out here as the oracle --


def hf_linear_lambda(step: int, num_warmup_steps: int, num_training_steps: int) -> float:
    if step < num_warmup_steps:
        return float(step) / float(max(1, num_warmup_steps))
    return max(
        0.0,
        float(num_training_steps - step) / float(max(1, num_training_steps - num_warmup_steps)),
    )


def hf_cosine_lambda(
    step: int, num_warmup_steps: int, num_training_steps: int, num_cycles: float
) -> float:
    if step < num_warmup_steps:
        return float(step) / float(max(1, num_warmup_steps))
    progress = float(step - num_warmup_steps) / float(max(1, num_training_steps - num_warmup_steps))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress)))


@pytest.mark.parametrize("warmup, total", [(0, 50), (1, 50), (10, 100), (99, 100), (7, 13)])
def test_linear_with_warmup_matches_hf(warmup: int, total: int) -> None:
    lr = 3e-4
    ours = simulate(linear_with_warmup(lr, warmup, total), total + 5)
    ref = [lr * hf_linear_lambda(s, warmup, total) for s in range(total + 5)]
    assert_all_close(ours, ref)
    assert ours[0] == (lr if warmup == 0 else 0.0)


@pytest.mark.parametrize("warmup, total", [(0, 50), (10, 100), (3, 11)])
@pytest.mark.parametrize("cycles", [0.5, 1.0, 0.25, 1.5])
def test_cosine_with_warmup_matches_hf(warmup: int, total: int, cycles: float) -> None:
    lr = 1e-3
    ours = simulate(cosine_with_warmup(lr, warmup, total, num_cycles=cycles), total + 1)
    ref = [lr * hf_cosine_lambda(s, warmup, total, cycles) for s in range(total + 1)]
    # HF's 0.5 * (1 + cos(pi)) is ~1e-17 rather than 0; compare relative to lr there
    bad = [
        s for s, (a, b) in enumerate(zip(ours, ref)) if not (close(a, b) or abs(a - b) < 1e-15 * lr)
    ]
    assert not bad, bad


def test_hf_cosine_holds_after_end_where_hf_oscillates() -> None:
    schedule = cosine_with_warmup(1.0, 10, 110)
    assert schedule(110) == pytest.approx(0.0, abs=1e-15)
    assert schedule(150) == schedule(110)  # HF would climb back up here; we hold the end value


# -- closed forms ------------------------------------------------------------------------------


def test_step_and_multistep() -> None:
    assert simulate(StepDecay(1.0, 3, 0.5), 8) == [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25]
    assert simulate(MultiStepDecay(1.0, [2, 5], 0.1), 7) == pytest.approx(
        [1, 1, 0.1, 0.1, 0.1, 0.01, 0.01]
    )


@pytest.mark.parametrize("staircase", [False, True])
def test_exponential_keras_formula(staircase: bool) -> None:
    schedule = ExponentialDecay(0.1, decay_steps=7, decay_rate=0.5, staircase=staircase)
    for step in range(40):
        p = math.floor(step / 7) if staircase else step / 7
        assert close(schedule(step), 0.1 * 0.5**p)


def test_cosine_stays_at_min_after_total() -> None:
    schedule = Cosine(0.1, 20, min_lr=0.01)
    assert schedule(0) == 0.1
    assert close(schedule(10), 0.055)
    assert schedule(20) == schedule(21) == schedule(10_000) == 0.01


def test_cosine_restarts_with_fractional_cycles() -> None:
    schedule = Cosine(1.0, 100, cycles=3)  # cycles of 33.33 steps
    lrs = simulate(schedule, 100)
    rises = [s for s in range(1, 100) if lrs[s] > lrs[s - 1]]
    assert rises == [34, 67]  # first whole step of each new cycle
    assert all(0.0 <= v <= 1.0 for v in lrs)
    assert schedule(100) == 0.0


def test_cosine_cycle_mult_lengths() -> None:
    lrs = simulate(Cosine(1.0, 70, cycles=3, cycle_mult=2), 70)
    assert [s for s in range(70) if lrs[s] == 1.0] == [0, 10, 30]


def test_onecycle_peak_and_end() -> None:
    schedule = OneCycle(1.0, 100, pct_start=0.25)
    lrs = simulate(schedule, 120)
    assert lrs[0] == pytest.approx(1 / 25)
    assert max(lrs) == pytest.approx(1.0)
    assert lrs.index(max(lrs)) == 24
    assert lrs[99] == pytest.approx(1 / 25 / 1e4)
    assert lrs[99:] == [lrs[99]] * 21


def test_onecycle_zero_length_phase_does_not_divide_by_zero() -> None:
    # pct_start * total_steps == 1 makes torch's first phase zero long (ZeroDivisionError there)
    schedule = OneCycle(1.0, 10, pct_start=0.1)
    assert schedule(0) == 1.0
    assert all(math.isfinite(v) for v in simulate(schedule, 12))


def test_linear_decay_and_constant() -> None:
    assert simulate(LinearDecay(1.0, 4), 6) == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    assert simulate(LinearDecay(1.0, 2, min_lr=0.5), 3) == [1.0, 0.75, 0.5]
    assert simulate(Constant(0.3), 3) == [0.3, 0.3, 0.3]


def test_warmup_linear_and_exponential() -> None:
    inner = Constant(1.0)
    assert simulate(Warmup(inner, 4, start_factor=0.2), 6) == pytest.approx(
        [0.2, 0.4, 0.6, 0.8, 1, 1]
    )
    expo = simulate(Warmup(inner, 2, kind="exponential", start_factor=0.01), 3)
    assert expo == pytest.approx([0.01, 0.1, 1.0])
    assert simulate(Warmup(StepDecay(1.0, 1, 0.5), 0), 3) == [1.0, 0.5, 0.25]  # steps=0: no warmup


def test_warmup_hands_over_to_the_wrapped_schedule_at_its_step_zero() -> None:
    inner = Cosine(0.1, 90)
    schedule = Warmup(inner, 10)
    for step in range(10, 120):
        assert schedule(step) == inner(step - 10)


def test_join_restarts_counting_and_holds_after_last_until() -> None:
    a, b = StepDecay(1.0, 2, 0.5), LinearDecay(0.5, 4)
    joined = Join([(a, 4), (b, 8)])
    assert simulate(joined, 10) == [1, 1, 0.5, 0.5, 0.5, 0.375, 0.25, 0.125, 0.125, 0.125]
    forever = Join([(a, 4), (b, None)])
    assert forever(100) == b(96)
    assert Join([(a, None)])(5) == a(5)


def test_scaled_by_float_and_by_plateau() -> None:
    assert Scaled(Constant(2.0), 0.25)(3) == 0.5
    plateau = ReduceOnPlateau(mode="min", patience=0, factor=0.5, min_lr=0.3)
    schedule = plateau.wrap(Warmup(Constant(1.0), 4, start_factor=0.1))
    plateau.step(1.0)
    assert schedule(0) == pytest.approx(0.1)
    plateau.step(2.0)  # reduces
    assert schedule(0) == pytest.approx(0.1)  # below min_lr already: warmup untouched
    assert schedule(2) == pytest.approx(0.3)  # 0.55 * 0.5 = 0.275 floored at min_lr
    assert schedule(10) == 0.5
    assert S.plateaus(schedule) == [plateau]


def test_step_argument_checked() -> None:
    schedule = Cosine(0.1, 10)
    assert schedule(np.int64(3)) == schedule(3)
    for bad in (-1, 1.5, "3", True, None):
        with pytest.raises(ValueError, match="step must be an integer >= 0"):
            schedule(bad)


def test_simulate_and_to_torch_entry_point() -> None:
    assert simulate(Constant(1.0), 0) == []
    with pytest.raises(ValueError, match="steps"):
        simulate(Constant(1.0), -1)
    import epochpilot
    import epochpilot.schedules
    from epochpilot.train.lr import to_torch

    assert (
        epochpilot.to_torch is to_torch and epochpilot.schedules.to_torch is to_torch
    )  # the old path too


def test_module_is_pure() -> None:
    package = Path(S.__file__).parent
    for path in package.glob("*.py"):
        name = path.name
        text = path.read_text()
        assert not re.search(r"^\s*(import|from)\s+torch\b", text, re.M), name


# -- validation --------------------------------------------------------------------------------

BAD = [
    (lambda: Constant(float("nan")), "lr must be a finite number"),
    (lambda: Constant(-1.0), "lr must be a finite number"),
    (lambda: StepDecay(0.1, 0), "step_size must be an integer >= 1"),
    (lambda: StepDecay(0.1, 5, gamma=0.0), "gamma must be a finite number > 0"),
    (lambda: StepDecay(0.1, 5, gamma=-0.5), "gamma must be a finite number > 0"),
    (lambda: StepDecay(0.1, 2.5), "step_size must be an integer"),
    (lambda: MultiStepDecay(0.1, [5, 3]), "strictly increasing"),
    (lambda: MultiStepDecay(0.1, [-1]), "milestone must be an integer >= 1"),
    (lambda: ExponentialDecay(0.1, 0, 0.5), "decay_steps must be an integer >= 1"),
    (lambda: ExponentialDecay(0.1, 10, float("nan")), "decay_rate must be a finite number > 0"),
    (lambda: Cosine(0.1, 0), "total_steps must be an integer >= 1"),
    (lambda: Cosine(0.1, 10, min_lr=0.2), "min_lr .* must not exceed lr"),
    (lambda: Cosine(0.1, 10, cycles=0), "cycles must be an integer >= 1"),
    (lambda: Cosine(0.1, 10, cycles=2, cycle_mult=0.5), "cycle_mult must be a finite number >= 1"),
    (lambda: OneCycle(0.1, 10, pct_start=0.0), r"pct_start must be in \(0, 1\)"),
    (lambda: OneCycle(0.1, 10, pct_start=1.0), r"pct_start must be in \(0, 1\)"),
    (lambda: OneCycle(0.1, 10, anneal="cosine"), "anneal must be 'cos' or 'linear'"),
    (lambda: OneCycle(0.1, 10, pct_start=0.6, three_phase=True), "third phase"),
    (lambda: OneCycle(0.1, 10, div_factor=0), "div_factor must be a finite number > 0"),
    (lambda: Warmup(Constant(0.1), -1), "steps must be an integer >= 0"),
    (lambda: Warmup(Constant(0.1), 5, kind="cosine"), "kind must be 'linear' or 'exponential'"),
    (lambda: Warmup(Constant(0.1), 5, start_factor=1.5), r"start_factor must be in \[0, 1\]"),
    (lambda: Warmup(Constant(0.1), 5, "exponential", 0.0), r"start_factor must be in \(0, 1\]"),
    (lambda: Join([]), "at least one"),
    (lambda: Join([(Constant(0.1), None), (Constant(0.2), 5)]), "only the last part"),
    (lambda: Join([(Constant(0.1), 5), (Constant(0.2), 5)]), r"parts\[1\] until_step must be"),
    (lambda: Scaled(Constant(0.1), float("inf")), "by must be a finite number"),
    (lambda: linear_with_warmup(0.1, 10, 10), r"warmup_steps \(10\) must be < total_steps"),
    (lambda: cosine_with_warmup(0.1, -1, 10), "warmup_steps must be an integer >= 0"),
]


@pytest.mark.parametrize("make, message", BAD)
def test_bad_arguments_raise_value_error_naming_the_argument(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_non_schedule_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="schedule must be a schedule"):
        Warmup(0.1, 5)
    with pytest.raises(TypeError, match=r"parts\[0\]\[0\] must be a schedule"):
        Join([(0.1, None)])


# -- parse -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["constant", "cosine", "exponential", "linear", "onecycle", "step"]
)
def test_parse_every_name_with_and_without_warmup(name: str) -> None:
    plain = parse(name, lr=0.1, total_steps=100)
    assert isinstance(plain, S.Schedule)
    warm = parse(f" Warmup( {name} ) ", lr=0.1, total_steps=100, warmup_steps=10)
    assert isinstance(warm, Warmup) and warm.steps == 10
    assert warm.schedule == parse(name, lr=0.1, total_steps=90)
    lrs = simulate(warm, 100)
    assert all(0 <= v <= 0.1 + 1e-12 for v in lrs)


def test_parse_meanings() -> None:
    assert parse("cosine", lr=0.1, total_steps=50) == Cosine(0.1, 50)
    assert parse("linear", lr=0.1, total_steps=50) == LinearDecay(0.1, 50)
    assert parse("exponential", lr=1.0, total_steps=50)(50) == pytest.approx(0.01)
    assert parse("step", lr=1.0, total_steps=90)(60) == pytest.approx(0.01)
    assert parse("warmup(cosine)", lr=0.1, total_steps=200).steps == 10  # default: 5%
    assert parse("warmup(cosine)", lr=0.1, total_steps=100)(100) == 0.0


def test_parse_errors() -> None:
    with pytest.raises(
        ValueError, match="use one of constant, cosine, exponential, linear, onecycle, step"
    ):
        parse("cosinus", lr=0.1, total_steps=10)
    with pytest.raises(ValueError, match=r"write 'warmup\(cosine\)'"):
        parse("cosine", lr=0.1, total_steps=10, warmup_steps=3)
    with pytest.raises(ValueError, match="shorten the warmup"):
        parse("warmup(cosine)", lr=0.1, total_steps=10, warmup_steps=10)
    with pytest.raises(ValueError, match="lr must be"):
        parse("cosine", lr=float("nan"), total_steps=10)
    with pytest.raises(TypeError, match="spec must be a string"):
        parse(None, lr=0.1, total_steps=10)  # type: ignore[arg-type]


# -- properties --------------------------------------------------------------------------------

lrs = st.floats(1e-6, 10.0)
fractions = st.floats(0.01, 1.0)


@st.composite
def bounded(draw: st.DrawFn) -> tuple[S.Schedule, float, float]:
    """A schedule and the [low, high] its parameters say it must stay within."""
    lr = draw(lrs)
    kind = draw(st.sampled_from(["const", "step", "multi", "exp", "cos", "one", "lin", "wave"]))
    n = draw(st.integers(1, 300))
    if kind == "const":
        return Constant(lr), lr, lr
    if kind == "step":
        return StepDecay(lr, draw(st.integers(1, 50)), draw(fractions)), 0.0, lr
    if kind == "multi":
        ms = sorted(draw(st.sets(st.integers(1, 300), max_size=5)))
        return MultiStepDecay(lr, ms, draw(fractions)), 0.0, lr
    if kind == "exp":
        return ExponentialDecay(lr, n, draw(fractions), draw(st.booleans())), 0.0, lr
    if kind == "cos":
        low = lr * draw(st.floats(0.0, 1.0))
        cycles = draw(st.integers(1, 4))
        return Cosine(lr, n, low, cycles, draw(st.floats(1.0, 3.0))), low, lr
    if kind == "one":
        div, final = draw(st.floats(1.0, 100.0)), draw(st.floats(1.0, 1e4))
        three = draw(st.booleans())
        pct = draw(st.floats(0.05, 0.45 if three else 0.95))
        n = max(n, 20)
        anneal = draw(st.sampled_from(["cos", "linear"]))
        return OneCycle(lr, n, pct, div, final, anneal, three), lr / div / final, lr
    if kind == "lin":
        low = lr * draw(st.floats(0.0, 1.0))
        return LinearDecay(lr, n, low), low, lr
    return CosineWave(lr, n, draw(st.floats(0.1, 3.0))), 0.0, lr


@st.composite
def any_schedule(draw: st.DrawFn) -> tuple[S.Schedule, float, float]:
    schedule, low, high = draw(bounded())
    wrap = draw(st.sampled_from(["none", "warmup", "join", "scaled"]))
    if wrap == "warmup":
        factor = draw(st.floats(0.001, 1.0))
        kind = draw(st.sampled_from(["linear", "exponential"]))
        schedule = Warmup(schedule, draw(st.integers(0, 50)), kind, factor)
        low = min(low, factor * schedule.schedule(0))
    elif wrap == "join":
        other, low2, high2 = draw(bounded())
        schedule = Join(
            [
                (schedule, draw(st.integers(1, 100))),
                (other, draw(st.none() | st.integers(101, 200))),
            ]
        )
        low, high = min(low, low2), max(high, high2)
    elif wrap == "scaled":
        by = draw(st.floats(0.0, 2.0))
        schedule, low, high = Scaled(schedule, by), low * by, high * by
    return schedule, low, high


@settings(max_examples=150, deadline=None)
@given(any_schedule())
def test_values_stay_within_parameter_bounds(case: tuple[S.Schedule, float, float]) -> None:
    schedule, low, high = case
    for value in simulate(schedule, 400):
        assert math.isfinite(value)
        assert low * (1 - 1e-9) - 1e-300 <= value <= high * (1 + 1e-9), (value, low, high)


@settings(max_examples=100, deadline=None)
@given(
    bounded(), st.integers(1, 60), st.sampled_from(["linear", "exponential"]), st.floats(0.001, 1.0)
)
def test_warmup_is_monotone_non_decreasing(case, steps: int, kind: str, factor: float) -> None:
    schedule = Warmup(case[0], steps, kind, factor)
    values = simulate(schedule, steps + 1)
    assert all(b >= a for a, b in zip(values, values[1:])), values
    assert values[-1] == case[0](0)


@settings(max_examples=100, deadline=None)
@given(any_schedule())
def test_pickle_round_trip(case: tuple[S.Schedule, float, float]) -> None:
    schedule = case[0]
    clone = pickle.loads(pickle.dumps(schedule))
    assert clone == schedule
    assert hash(clone) == hash(schedule)
    assert repr(clone) == repr(schedule)
    assert simulate(clone, 50) == simulate(schedule, 50)


def test_frozen_and_plateau_pickles_with_its_state() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Cosine(0.1, 10).lr = 0.2  # type: ignore[misc]
    plateau = ReduceOnPlateau("val_loss", mode="max", patience=0)
    plateau.step(1.0)
    plateau.step(0.5)
    schedule = plateau.wrap(Cosine(0.1, 10))
    clone = pickle.loads(pickle.dumps(schedule))
    assert clone == schedule and clone(3) == schedule(3) == pytest.approx(
        0.1 * Cosine(1.0, 10)(3) * 0.1
    )


def test_strings_and_bools_are_not_numbers() -> None:
    with pytest.raises(ValueError, match=r"lr must be a number, got '0.1' \(str\)"):
        Constant("0.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="gamma must be a number"):
        StepDecay(0.1, 5, gamma=True)
    assert Cosine(np.float64(0.1), 10)(0) == 0.1

"""Golden tests: epochpilot schedules against torch's schedulers and Keras' ExponentialDecay, and the
to_torch adapter (real optimizer, resume without jumps, weights_only state, ReduceOnPlateau reports)."""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch.optim import lr_scheduler as T

from epochpilot.core.schedules import (
    Constant,
    Cosine,
    ExponentialDecay,
    Join,
    MultiStepDecay,
    OneCycle,
    ReduceOnPlateau,
    StepDecay,
    Warmup,
    simulate,
)
from epochpilot.train.lr import ScheduleLR, to_torch

torch.set_num_threads(1)
REL = 1e-9
LR = 0.1


def assert_all_close(ours: list[float], ref: list[float], rel: float = REL) -> None:
    assert len(ours) == len(ref)
    bad = [
        (i, a, b)
        for i, (a, b) in enumerate(zip(ours, ref))
        if abs(a - b) > rel * max(abs(a), abs(b))
    ]
    assert not bad, f"first mismatches (step, ours, torch): {bad[:5]}"


def optimizer(lrs: tuple[float, ...] = (LR,)) -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups, lr=lrs[0])


def torch_lrs(make: Callable[[torch.optim.Optimizer], T.LRScheduler], steps: int) -> list[float]:
    """The lr torch uses for each of ``steps`` optimizer updates (read before each update)."""
    opt = optimizer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched = make(opt)
        out = []
        for _ in range(steps):
            out.append(float(opt.param_groups[0]["lr"]))
            opt.step()
            sched.step()
    return out


GOLDEN = [
    ("StepLR", lambda o: T.StepLR(o, step_size=7, gamma=0.5), StepDecay(LR, 7, 0.5), 60),
    ("StepLR-grow", lambda o: T.StepLR(o, 3, gamma=1.5), StepDecay(LR, 3, 1.5), 30),
    (
        "MultiStepLR",
        lambda o: T.MultiStepLR(o, [5, 12, 30], 0.3),
        MultiStepDecay(LR, [5, 12, 30], 0.3),
        50,
    ),
    ("ExponentialLR", lambda o: T.ExponentialLR(o, 0.97), ExponentialDecay(LR, 1, 0.97), 300),
    ("CosineAnnealingLR", lambda o: T.CosineAnnealingLR(o, 50), Cosine(LR, 50), 51),
    ("CosineAnnealingLR-min", lambda o: T.CosineAnnealingLR(o, 97, 1e-3), Cosine(LR, 97, 1e-3), 98),
    (
        "CosineAnnealingLR-long",
        lambda o: T.CosineAnnealingLR(o, 1000, 1e-4),
        Cosine(LR, 1000, 1e-4),
        1001,
    ),
    ("WarmRestarts", lambda o: T.CosineAnnealingWarmRestarts(o, 10), Cosine(LR, 30, cycles=3), 30),
    (
        "WarmRestarts-mult",
        lambda o: T.CosineAnnealingWarmRestarts(o, 10, T_mult=2, eta_min=1e-3),
        Cosine(LR, 70, 1e-3, cycles=3, cycle_mult=2),
        70,
    ),
    (
        "WarmRestarts-mult3",
        lambda o: T.CosineAnnealingWarmRestarts(o, 4, T_mult=3),
        Cosine(LR, 4 * (1 + 3 + 9 + 27), cycles=4, cycle_mult=3),
        160,
    ),
    (
        "LinearLR+SequentialLR",
        lambda o: T.SequentialLR(
            o,
            [T.LinearLR(o, start_factor=0.01, total_iters=10), T.CosineAnnealingLR(o, 90)],
            milestones=[10],
        ),
        Warmup(Cosine(LR, 90), 10),
        100,
    ),
    (
        "LinearLR+SequentialLR-step",
        lambda o: T.SequentialLR(
            o,
            [T.LinearLR(o, start_factor=0.25, total_iters=5), T.StepLR(o, 4, 0.5)],
            milestones=[5],
        ),
        Warmup(StepDecay(LR, 4, 0.5), 5, start_factor=0.25),
        40,
    ),
    (
        "SequentialLR-join",
        lambda o: T.SequentialLR(
            o, [T.StepLR(o, 5, 0.5), T.ExponentialLR(o, 0.9)], milestones=[20]
        ),
        Join([(StepDecay(LR, 5, 0.5), 20), (ExponentialDecay(LR, 1, 0.9), None)]),
        60,
    ),
]


@pytest.mark.parametrize("name, make, schedule, steps", GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_against_torch(name: str, make, schedule, steps: int) -> None:
    assert_all_close(simulate(schedule, steps), torch_lrs(make, steps))


ONECYCLE = [
    (total, pct, anneal, three, div, final)
    for total, pct in [(100, 0.3), (1000, 0.25), (37, 0.4), (7, 0.3), (3, 0.3), (50, 0.05)]
    for anneal in ("cos", "linear")
    for three in (False, True)
    for div, final in [(25.0, 1e4), (10.0, 100.0)]
    if not (three and 2 * pct * total - 2 >= total - 1)
]


@pytest.mark.parametrize("total, pct, anneal, three, div, final", ONECYCLE)
def test_onecycle_golden(
    total: int, pct: float, anneal: str, three: bool, div: float, final: float
) -> None:
    def make(o: torch.optim.Optimizer) -> T.LRScheduler:
        return T.OneCycleLR(
            o, LR, total_steps=total, pct_start=pct, anneal_strategy=anneal, three_phase=three,
            div_factor=div, final_div_factor=final, cycle_momentum=False,
        )  # fmt: skip

    ours = simulate(OneCycle(LR, total, pct, div, final, anneal, three), total)
    assert_all_close(ours, torch_lrs(make, total))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(2, 400),
    st.floats(0.01, 0.99),
    st.sampled_from(["cos", "linear"]),
    st.booleans(),
    st.floats(1.0, 100.0),
    st.floats(1.0, 1e5),
)
def test_onecycle_golden_random(total, pct, anneal, three, div, final) -> None:
    assume(pct * total - 1 != 0)  # torch divides by zero on a zero-length first phase
    assume(not (three and 2 * pct * total - 2 >= total - 1))  # no third phase: we reject it

    def make(o: torch.optim.Optimizer) -> T.LRScheduler:
        return T.OneCycleLR(
            o, LR, total_steps=total, pct_start=pct, anneal_strategy=anneal, three_phase=three,
            div_factor=div, final_div_factor=final, cycle_momentum=False,
        )  # fmt: skip

    ours = simulate(OneCycle(LR, total, pct, div, final, anneal, three), total)
    assert_all_close(ours, torch_lrs(make, total))


@pytest.mark.parametrize("staircase", [False, True])
@pytest.mark.parametrize("decay_steps, rate", [(1, 0.97), (7, 0.5), (100, 0.01)])
def test_exponential_golden_against_keras(staircase: bool, decay_steps: int, rate: float) -> None:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    previous = keras.config.floatx()
    keras.config.set_floatx("float64")  # Keras computes in floatx; float64 makes 1e-9 meaningful
    try:
        ref_schedule = keras.optimizers.schedules.ExponentialDecay(
            LR, decay_steps, rate, staircase=staircase
        )
        ref = [float(ref_schedule(step)) for step in range(250)]
    finally:
        keras.config.set_floatx(previous)
    assert_all_close(simulate(ExponentialDecay(LR, decay_steps, rate, staircase), 250), ref)


# -- the adapter on a real model ---------------------------------------------------------------


def train(
    sched_factory: Callable[[torch.optim.Optimizer], T.LRScheduler],
    steps: int,
    lrs: tuple[float, ...],
) -> list[list[float]]:
    """Train a tiny Linear model for ``steps`` updates; return every group's lr at each update."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    groups = [{"params": [model.weight], "lr": lrs[0]}, {"params": [model.bias], "lr": lrs[-1]}]
    opt = torch.optim.SGD(groups, momentum=0.9)
    sched = sched_factory(opt)
    seen = []
    for _ in range(steps):
        seen.append([float(g["lr"]) for g in opt.param_groups])
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        sched.step()
    return seen


@pytest.mark.parametrize("lrs", [(LR,), (LR, LR / 10)])
def test_to_torch_drives_a_real_optimizer_like_the_reference(lrs: tuple[float, ...]) -> None:
    ours = train(lambda o: to_torch(Warmup(Cosine(LR, 90), 10), o), 100, lrs)
    ref = train(
        lambda o: T.SequentialLR(
            o,
            [T.LinearLR(o, start_factor=0.01, total_iters=10), T.CosineAnnealingLR(o, 90)],
            milestones=[10],
        ),
        100,
        lrs,
    )
    for group in range(2):
        assert_all_close([s[group] for s in ours], [s[group] for s in ref])


def test_discriminative_ratio_scales_the_whole_schedule() -> None:
    seen = train(lambda o: to_torch(StepDecay(1.0, 3, 0.5), o), 8, (1.0, 0.25))
    assert [s[1] for s in seen] == [0.25 * s[0] for s in seen]


def test_first_group_zero_lr_with_different_groups_is_rejected() -> None:
    with pytest.raises(ValueError, match="first param group's lr"):
        to_torch(Constant(0.1), optimizer((0.0, 0.1)))


def test_to_torch_returns_an_lr_scheduler_and_accepts_plain_callables() -> None:
    opt = optimizer()
    sched = to_torch(lambda step: 0.5**step, opt)
    assert isinstance(sched, T.LRScheduler) and isinstance(sched, ScheduleLR)
    for _ in range(3):
        opt.step()
        sched.step()
    assert sched.get_last_lr() == [0.125]
    with pytest.raises(ValueError, match="no ReduceOnPlateau"):
        sched.report(1.0)


def run_and_save(
    schedule, lrs: tuple[float, ...], stop: int
) -> tuple[dict, dict, list[list[float]]]:
    opt = optimizer(lrs)
    sched = to_torch(schedule, opt)
    for _ in range(stop):
        opt.step()
        sched.step()
    buffer = io.BytesIO()
    torch.save({"sched": sched.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    return loaded["sched"], loaded["opt"], [[float(g["lr"]) for g in opt.param_groups]]


def uninterrupted(schedule, lrs: tuple[float, ...], steps: int) -> list[list[float]]:
    opt = optimizer(lrs)
    sched = to_torch(schedule, opt)
    out = []
    for _ in range(steps):
        out.append([float(g["lr"]) for g in opt.param_groups])
        opt.step()
        sched.step()
    return out


SCHEDULES = st.sampled_from(
    [
        Warmup(Cosine(LR, 80), 20),
        OneCycle(LR, 100, three_phase=True),
        Cosine(LR, 100, 1e-3, cycles=3),
        Join([(StepDecay(LR, 7, 0.5), 30), (ExponentialDecay(LR, 5, 0.5), None)]),
        Warmup(MultiStepDecay(LR, [10, 40]), 5, kind="exponential"),
    ]
)


@settings(max_examples=40, deadline=None)
@given(SCHEDULES, st.integers(0, 99), st.sampled_from([(LR,), (LR, LR / 3)]), st.booleans())
def test_state_round_trip_mid_run_continues_identically(
    schedule, stop, lrs, optimizer_first
) -> None:
    reference = uninterrupted(schedule, lrs, 100)
    sched_state, opt_state, _ = run_and_save(schedule, lrs, stop)
    opt = optimizer(lrs)
    if optimizer_first:  # the order of the two loads must not matter
        opt.load_state_dict(opt_state)
        sched = to_torch(schedule, opt)
        sched.load_state_dict(sched_state)
    else:
        sched = to_torch(schedule, opt)
        sched.load_state_dict(sched_state)
        opt.load_state_dict(opt_state)
    resumed = []
    for _ in range(stop, 100):
        resumed.append([float(g["lr"]) for g in opt.param_groups])  # no jump right after load
        opt.step()
        sched.step()
    assert resumed == reference[stop:]


def test_state_is_plain_and_checked() -> None:
    sched_state, _, _ = run_and_save(Warmup(Cosine(LR, 10), 2), (LR,), 4)
    assert sched_state["last_epoch"] == 4 and sched_state["version"] == 1
    sched = to_torch(Warmup(Cosine(LR, 10), 2), optimizer())
    with pytest.raises(ValueError, match="must have keys"):
        sched.load_state_dict({**sched_state, "extra": 1})
    with pytest.raises(ValueError, match="param groups"):
        sched.load_state_dict({**sched_state, "ratios": [1.0, 1.0]})
    with pytest.warns(UserWarning, match="different schedule"):
        to_torch(Cosine(LR, 10), optimizer()).load_state_dict(sched_state)


# -- ReduceOnPlateau through the adapter -------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-5, 5), min_size=1, max_size=40),
    st.sampled_from(["min", "max"]),
    st.sampled_from(["rel", "abs"]),
    st.integers(0, 3),
    st.integers(0, 2),
    st.sampled_from([0.0, 1e-3]),
)
def test_plateau_golden_against_torch(
    values, mode, threshold_mode, patience, cooldown, min_lr
) -> None:
    kwargs = dict(
        mode=mode, factor=0.5, patience=patience, threshold=1e-2, threshold_mode=threshold_mode
    )
    ref_opt = optimizer()
    ref = T.ReduceLROnPlateau(ref_opt, cooldown=cooldown, min_lr=min_lr, eps=0.0, **kwargs)
    opt = optimizer()
    sched = to_torch(
        ReduceOnPlateau(cooldown=cooldown, min_lr=min_lr, **kwargs).wrap(Constant(LR)), opt
    )
    for value in values:
        ref.step(value)
        sched.report(value)
        ours, theirs = opt.param_groups[0]["lr"], ref_opt.param_groups[0]["lr"]
        assert abs(ours - theirs) <= REL * theirs


def test_plateau_composes_with_warmup_through_report() -> None:
    plateau = ReduceOnPlateau("val_loss", mode="min", patience=1, factor=0.1)
    schedule = plateau.wrap(Warmup(Cosine(LR, 90), 10))
    opt = optimizer((LR, LR / 2))
    sched = to_torch(schedule, opt)
    for epoch, loss in enumerate([1.0, 0.9, 0.95, 0.97, 0.5]):
        for _ in range(4):
            opt.step()
            sched.step()
        reduced = sched.report({"val_loss": loss, "acc": 0.0})
        assert reduced == (epoch == 3)
        step = 4 * (epoch + 1)
        expected = Warmup(Cosine(LR, 90), 10)(step) * (0.1 if epoch >= 3 else 1.0)
        assert opt.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-12)  # applied at once
        assert opt.param_groups[1]["lr"] == pytest.approx(expected / 2, rel=1e-12)
    state, _, _ = (sched.state_dict(), None, None)
    fresh_plateau = ReduceOnPlateau("val_loss", mode="min", patience=1, factor=0.1)
    fresh = to_torch(fresh_plateau.wrap(Warmup(Cosine(LR, 90), 10)), optimizer((LR, LR / 2)))
    fresh.load_state_dict(state)
    assert fresh_plateau.num_reductions == 1
    assert fresh.get_last_lr() == sched.get_last_lr()
    with pytest.raises(KeyError, match="present: acc"):
        sched.report({"acc": 1.0})


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 400), st.floats(0.0, 1.0), st.integers(1, 4), st.integers(1, 3))
def test_cosine_golden_random(total: int, low: float, cycles: int, mult: int) -> None:
    min_lr = LR * low
    ours = simulate(Cosine(LR, total, min_lr), total + 1)
    assert_all_close(ours, torch_lrs(lambda o: T.CosineAnnealingLR(o, total, min_lr), total + 1))
    t0 = max(1, total // 8)
    length = t0 * sum(mult**i for i in range(cycles))
    ours = simulate(Cosine(LR, length, min_lr, cycles, mult), length)
    ref = torch_lrs(lambda o: T.CosineAnnealingWarmRestarts(o, t0, mult, min_lr), length)
    assert_all_close(ours, ref)

"""Ready-made shapes (Hugging Face's warmup schedules, schedules by name) and the helpers around schedules.

Pure: standard library only (the torch adapter, ``to_torch``, is ``epochpilot.train.lr``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from epochpilot.core.schedules.core import (
    Constant,
    Cosine,
    ExponentialDecay,
    OneCycle,
    Schedule,
    StepDecay,
    Warmup,
    _int,
)


@dataclass(frozen=True)
class LinearDecay(Schedule):
    """Straight line from ``lr`` at step 0 to ``min_lr`` at ``total_steps``, then ``min_lr`` (HF's linear)."""

    lr: float
    total_steps: int
    min_lr: float = 0.0

    _checks: ClassVar[dict[str, str]] = {"lr": "lr", "total_steps": "steps1", "min_lr": "lr0"}

    def _at(self, step: int) -> float:
        remaining = max(0, self.total_steps - step) / self.total_steps
        return self.min_lr + (self.lr - self.min_lr) * remaining


@dataclass(frozen=True)
class CosineWave(Schedule):
    """``lr * 0.5 * (1 + cos(2 pi waves progress))`` with progress clamped to [0, 1] (HF's cosine).

    ``waves=0.5`` is a half cosine from ``lr`` to 0. HF keeps oscillating past the end; this holds the end value.
    """

    lr: float
    total_steps: int
    waves: float = 0.5

    _checks: ClassVar[dict[str, str]] = {"lr": "lr", "total_steps": "steps1", "waves": "positive"}

    def _at(self, step: int) -> float:
        progress = min(step, self.total_steps) / self.total_steps
        return self.lr * max(0.0, 0.5 * (1.0 + math.cos(math.pi * self.waves * 2.0 * progress)))


def simulate(schedule: Callable[[int], float], steps: int) -> list[float]:
    """The lr at every step 0 .. steps-1, e.g. to plot a schedule before training (a list of ``steps``
    floats: for a long schedule use :func:`sample`)."""
    _int("steps", steps, 0)
    return [float(schedule(step)) for step in range(steps)]


#: Up to this many steps, :func:`peak` checks every step; beyond, it zooms in on the best of a grid.
EXACT_STEPS = 100_000


def sample(
    schedule: Callable[[int], float], steps: int, points: int = 2000
) -> tuple[list[int], list[float]]:
    """(steps, lrs) at about ``points`` evenly spaced steps of 0 .. steps-1 (every step when there are fewer)
    plus the peak: a plot or table of a schedule of any length, in time independent of ``steps``."""
    _int("steps", steps, 1)
    _int("points", points, 2)
    if steps <= points:
        grid = list(range(steps))
    else:
        grid = sorted({round(i * (steps - 1) / (points - 1)) for i in range(points)})
        grid = sorted(set(grid) | {peak(schedule, steps)[0]})
    return grid, [float(schedule(step)) for step in grid]


def peak(schedule: Callable[[int], float], steps: int) -> tuple[int, float]:
    """(step, lr) of the highest lr over steps 0 .. steps-1 (the first such step). Exact up to
    ``EXACT_STEPS``; beyond, a grid search that zooms in on the best point (exact for the piecewise
    monotone schedules here: warmup then decay, one-cycle, steps)."""
    _int("steps", steps, 1)
    lo, hi, width = 0, steps - 1, 1000
    while hi - lo + 1 > EXACT_STEPS:
        grid = sorted({lo + round(i * (hi - lo) / (width - 1)) for i in range(width)})
        values = [float(schedule(step)) for step in grid]
        best = values.index(max(values))
        lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    values = [float(schedule(step)) for step in range(lo, hi + 1)]
    best = values.index(max(values))
    return lo + best, values[best]


def linear_with_warmup(lr: float, warmup_steps: int, total_steps: int) -> Schedule:
    """transformers' get_linear_schedule_with_warmup: 0 -> lr over warmup_steps, then linearly to 0 at total_steps."""
    _int("total_steps", total_steps, 1)
    _int("warmup_steps", warmup_steps, 0)
    if warmup_steps >= total_steps:
        raise ValueError(f"warmup_steps ({warmup_steps}) must be < total_steps ({total_steps})")
    return Warmup(LinearDecay(lr, total_steps - warmup_steps), warmup_steps, start_factor=0.0)


def cosine_with_warmup(
    lr: float, warmup_steps: int, total_steps: int, num_cycles: float = 0.5
) -> Schedule:
    """transformers' get_cosine_schedule_with_warmup: 0 -> lr over warmup_steps, then ``num_cycles`` cosine waves."""
    _int("total_steps", total_steps, 1)
    _int("warmup_steps", warmup_steps, 0)
    if warmup_steps >= total_steps:
        raise ValueError(f"warmup_steps ({warmup_steps}) must be < total_steps ({total_steps})")
    return Warmup(
        CosineWave(lr, total_steps - warmup_steps, num_cycles), warmup_steps, start_factor=0.0
    )


_NAMES: dict[str, Callable[[float, int], Schedule]] = {
    "constant": lambda lr, n: Constant(lr),
    "cosine": lambda lr, n: Cosine(lr, n),
    "exponential": lambda lr, n: ExponentialDecay(lr, decay_steps=n, decay_rate=0.01),
    "linear": lambda lr, n: LinearDecay(lr, n),
    "onecycle": lambda lr, n: OneCycle(lr, n),
    "step": lambda lr, n: StepDecay(lr, step_size=max(1, n // 3), gamma=0.1),
}


def parse(
    spec: str,
    *,
    lr: float,
    total_steps: int,
    warmup_steps: int | None = None,
    cooldown_shape: str = "1-sqrt",
) -> Schedule:
    """Build a schedule from a short name: NAME or warmup(NAME), NAME in constant, cosine, exponential, linear,
    onecycle, step; or wsd / wsd(SHAPE).

    The decaying schedules end at ``total_steps``: cosine and linear reach 0, exponential reaches lr/100, step
    divides the lr by 10 at each third, onecycle peaks at ``lr``. ``warmup(NAME)`` warms up linearly from 1% over
    ``warmup_steps`` (default: 5% of total_steps, at least 1) and fits NAME into the remaining steps.

    ``wsd`` (or ``warmup(wsd)``) is :class:`~epochpilot.core.schedules.WSD`: the same warmup, then ``lr`` until the
    trainer starts a cooldown (``cooldown="on_stop"``); ``wsd(linear)`` / ``wsd(cosine)`` / ``wsd(1-sqrt)`` pick
    the cooldown's shape, else ``cooldown_shape``. The default, 1-sqrt, is the shape Hägele et al. (NeurIPS
    2024) found best.
    """
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a string such as 'warmup(cosine)', got {spec!r}")
    _int("total_steps", total_steps, 1)
    text = spec.strip().lower().replace(" ", "")
    warm = text.startswith("warmup(") and text.endswith(")")
    name = text[len("warmup(") : -1] if warm else text
    wsd = re.fullmatch(r"wsd(?:\((.*)\))?", name)
    if wsd is not None:
        return _wsd(spec, wsd.group(1) or cooldown_shape, lr, total_steps, warmup_steps)
    if name not in _NAMES:
        valid = ", ".join(sorted(_NAMES))
        raise ValueError(
            f"unknown schedule {spec!r}: use one of {valid}, wsd, or warmup(NAME) such as 'warmup(cosine)'"
        )
    if not warm:
        if warmup_steps:
            raise ValueError(
                f"warmup_steps={warmup_steps} needs a warmup spec: write 'warmup({name})'"
            )
        return _NAMES[name](lr, total_steps)
    steps = _warmup(warmup_steps, total_steps)
    return Warmup(_NAMES[name](lr, total_steps - steps), steps)


def _warmup(warmup_steps: int | None, total_steps: int) -> int:
    """The warmup of a ``warmup(NAME)`` or ``wsd`` spec: ``warmup_steps``, or 5% of total_steps (at least 1)."""
    steps = (
        max(1, round(0.05 * total_steps))
        if warmup_steps is None
        else _int("warmup_steps", warmup_steps, 0)
    )
    if steps >= total_steps:
        raise ValueError(
            f"warmup_steps ({steps}) must be < total_steps ({total_steps}): shorten the warmup"
        )
    return steps


def _wsd(spec: str, shape: str, lr: float, total_steps: int, warmup_steps: int | None) -> Schedule:
    from epochpilot.core.schedules.wsd import COOLDOWN_SHAPES, WSD

    if shape not in COOLDOWN_SHAPES:
        raise ValueError(
            f"schedule {spec!r}: the cooldown shape must be one of {', '.join(COOLDOWN_SHAPES)}, "
            f"got {shape!r}: e.g. 'wsd(linear)'"
        )
    return WSD(lr, warmup_steps=_warmup(warmup_steps, total_steps), shape=shape)

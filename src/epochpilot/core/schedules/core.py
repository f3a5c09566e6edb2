"""The schedule classes: each a frozen dataclass ``schedule(step) -> lr``, plus the wrappers (warmup, join, scale).

Pure: standard library only (no torch here).
"""

from __future__ import annotations

import math
import numbers
import operator
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any, ClassVar


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    return float(value)


def _int(name: str, value: Any, minimum: int) -> int:
    """Check an integer step count >= minimum."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"{name} must be an integer >= {minimum} (optimizer updates), got {value!r}"
        )
    return int(value)


def _check(kind: str, name: str, value: Any) -> None:
    """One declared check: "lr" (finite > 0), "lr0" (finite >= 0), "positive" (finite factor > 0),
    "steps0"/"steps1" (integer >= 0/1) or "schedule" (callable)."""
    if kind == "schedule":
        if not callable(value):
            raise TypeError(f"{name} must be a schedule (callable step -> lr), got {value!r}")
    elif kind.startswith("steps"):
        _int(name, value, int(kind[-1]))
    else:
        number = _number(name, value)
        if not math.isfinite(number) or number < 0 or (number == 0 and kind != "lr0"):
            need = ">= 0" if kind == "lr0" else "> 0"
            raise ValueError(f"{name} must be a finite number {need}, got {value!r}")


class Schedule:
    """Base of every schedule: ``schedule(step)`` checks the step, then evaluates ``_at(step)``.

    Subclasses are frozen dataclasses that implement ``_at(step)``, declare their argument checks in
    ``_checks`` (field -> kind, see ``_check``) and put checks spanning several arguments in ``_validate``.
    """

    _checks: ClassVar[dict[str, str]] = {}

    def __post_init__(self) -> None:
        for name, kind in self._checks.items():
            _check(kind, name, getattr(self, name))
        self._validate()

    def _validate(self) -> None:
        """Checks that involve several arguments (none by default)."""

    def __call__(self, step: int) -> float:
        if isinstance(step, bool) or not hasattr(step, "__index__") or operator.index(step) < 0:
            raise ValueError(
                f"step must be an integer >= 0 (optimizer updates done so far), got {step!r}"
            )
        return float(self._at(operator.index(step)))

    def _at(self, step: int) -> float:  # pragma: no cover - subclasses implement
        raise NotImplementedError


@dataclass(frozen=True)
class Constant(Schedule):
    """The same lr at every step."""

    lr: float

    _checks: ClassVar[dict[str, str]] = {"lr": "lr0"}

    def _at(self, step: int) -> float:
        return self.lr


@dataclass(frozen=True)
class StepDecay(Schedule):
    """``lr * gamma ** (step // step_size)`` (torch StepLR)."""

    lr: float
    step_size: int
    gamma: float = 0.1

    _checks: ClassVar[dict[str, str]] = {"lr": "lr", "step_size": "steps1", "gamma": "positive"}

    def _at(self, step: int) -> float:
        return self.lr * self.gamma ** (step // self.step_size)


@dataclass(frozen=True)
class MultiStepDecay(Schedule):
    """``lr * gamma ** (milestones passed)``; a milestone at step m applies from step m on (torch MultiStepLR)."""

    lr: float
    milestones: tuple[int, ...]
    gamma: float = 0.1

    _checks: ClassVar[dict[str, str]] = {"lr": "lr", "gamma": "positive"}

    def _validate(self) -> None:
        try:
            milestones = tuple(self.milestones)
        except TypeError:
            raise ValueError(
                f"milestones must be a list of steps, got {self.milestones!r}"
            ) from None
        for m in milestones:
            _int("each milestone", m, 1)
        if any(b <= a for a, b in zip(milestones, milestones[1:])):
            raise ValueError(
                f"milestones must be strictly increasing, got {list(milestones)}: sort them"
            )
        object.__setattr__(self, "milestones", milestones)

    def _at(self, step: int) -> float:
        return self.lr * self.gamma ** bisect_right(self.milestones, step)


@dataclass(frozen=True)
class ExponentialDecay(Schedule):
    """``lr * decay_rate ** (step / decay_steps)``, the exponent floored when staircase (Keras semantics).

    With ``decay_steps=1`` this is torch's ExponentialLR with ``gamma=decay_rate``.
    """

    lr: float
    decay_steps: int
    decay_rate: float
    staircase: bool = False

    _checks: ClassVar[dict[str, str]] = {
        "lr": "lr",
        "decay_steps": "steps1",
        "decay_rate": "positive",
    }

    def _at(self, step: int) -> float:
        p = step // self.decay_steps if self.staircase else step / self.decay_steps
        return self.lr * self.decay_rate**p


@dataclass(frozen=True)
class Cosine(Schedule):
    """Cosine annealing from ``lr`` to ``min_lr`` over ``total_steps``, then ``min_lr`` for ever.

    ``cycles=1`` is torch's CosineAnnealingLR(T_max=total_steps, eta_min=min_lr) (which, unlike this, rises
    again after T_max). ``cycles > 1`` splits ``total_steps`` into cycles whose lengths grow by ``cycle_mult``
    and restarts at ``lr`` at each one: torch's CosineAnnealingWarmRestarts(T_0, T_mult) with
    ``total_steps = T_0 * (1 + T_mult + ... + T_mult**(cycles-1))``. Non-integer cycle lengths are allowed.
    """

    lr: float
    total_steps: int
    min_lr: float = 0.0
    cycles: int = 1
    cycle_mult: float = 1.0

    _checks: ClassVar[dict[str, str]] = {
        "lr": "lr",
        "total_steps": "steps1",
        "min_lr": "lr0",
        "cycles": "steps1",
    }

    def _validate(self) -> None:
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr}): lower min_lr")
        mult = float(self.cycle_mult)
        if not math.isfinite(mult) or mult < 1.0:
            raise ValueError(
                f"cycle_mult must be a finite number >= 1 (1 = equal cycles), got {self.cycle_mult!r}"
            )

    def _at(self, step: int) -> float:
        if step >= self.total_steps:
            return self.min_lr
        if self.cycle_mult == 1:  # equal cycles: index directly
            length = self.total_steps / self.cycles
            start = min(step // length, self.cycles - 1) * length
        else:  # growing cycles: walk them (exact for integer lengths, as torch's T_cur/T_i)
            length = self.total_steps / sum(self.cycle_mult**i for i in range(self.cycles))
            start = 0.0
            for _ in range(self.cycles - 1):
                if step < start + length:
                    break
                start += length
                length *= self.cycle_mult
        position = (step - start) / length
        return self.min_lr + (self.lr - self.min_lr) * (1 + math.cos(math.pi * position)) / 2


@dataclass(frozen=True)
class OneCycle(Schedule):
    """The 1cycle policy with torch OneCycleLR's phases; holds the final lr from ``total_steps - 1`` on.

    Starts at ``max_lr / div_factor``, rises to ``max_lr`` over ``pct_start`` of the run, then anneals to
    ``max_lr / div_factor / final_div_factor`` ("cos" or "linear"); ``three_phase`` first comes back down to
    the start lr symmetrically (the original paper). A zero-length phase (torch divides by zero) ends at once.
    """

    max_lr: float
    total_steps: int
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    anneal: str = "cos"
    three_phase: bool = False

    _checks: ClassVar[dict[str, str]] = {
        "max_lr": "lr",
        "total_steps": "steps1",
        "div_factor": "positive",
        "final_div_factor": "positive",
    }

    def _validate(self) -> None:
        pct = _number("pct_start", self.pct_start)
        if not 0.0 < pct < 1.0:
            raise ValueError(
                f"pct_start must be in (0, 1) (share of steps spent warming up), got {self.pct_start!r}"
            )
        if self.anneal not in ("cos", "linear"):
            raise ValueError(f"anneal must be 'cos' or 'linear', got {self.anneal!r}")
        if self.three_phase and 2 * pct * self.total_steps - 2 >= self.total_steps - 1:
            raise ValueError(
                f"pct_start={pct} leaves no room for the third phase: use pct_start < 0.5"
            )

    def _at(self, step: int) -> float:
        initial = self.max_lr / self.div_factor
        final = initial / self.final_div_factor
        up = float(self.pct_start * self.total_steps) - 1
        last = float(self.total_steps - 1)
        if self.three_phase:
            phases = [
                (up, initial, self.max_lr),
                (2 * up, self.max_lr, initial),
                (last, initial, final),
            ]
        else:
            phases = [(up, initial, self.max_lr), (last, self.max_lr, final)]
        step = min(step, self.total_steps - 1)
        start_step = 0.0
        for index, (end_step, start_lr, end_lr) in enumerate(phases):
            if step <= end_step or index == len(phases) - 1:
                span = end_step - start_step
                pct = (step - start_step) / span if span > 0 else 1.0
                if self.anneal == "cos":
                    return end_lr + (start_lr - end_lr) / 2.0 * (math.cos(math.pi * pct) + 1)
                return (end_lr - start_lr) * pct + start_lr
            start_step = end_step
        raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class Warmup(Schedule):
    """Ramp up to ``schedule(0)`` over ``steps``, then run ``schedule`` from its own step 0.

    Step s < steps gives ``schedule(0) * f(s)`` with f rising from ``start_factor``: "linear" is
    ``start_factor + (1 - start_factor) * s / steps`` (torch LinearLR), "exponential" is
    ``start_factor ** (1 - s / steps)``. Step s >= steps gives ``schedule(s - steps)``: the wrapped schedule
    starts counting when warmup ends, exactly torch's SequentialLR([LinearLR, ...], milestones=[steps]).
    So ``Warmup(Cosine(lr, T - w), w)`` ends at step T. ``steps=0`` means no warmup.
    """

    schedule: Schedule
    steps: int
    kind: str = "linear"
    start_factor: float = 0.01

    _checks: ClassVar[dict[str, str]] = {"schedule": "schedule", "steps": "steps0"}

    def _validate(self) -> None:
        if self.kind not in ("linear", "exponential"):
            raise ValueError(f"kind must be 'linear' or 'exponential', got {self.kind!r}")
        factor = float(self.start_factor)
        low_ok = factor > 0 if self.kind == "exponential" else factor >= 0
        if not (math.isfinite(factor) and low_ok and factor <= 1):
            need = "(0, 1]" if self.kind == "exponential" else "[0, 1]"
            raise ValueError(
                f"start_factor must be in {need} for kind={self.kind!r}, got {self.start_factor!r}"
            )

    def _at(self, step: int) -> float:
        if step >= self.steps:
            return self.schedule(step - self.steps)
        fraction = step / self.steps
        if self.kind == "linear":
            factor = self.start_factor + (1.0 - self.start_factor) * fraction
        else:
            factor = self.start_factor ** (1.0 - fraction)
        return self.schedule(0) * factor


@dataclass(frozen=True)
class Join(Schedule):
    """Run schedules one after another: ``Join([(warm, 100), (cosine, None)])``.

    Each ``(schedule, until_step)`` runs up to (not including) ``until_step`` and restarts counting from 0 at
    its first step, like torch's SequentialLR milestones. The last ``until_step`` may be None (run for ever);
    if it is a number, the lr of its last step is held afterwards.
    """

    parts: tuple[tuple[Schedule, int | None], ...]

    def _validate(self) -> None:
        try:
            parts = tuple((s, u) for s, u in self.parts)
        except (TypeError, ValueError):
            raise ValueError("parts must be a list of (schedule, until_step) pairs") from None
        if not parts:
            raise ValueError("parts must hold at least one (schedule, until_step) pair")
        previous = 0
        for index, (schedule, until) in enumerate(parts):
            if not callable(schedule):
                raise TypeError(f"parts[{index}][0] must be a schedule, got {schedule!r}")
            if until is None and index != len(parts) - 1:
                raise ValueError(
                    f"parts[{index}] has until_step=None, which only the last part may have"
                )
            if until is not None:
                _int(f"parts[{index}] until_step", until, previous + 1)
                previous = until
        object.__setattr__(self, "parts", parts)

    def _at(self, step: int) -> float:
        start = 0
        for schedule, until in self.parts:
            if until is None or step < until:
                return schedule(step - start)
            last = (schedule, until - 1 - start)
            start = until
        return last[0](last[1])


@dataclass(frozen=True)
class Scaled(Schedule):
    """``schedule(step)`` times ``by``: a float, or a multiplier with ``apply(lr)`` such as ReduceOnPlateau."""

    schedule: Schedule
    by: Any

    _checks: ClassVar[dict[str, str]] = {"schedule": "schedule"}

    def _validate(self) -> None:
        if not hasattr(self.by, "apply"):
            _check("lr0", "by", self.by)

    def _at(self, step: int) -> float:
        lr = self.schedule(step)
        return self.by.apply(lr) if hasattr(self.by, "apply") else lr * float(self.by)

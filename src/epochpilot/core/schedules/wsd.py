"""Warmup-stable-decay (WSD): warm up, hold the peak lr, then cool down from a step decided at run time.

The cooldown shapes are the published ones (Hägele et al., NeurIPS 2024, "Scaling Laws and Compute-Optimal
Training Beyond Fixed Training Durations"; MiniCPM): with ``x`` the fraction of the cooldown done,

- ``linear``: ``lr(x) = final + (peak - final) * (1 - x)``
- ``1-sqrt``: ``lr(x) = final + (peak - final) * (1 - sqrt(x))``
- ``cosine``: ``lr(x) = final + (peak - final) * (1 + cos(pi * x)) / 2``

where ``peak`` is the lr at the step the cooldown starts (``final`` is capped at it, so a cooldown started
inside warmup never raises the lr). A schedule with ``cooldown_start=None`` is still in
its stable phase; the trainer decides the start (when the stop policy fires, or at a branch point) and calls
:meth:`WSD.cooldown`, which returns a new frozen schedule: the schedule stays a pure function of the step and
of the phase boundaries the loop keeps (and saves in checkpoints). Pure: standard library only.

Example::

    >>> from epochpilot.core.schedules import WSD
    >>> s = WSD(0.1, warmup_steps=10).cooldown(start=90, steps=10)
    >>> round(s(5), 4), s(50), s(95), s(100)
    (0.0505, 0.1, 0.05, 0.0)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

from epochpilot.core.schedules.core import Schedule, _int, _number

__all__ = ["COOLDOWN_SHAPES", "WSD"]

#: The cooldown shapes, name -> multiplier of (peak - final) at fraction x of the cooldown done.
COOLDOWN_SHAPES = {
    "linear": lambda x: 1.0 - x,
    "1-sqrt": lambda x: 1.0 - math.sqrt(x),
    "cosine": lambda x: 0.5 * (1.0 + math.cos(math.pi * x)),
}


@dataclass(frozen=True)
class WSD(Schedule):
    """Linear warmup from ``start_factor * lr`` over ``warmup_steps``, then ``lr``; from ``cooldown_start`` the
    lr falls to ``final_lr`` over ``cooldown_steps`` in the given ``shape`` and stays there."""

    lr: float
    warmup_steps: int = 0
    cooldown_start: int | None = None
    cooldown_steps: int = 0
    shape: str = "linear"
    final_lr: float = 0.0
    start_factor: float = 0.01

    _checks: ClassVar[dict[str, str]] = {
        "lr": "lr",
        "warmup_steps": "steps0",
        "cooldown_steps": "steps0",
        "final_lr": "lr0",
    }

    def _validate(self) -> None:
        if self.shape not in COOLDOWN_SHAPES:
            raise ValueError(
                f"shape must be one of {', '.join(COOLDOWN_SHAPES)}, got {self.shape!r}"
            )
        if self.cooldown_start is not None:
            _int("cooldown_start", self.cooldown_start, 0)
            _int("cooldown_steps", self.cooldown_steps, 1)
        if self.final_lr > self.lr:
            raise ValueError(
                f"final_lr ({self.final_lr}) must be <= lr ({self.lr}): the cooldown lowers the lr"
            )
        factor = _number("start_factor", self.start_factor)
        if not 0.0 < factor <= 1.0:
            raise ValueError(f"start_factor must be in (0, 1], got {self.start_factor!r}")

    @property
    def cooling(self) -> bool:
        """Whether the cooldown's start has been decided."""
        return self.cooldown_start is not None

    @property
    def cooldown_end(self) -> int | None:
        """The first step at ``final_lr`` (None while the cooldown is not decided)."""
        if self.cooldown_start is None:
            return None
        return self.cooldown_start + self.cooldown_steps

    def cooldown(self, start: int, steps: int) -> WSD:
        """This schedule with its cooldown starting at step ``start`` and lasting ``steps`` updates."""
        return dataclasses.replace(self, cooldown_start=start, cooldown_steps=steps)

    def stable(self) -> WSD:
        """This schedule with the cooldown undone (back to the stable phase, e.g. to extend a run)."""
        return dataclasses.replace(self, cooldown_start=None, cooldown_steps=0)

    def _stable_at(self, step: int) -> float:
        if step < self.warmup_steps:
            fraction = step / self.warmup_steps
            return self.lr * (self.start_factor + (1.0 - self.start_factor) * fraction)
        return self.lr

    def _at(self, step: int) -> float:
        start = self.cooldown_start
        if start is None or step < start:
            return self._stable_at(step)
        peak = self._stable_at(start)
        final = min(self.final_lr, peak)  # a cooldown started inside warmup never raises the lr
        x = min(1.0, (step - start) / self.cooldown_steps)
        return final + (peak - final) * COOLDOWN_SHAPES[self.shape](x)

"""An epochpilot schedule driven by a framework's own loop (the adapters set the lr; the schedule is pure).

Pure: standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["ScheduleDriver"]


class ScheduleDriver:
    """An epochpilot schedule driven by a framework: ``lr(step)`` before each update, ``observe(row)`` after
    each validation (feeds any ``ReduceOnPlateau`` inside). Optimizer-free; the adapter sets the lr."""

    def __init__(self, schedule: Callable[[int], float]) -> None:
        if not callable(schedule):
            raise TypeError(f"schedule must be callable step -> lr, got {schedule!r}")
        from epochpilot.core.schedules import plateaus

        self.schedule = schedule
        self.plateaus = plateaus(schedule)

    def lr(self, step: int) -> float:
        """The lr for update ``step`` (optimizer updates done so far); a non-finite lr raises."""
        lr = float(self.schedule(max(int(step), 0)))
        if not math.isfinite(lr):
            raise ValueError(
                f"schedule returned lr={lr} at step {step}: a schedule must give finite lrs"
            )
        return lr

    def observe(self, row: Mapping[str, Any]) -> None:
        """Feed one validated epoch's row to every ReduceOnPlateau in the schedule."""
        for plateau in self.plateaus:
            plateau.update(row)

    def state_dict(self) -> list[dict[str, Any]]:
        """The plateaus' states (the step itself lives in the framework's optimizer)."""
        return [plateau.state_dict() for plateau in self.plateaus]

    def load_state_dict(self, state: list[dict[str, Any]]) -> None:
        """Restore :meth:`state_dict` output."""
        if len(state) != len(self.plateaus):
            raise ValueError(
                f"schedule state has {len(state)} ReduceOnPlateau states, the schedule has "
                f"{len(self.plateaus)}: rebuild the schedule as in the saved run"
            )
        for plateau, sub in zip(self.plateaus, state, strict=True):
            plateau.load_state_dict(sub)

"""A job file's schedule as a picklable factory ``total_steps -> schedule`` (the trainer sizes it to its
budget; k-fold workers size it per fold). Pure: standard library and the schedule presets only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from epochpilot.core.schedules.presets import parse

__all__ = ["JobSchedule"]


@dataclass(frozen=True)
class JobSchedule:
    """The job's schedule as a factory ``total_steps -> schedule``: the trainer sizes it to its budget.

    ``warmup`` < 1 is a fraction of ``total_steps`` (the whole run, warmup included), else steps. With
    ``max_time`` the first epoch runs under the first estimate's schedule (its warmup counted there).
    """

    name: str
    lr: float
    warmup: float

    def __call__(self, total_steps: int) -> Any:
        steps = int(total_steps)
        warmup = int(round(self.warmup * steps)) if self.warmup < 1 else int(self.warmup)
        name = self.name.strip().lower()
        warmup_steps = (
            min(warmup, steps - 1) if "warmup" in name or name.startswith("wsd") else None
        )
        return parse(self.name, lr=self.lr, total_steps=steps, warmup_steps=warmup_steps)

"""The torch adapter for epochpilot schedules: ``to_torch(schedule, optimizer) -> ScheduleLR``.

``ScheduleLR`` is a ``torch.optim.lr_scheduler.LRScheduler`` stepped once per optimizer update. It never
accumulates: the lr at update ``t`` is always ``schedule(t)`` (times the group's ratio), so resuming from
``state_dict()`` continues exactly where an uninterrupted run would be (the jumps of pytorch #60265 cannot
happen), and its state is plain ints, floats and strings, safe for ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from epochpilot.core.schedules import Schedule, plateaus

__all__ = ["STATE_VERSION", "ScheduleLR", "group_ratios", "to_torch"]

#: Version of ``ScheduleLR.state_dict()``'s layout.
STATE_VERSION = 1
_STATE_KEYS = {"format", "version", "last_epoch", "step_count", "ratios", "plateaus", "schedule"}


def _describe(schedule: Callable[[int], float]) -> str:
    """A stable description of a schedule (its repr; for plain functions, their qualified name)."""
    if isinstance(schedule, Schedule):
        return repr(schedule)
    return getattr(schedule, "__qualname__", type(schedule).__name__)


def group_ratios(optimizer: Optimizer) -> list[float]:
    """Each param group's initial lr divided by the first group's (all 1.0 when they are equal)."""
    lrs = [float(group.get("initial_lr", group["lr"])) for group in optimizer.param_groups]
    if all(lr == lrs[0] for lr in lrs):
        return [1.0] * len(lrs)
    if lrs[0] <= 0:
        raise ValueError(
            f"the first param group's lr is {lrs[0]} but others differ ({lrs}): give it a positive lr, "
            "it is the reference the other groups' lrs are scaled by"
        )
    return [lr / lrs[0] for lr in lrs]


class ScheduleLR(LRScheduler):
    """Set every param group's lr to ``schedule(step) * ratio`` after each optimizer update.

    ``ratio`` is the group's initial lr over the first group's, so discriminative lrs (e.g. a backbone at a
    tenth of the head's lr) keep their proportions while following the schedule; the optimizer's own lr
    values are otherwise ignored. Call ``step()`` once per optimizer update (after ``optimizer.step()``)
    and ``report(metrics)`` after each evaluation when the schedule holds a ReduceOnPlateau.
    """

    def __init__(
        self, optimizer: Optimizer, schedule: Callable[[int], float], last_epoch: int = -1
    ) -> None:
        if not callable(schedule):
            raise TypeError(f"schedule must be callable step -> lr, got {schedule!r}")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        self.schedule = schedule
        self.ratios = group_ratios(optimizer)
        self._plateaus = plateaus(schedule)
        super().__init__(optimizer, last_epoch)

    def _values(self, step: int) -> list[float]:
        lr = float(self.schedule(max(step, 0)))
        if not math.isfinite(lr):
            raise ValueError(
                f"schedule returned lr={lr} at step {step}: a schedule must give finite lrs"
            )
        return [lr * ratio for ratio in self.ratios]

    def get_lr(self) -> list[float]:  # type: ignore[override]
        """The lrs for the current ``last_epoch`` (the number of optimizer updates done)."""
        return self._values(self.last_epoch)

    def _apply(self) -> None:
        """Write the lrs for the current step into the optimizer (used after load and report)."""
        for group, lr in zip(
            self.optimizer.param_groups, self._values(self.last_epoch), strict=True
        ):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        self._last_lr = [float(group["lr"]) for group in self.optimizer.param_groups]

    def report(self, metrics: Mapping[str, float] | float) -> bool:
        """Feed an evaluation result to the schedule's ReduceOnPlateau(s); True if the lr was reduced.

        A mapping goes to ``update(metrics)`` (which reads its ``monitor``), a number to ``step(value)``.
        The new lr applies from the next optimizer update on.
        """
        if not self._plateaus:
            raise ValueError(
                "this schedule has no ReduceOnPlateau to report to: wrap it, e.g. plateau.wrap(schedule)"
            )
        if isinstance(metrics, Mapping):
            reduced = [plateau.update(metrics) for plateau in self._plateaus]
        else:
            reduced = [plateau.step(float(metrics)) for plateau in self._plateaus]
        self._apply()
        return any(reduced)

    def state_dict(self) -> dict[str, Any]:
        """Plain, versioned state: the step, the group ratios and every plateau's state."""
        return {
            "format": "epochpilot.ScheduleLR",
            "version": STATE_VERSION,
            "last_epoch": int(self.last_epoch),
            "step_count": int(self._step_count),
            "ratios": [float(r) for r in self.ratios],
            "plateaus": [plateau.state_dict() for plateau in self._plateaus],
            "schedule": _describe(self.schedule),
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore ``state_dict()`` output and set the optimizer's lrs for the restored step at once."""
        if not isinstance(state_dict, Mapping) or set(state_dict) != _STATE_KEYS:
            found = (
                sorted(state_dict) if isinstance(state_dict, Mapping) else type(state_dict).__name__
            )
            raise ValueError(f"scheduler state must have keys {sorted(_STATE_KEYS)}, got {found}")
        if (
            state_dict["format"] != "epochpilot.ScheduleLR"
            or state_dict["version"] != STATE_VERSION
        ):
            raise ValueError(
                f"scheduler state is {state_dict['format']!r} version {state_dict['version']!r}; "
                f"expected 'epochpilot.ScheduleLR' version {STATE_VERSION}"
            )
        ratios = [float(r) for r in state_dict["ratios"]]
        if len(ratios) != len(self.optimizer.param_groups):
            raise ValueError(
                f"scheduler state has {len(ratios)} param groups, the optimizer has "
                f"{len(self.optimizer.param_groups)}: build the optimizer as in the saved run"
            )
        if len(state_dict["plateaus"]) != len(self._plateaus):
            raise ValueError(
                f"scheduler state has {len(state_dict['plateaus'])} ReduceOnPlateau states, the schedule "
                f"has {len(self._plateaus)}: rebuild the schedule as in the saved run"
            )
        self.schedule = _phase_of(self.schedule, state_dict["schedule"])
        if state_dict["schedule"] != _describe(self.schedule):
            warnings.warn(
                f"resuming with a different schedule: saved {state_dict['schedule']}, "
                f"now {_describe(self.schedule)}",
                UserWarning,
                stacklevel=2,
            )
        for plateau, state in zip(self._plateaus, state_dict["plateaus"], strict=True):
            plateau.load_state_dict(state)
        self.ratios = ratios
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict["step_count"])
        self._apply()


def _phase_of(schedule: Callable[[int], float], saved: str) -> Callable[[int], float]:
    """``schedule`` with the cooldown phase a saved WSD description holds (a cooldown decided at run time
    by the run that saved it); ``schedule`` itself when it is no WSD or the description is another's."""
    from epochpilot.core.schedules.wsd import WSD

    if not isinstance(schedule, WSD) or saved == repr(schedule):
        return schedule
    found = re.search(r"cooldown_start=(\d+|None), cooldown_steps=(\d+)", saved)
    if found is None:
        return schedule
    start, steps = found.groups()
    candidate = schedule.stable() if start == "None" else schedule.cooldown(int(start), int(steps))
    return candidate if repr(candidate) == saved else schedule


def to_torch(schedule: Callable[[int], float], optimizer: Optimizer) -> ScheduleLR:
    """A torch LR scheduler that sets each group's lr to ``schedule(step)`` (times its ratio; see ScheduleLR).

    To resume, rebuild the same schedule and optimizer, call ``to_torch`` and then
    ``scheduler.load_state_dict(saved)``; before or after ``optimizer.load_state_dict`` gives the same lrs.

    Example::

        >>> import torch
        >>> from epochpilot.core.schedules import Cosine, Warmup
        >>> from epochpilot.train.lr import to_torch
        >>> opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
        >>> sched = to_torch(Warmup(Cosine(0.1, 90), 10), opt)
        >>> opt.step(); sched.step()
        >>> round(opt.param_groups[0]["lr"], 4)
        0.0109
    """
    return ScheduleLR(optimizer, schedule)

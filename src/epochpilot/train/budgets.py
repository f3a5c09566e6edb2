"""Budgets in epochs, optimizer steps or wall time, and schedules whose length follows the budget.

``max_steps=N`` caps the run at ``N`` updates (the epoch budget becomes ``ceil(N / steps_per_epoch)``);
``max_time="10min"`` turns the first epoch's measured time into an epoch budget
(``floor(max_time / epoch_time)``, at least the epochs done; re-estimated from the mean epoch time when
that projection moves by more than 20%) and stops with ``MAX_TIME`` once the time is
spent. Both replace ``max_epochs``; both together: whichever ends first; both are hard limits (a stop
policy's extension cannot pass them). A schedule given as a factory ``total_steps -> schedule`` is rebuilt
whenever the budget changes (updates already made keep their lr; with ``max_time`` the first epoch runs
under the first estimate's schedule, so a warmup is counted in that estimate). A stop policy with a
``set_budget(epochs)`` method (the ``"auto"`` stopper) is told the new budget; any other keeps its own.
The measured time is rank 0's, broadcast so every rank agrees. The budget (epochs, measured epoch time,
time used) is saved with the loop's counters, so a resumed run keeps it and counts the time already spent.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from typing import Any

from epochpilot.errors import ConfigError
from epochpilot.stopping.base import Reason

__all__ = ["Budget", "apply_budget", "build_schedule", "parse_duration"]

log = logging.getLogger("epochpilot")

#: a time budget is re-estimated when the projected epochs move by more than this fraction of it
REESTIMATE = 0.2
#: the clock the time budget reads (tests replace it with a fake one)
_clock: Callable[[], float] = time.perf_counter

_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hrs": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
}
_PART = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*")
_EXAMPLES = "give seconds (90) or a string like '90s', '10min', '2h' or '1h30min'"


def parse_duration(value: Any, name: str = "max_time") -> float | None:
    """Seconds in ``value``: a number of seconds or ``"90s"``, ``"10min"``, ``"2h"``, ``"1h30min"``; None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"{name}={value!r} is not a duration: {_EXAMPLES}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        seconds, pos = 0.0, 0
        while pos < len(text):
            match = _PART.match(text, pos)
            if not match or match.end() == pos or match.group(2) not in _UNITS and match.group(2):
                raise ConfigError(f"{name}={value!r} is not understood: {_EXAMPLES}")
            unit = match.group(2) or "s"
            if not match.group(2) and (pos > 0 or match.end() < len(text)):
                raise ConfigError(f"{name}={value!r} is not understood: {_EXAMPLES}")
            seconds += float(match.group(1)) * _UNITS[unit]
            pos = match.end()
        if not text:
            raise ConfigError(f"{name}={value!r} is empty: {_EXAMPLES}")
    else:
        raise ConfigError(
            f"{name} must be a number of seconds or a string, got {type(value).__name__}: {_EXAMPLES}"
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{name} must be a positive duration, got {value!r}: {_EXAMPLES}")
    return seconds


def build_schedule(
    spec: Any, total_steps: int, lr: float | None = None
) -> tuple[Callable[[int], float] | None, Callable[[int], Any] | None]:
    """``(schedule, factory)`` for ``spec``: a schedule, a factory ``total_steps -> schedule``, or a name.

    A name (``"warmup(cosine)"``) is parsed for ``total_steps`` with ``lr``; an epochpilot ``Schedule`` is
    used as is (factory None); any other callable is called with ``total_steps``: when it returns a callable
    it was a factory (and is kept for rebuilds), when it returns a number it was a plain ``step -> lr``
    function. ``total_steps`` counts every update of the run, warmup included.
    """
    if spec is None:
        return None, None
    if isinstance(spec, str):
        from epochpilot.schedules import parse

        def factory(steps: int) -> Any:
            return parse(spec, lr=1e-3 if lr is None else float(lr), total_steps=steps)

        return factory(total_steps), factory
    from epochpilot.schedules import Schedule

    if isinstance(spec, Schedule):
        return spec, None
    if not callable(spec):
        raise ConfigError(
            "schedule must be a schedule (step -> lr), a factory total_steps -> schedule, or a name"
        )
    out = spec(int(total_steps))
    if callable(out):
        return out, spec
    return spec, None


class Budget:
    """The run's budget: epochs, and optionally a step cap and a time limit (owned by the loop).

    ``epochs`` is the current epoch budget (before any stopper extension). Its state (``state_dict``) is
    saved with the loop's counters, so a resumed run keeps the budget measured in its first session and
    counts the time already spent.
    """

    def __init__(self, max_epochs: int, max_steps: int | None, max_time: Any) -> None:
        self.max_epochs = int(max_epochs)
        self.max_steps = max_steps
        self.max_time_s = parse_duration(max_time)
        self.epochs = self.max_epochs
        self.epoch_time_s: float | None = None
        self.step_epochs: int | None = None  # the epochs max_steps allows (set by plan)
        self.used_s = 0.0  # time spent in earlier sessions (resume)
        self._start: float | None = None

    @property
    def kind(self) -> str:
        """``"epochs"``, ``"steps"``, ``"time"`` or ``"steps+time"``."""
        parts = [n for n, v in (("steps", self.max_steps), ("time", self.max_time_s)) if v]
        return "+".join(parts) or "epochs"

    def plan(self, steps_per_epoch: int) -> int:
        """The epoch budget before any epoch is timed: implied by ``max_steps``, else ``max_epochs``."""
        if self.max_steps:
            self.step_epochs = math.ceil(self.max_steps / max(1, steps_per_epoch))
            if self.epoch_time_s is None:
                self.epochs = self.step_epochs
        return self.epochs

    def start(self) -> None:
        """Start (or restart, after a resume) the clock."""
        self._start = _clock()

    def elapsed(self) -> float:
        """Seconds spent training, this session and earlier ones."""
        now = _clock()
        return self.used_s + (now - self._start if self._start is not None else 0.0)

    def total_steps(self, steps_per_epoch: int) -> int:
        """Updates in the whole budget: ``max_steps`` when that ends first, else epochs * steps per epoch."""
        steps = self.epochs * steps_per_epoch
        return max(1, min(steps, self.max_steps) if self.max_steps else steps)

    def steps_done(self, step: int) -> bool:
        """True once ``max_steps`` updates have been made."""
        return bool(self.max_steps) and step >= int(self.max_steps)

    def after_epoch(self, epochs_done: int) -> tuple[int | None, tuple[Reason, str] | None]:
        """At an epoch's end: ``(new epoch budget or None, stop (reason, message) or None)``.

        With ``max_time`` the mean epoch time so far gives ``floor(max_time / epoch_time)`` epochs (at least
        the epochs done, at most what ``max_steps`` allows). It becomes the budget after the first epoch, and
        again later whenever it moves by more than ``REESTIMATE`` of the budget (epochs that slow down or
        speed up after the first; measured on the CLI: the first epoch was 3x faster than the mean).
        """
        if not self.max_time_s:
            return None, None
        elapsed = self.elapsed()
        first = self.epoch_time_s is None
        self.epoch_time_s = elapsed / max(1, epochs_done)
        fit = (
            math.floor(self.max_time_s / self.epoch_time_s)
            if self.epoch_time_s > 0
            else self.epochs
        )
        if self.step_epochs:
            fit = min(fit, self.step_epochs)
        fit = max(epochs_done, fit)
        new = None
        if first or abs(fit - self.epochs) > REESTIMATE * self.epochs:
            new = self.epochs = fit
            log.info(
                "max_time %.4gs at %.3gs per epoch: budget %d epochs",
                self.max_time_s,
                self.epoch_time_s,
                new,
            )
        if elapsed >= self.max_time_s:
            return new, (
                Reason.MAX_TIME,
                f"max_time={self.max_time_s:g}s spent ({elapsed:.4g}s after {epochs_done} epochs)",
            )
        return new, None

    def end_reason(self, max_epochs: int) -> tuple[Reason, str]:
        """Why the loop ran out of epochs: the budget that set them."""
        if self.max_time_s and self.epoch_time_s is not None:
            return Reason.MAX_TIME, (
                f"reached the time budget: {max_epochs} epochs of {self.epoch_time_s:.3g}s "
                f"fit in max_time={self.max_time_s:g}s"
            )
        if self.max_steps:
            return Reason.MAX_STEPS, f"reached max_steps={self.max_steps} ({max_epochs} epochs)"
        return Reason.MAX_EPOCHS, f"reached max_epochs={max_epochs}"

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state: the current epoch budget, the measured epoch time and the time used."""
        return {"epochs": self.epochs, "epoch_time_s": self.epoch_time_s, "used_s": self.elapsed()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output; the time used carries on (a NaN rollback does not give time back)."""
        if self.kind != "epochs":  # an epoch budget comes from the config, which may have changed
            self.epochs = int(state["epochs"])
        self.epoch_time_s = state["epoch_time_s"]
        self.used_s = max(float(state["used_s"]), self.elapsed())
        self._start = _clock()

    def summary(self, steps_per_epoch: int) -> dict[str, Any]:
        """What summary.json records about the budget."""
        return {
            "kind": self.kind,
            "max_epochs": self.max_epochs,
            "max_steps": self.max_steps,
            "max_time_s": self.max_time_s,
            "epoch_time_s": self.epoch_time_s,
            "budget_epochs": self.epochs,
            "budget_steps": self.total_steps(steps_per_epoch),
            "elapsed_s": self.elapsed(),
        }


def apply_budget(loop: Any, epochs: int) -> None:
    """Make ``epochs`` the loop's epoch budget: max_epochs (plus extensions), the schedule's length, the stopper's."""
    st = loop.state
    st.max_epochs = int(epochs) + int(loop.extended)
    total = loop.budget.total_steps(st.steps_per_epoch)
    for cb in loop.callbacks:
        if hasattr(cb, "rebuild"):
            cb.rebuild(total, st)
        policy = getattr(cb, "policy", None)
        if hasattr(policy, "set_budget"):
            policy.set_budget(int(epochs))

"""Budgets in epochs, optimizer steps or wall time, and schedules whose length follows the budget.

``max_steps=N`` caps the run at ``N`` updates (the epoch budget becomes ``ceil(N / steps_per_epoch)``);
``max_time="10min"`` turns the first epoch's measured time into an epoch budget
(``floor(max_time / epoch_time)``, at least the epochs done; re-estimated from the mean epoch time when
that projection moves by more than 20%) and stops with ``MAX_TIME`` once the time is
spent. Both replace ``max_epochs``; both together: whichever ends first; both are hard limits (a stop
policy's extension cannot pass them). ``max_epochs`` is a hard limit too unless the user sets ``extend``
(a fraction of ``max_epochs``): only then may a stop policy that asks for more epochs get them, at most
``floor(extend * max_epochs)`` in all; the summary keeps the asked budget and the extension apart. A
schedule given as a factory ``total_steps -> schedule`` is rebuilt whenever the budget changes (updates
already made keep their lr; with ``max_time`` the first epoch runs under the first estimate's schedule,
so a warmup is counted in that estimate). A stop policy with a ``set_budget(epochs)`` method (the
``"forecast"`` stopper) is told the new budget; any other keeps its own. The measured time is rank 0's,
broadcast so every rank agrees. The budget (epochs, measured epoch time, time used) is saved with the
loop's counters, so a resumed run keeps it and counts the time already spent.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from epochpilot._duration import parse_duration
from epochpilot.core.stopping.base import Reason
from epochpilot.core.stopping.wording import epochs as n_epochs
from epochpilot.core.stopping.wording import metric_words, stop_sentence
from epochpilot.errors import ConfigError

__all__ = ["Budget", "apply_budget", "build_schedule", "check_extend", "parse_duration"]

log = logging.getLogger("epochpilot")

#: a time budget is re-estimated when the projected epochs move by more than this fraction of it
REESTIMATE = 0.2
#: the clock the time budget reads (tests replace it with a fake one)
_clock: Callable[[], float] = time.perf_counter


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
        from epochpilot.core.schedules import parse

        def factory(steps: int) -> Any:
            return parse(spec, lr=1e-3 if lr is None else float(lr), total_steps=steps)

        return factory(total_steps), factory
    from epochpilot.core.schedules import Schedule

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

    def __init__(
        self, max_epochs: int, max_steps: int | None, max_time: Any, extend: Any = None
    ) -> None:
        self.max_epochs = int(max_epochs)
        self.extend = check_extend(extend)
        #: extra epochs a stop policy asked for and did not get (said in the end message)
        self.refused = 0
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

    def extension_room(self, extended: int) -> int:
        """Epochs a stop policy may still add past ``max_epochs``: ``floor(extend * max_epochs)`` minus those
        granted already; 0 without ``extend`` or with a step or time budget (those are never extended)."""
        if not self.extend or self.kind != "epochs":
            return 0
        return max(0, math.floor(self.extend * self.max_epochs + 1e-9) - int(extended))

    def grant(self, asked: int, extended: int) -> int:
        """How many of the ``asked`` extra epochs a stop policy gets (``extended``: granted so far)."""
        granted = max(0, min(int(asked), self.extension_room(extended)))
        self.refused = max(0, int(asked) - granted)
        return granted

    def refusal(self) -> str:
        """Why an extension was refused, in one clause (for the log and the end message)."""
        if self.kind != "epochs":
            return f"a {self.kind.replace('+', ' and ')} budget is never extended"
        if not self.extend:
            return f"max_epochs={self.max_epochs} is a hard cap unless extend= allows more"
        allowed = math.floor(self.extend * self.max_epochs + 1e-9)
        return f"extend={self.extend:g} allows {allowed} extra epochs in all"

    def after_epoch(
        self, epochs_done: int, state: Any = None
    ) -> tuple[int | None, tuple[Reason, str] | None]:
        """At an epoch's end: ``(new epoch budget or None, stop (reason, message) or None)``.

        With ``max_time`` the mean epoch time so far gives ``floor(max_time / epoch_time)`` epochs (at least
        the epochs done, at most what ``max_steps`` allows). It becomes the budget after the first epoch, and
        again later whenever it moves by more than ``REESTIMATE`` of the budget (epochs that slow down or
        speed up after the first; measured on the CLI: the first epoch was 3x faster than the mean).
        Given the loop's ``state``, the stop sentence names the epoch kept.
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
            why = (
                f"the time budget max_time={self.max_time_s:g}s is spent ({elapsed:.4g}s after "
                f"{n_epochs(epochs_done)})"
            )
            return new, (Reason.MAX_TIME, _sentence(epochs_done, why, state))
        return new, None

    def steps_reason(self, epoch: int, state: Any = None) -> tuple[Reason, str]:
        """Why the loop stopped on ``max_steps`` (mid-epoch or at an epoch's end), in one sentence."""
        why = f"the step budget max_steps={self.max_steps} is used up"
        return Reason.MAX_STEPS, _sentence(epoch, why, state)

    def end_reason(self, max_epochs: int, state: Any = None) -> tuple[Reason, str]:
        """Why the loop ran out of epochs, in one plain sentence: the budget that set them, any extension
        granted or refused, and (given the loop's ``state``) the epoch kept and whether the monitored value
        was still improving at the end."""
        if self.max_time_s and self.epoch_time_s is not None:
            why = (
                f"the time budget max_time={self.max_time_s:g}s is used up ({n_epochs(max_epochs)} of "
                f"{self.epoch_time_s:.3g}s fit in it)"
            )
            return Reason.MAX_TIME, _sentence(max_epochs, _still(why, state), state)
        if self.max_steps:
            why = f"the step budget max_steps={self.max_steps} is used up ({n_epochs(max_epochs)})"
            return Reason.MAX_STEPS, _sentence(max_epochs, _still(why, state), state)
        extra = max(0, int(max_epochs) - self.epochs)
        if extra:
            why = (
                f"the budget you set, max_epochs={self.max_epochs}, and the {n_epochs(extra)} the stopper "
                f"added to it (extend={self.extend:g}) are used up"
            )
        else:
            why = f"the budget you set, max_epochs={self.max_epochs}, is used up"
        if self.refused:
            why += (
                f"; the stopper expected further gains and asked for {self.refused} more "
                f"epoch{'s' if self.refused != 1 else ''}, but "
                f"{self.refusal()}"
            )
        return Reason.MAX_EPOCHS, _sentence(max_epochs, _still(why, state), state)

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

    def summary(self, steps_per_epoch: int, extended: int = 0) -> dict[str, Any]:
        """What summary.json records about the budget: ``max_epochs`` as asked, ``extend`` (the fraction
        allowed, None: a hard cap) and ``extended_by`` (epochs granted past it) apart."""
        return {
            "kind": self.kind,
            "max_epochs": self.max_epochs,
            "extend": self.extend,
            "extended_by": int(extended),
            "max_steps": self.max_steps,
            "max_time_s": self.max_time_s,
            "epoch_time_s": self.epoch_time_s,
            "budget_epochs": self.epochs,
            "budget_steps": self.total_steps(steps_per_epoch),
            "elapsed_s": self.elapsed(),
        }


def check_extend(extend: Any) -> float | None:
    """``extend`` as a float >= 0 (None: never extend); anything else is a one-line ConfigError."""
    if extend is None:
        return None
    if isinstance(extend, bool) or not isinstance(extend, (int, float)):
        raise ConfigError(
            f"extend={extend!r} is not a number: give the fraction of max_epochs a stopper may add "
            "(e.g. 0.5), or None to keep max_epochs a hard cap"
        )
    if not math.isfinite(extend) or extend < 0:
        raise ConfigError(
            f"extend={extend!r} must be a finite fraction >= 0 of max_epochs (e.g. 0.5), or None"
        )
    return float(extend)


def _still(why: str, state: Any) -> str:
    """Add "was still improving at the last epoch" when the loop's best is its last epoch."""
    if state is None or state.best_epoch is None or state.best_epoch != state.epochs_done:
        return why
    return f"{why}; {metric_words(state.monitor)} was still improving at the last epoch: a larger budget may help"


def _sentence(epoch: int, why: str, state: Any) -> str:
    """ "Stopped at epoch E: why." plus the kept epoch when the loop's ``state`` is given."""
    if state is None:
        return f"Stopped at epoch {epoch}: {why}."
    return stop_sentence(epoch, why, state.best_epoch, state.monitor, state.best_value)


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

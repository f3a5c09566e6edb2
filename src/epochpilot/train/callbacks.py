"""The built-in features as callbacks: stopping and best tracking, learning-rate schedules, checkpoint timing."""

from __future__ import annotations

import logging
import math
from typing import Any

from epochpilot.core.stopping.base import Reason, is_better
from epochpilot.core.stopping.wording import stop_sentence
from epochpilot.errors import ConfigError
from epochpilot.train.events import Callback, Request, TrainState
from epochpilot.train.lr import group_ratios

__all__ = ["BestTracker", "CheckpointTimer", "ScheduleCallback", "StopperCallback", "stop_words"]

log = logging.getLogger("epochpilot")


class StopperCallback(Callback):
    """Feeds each epoch's row to a stop policy; asks for ``best`` on improvement and ``stop``/``extend`` when told."""

    state_key = "stopper"

    def __init__(self, policy: Any) -> None:
        self.policy = policy

    def on_validation_end(self, state: TrainState) -> list[Request]:
        # under cooldown="sweep" the policy sees its own line (trunk, or trunk + one branch): trunk epochs
        index = state.checks if state.val_every else int(state.row.get("trunk_epoch", state.epoch))
        try:
            decision = self.policy.update(index, state.row)
        except KeyError as exc:
            raise ConfigError(f"stopper: {exc.args[0] if exc.args else exc}") from None
        out = []
        if decision.improved:
            out.append(Request("best", value=decision.best_value))
        details = getattr(decision, "details", "")
        if decision.extend_by and decision.extend_by > 0:
            out.append(
                Request(
                    "extend",
                    extend_by=int(decision.extend_by),
                    message=decision.message,
                    details=details,
                )
            )
        if decision.stop:
            why = getattr(decision, "why", "")
            if details:
                log.info("epoch %d: the stopper's numbers: %s", state.epoch, details)
            out.append(
                Request(
                    "stop",
                    reason=decision.reason,
                    message=stop_words(state, decision, index),
                    details=details,
                    why=why,
                )
            )
        return out

    def state_dict(self) -> dict[str, Any]:
        return self.policy.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state)


def stop_words(state: TrainState, decision: Any, index: int) -> str:
    """The stop sentence in the loop's own numbers: the epoch it stopped in (and the validation, when the
    policy counts validations) and the epoch the loop keeps. A policy without a reason clause (``why``)
    keeps its own message."""
    why = getattr(decision, "why", "")
    note = f"one every {state.val_every} updates; the stopper counts validations as epochs"
    if not why:
        message = decision.message or decision.reason.value
        return f"{message} ({note})" if state.val_every else message
    where = f"epoch {state.epoch}"
    if state.val_every:
        where += f", validation {index} ({note})"
    if decision.improved:
        kept, value = state.epoch, decision.best_value
    else:
        kept, value = state.best_epoch, state.best_value
    return stop_sentence(where, why, kept, state.monitor, value)


class BestTracker(Callback):
    """Asks for ``best`` whenever ``monitor`` beats its best so far (used when no stop policy is given)."""

    state_key = "best_tracker"

    def __init__(self, monitor: str, mode: str) -> None:
        self.monitor = monitor
        self.mode = mode
        self.best: float | None = None

    def on_validation_end(self, state: TrainState) -> Request | None:
        value = state.row.get(self.monitor)
        if value is None:
            return None
        value = float(value)
        if is_better(value, self.best, self.mode):
            self.best = value
            return Request("best", value=value)
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]


#: updates whose lrs are computed at once (a pure schedule's per-update call is a list read)
_CHUNK = 512


class ScheduleCallback(Callback):
    """Sets the learning rate before every update from an epochpilot schedule (``step -> lr``).

    Each param group keeps its ratio to the first group's initial lr. Any ``ReduceOnPlateau`` inside the
    schedule is fed the epoch's row after validation. ``state.lr_scale`` (halved by NaN rollbacks) multiplies.
    """

    state_key = "schedule"

    def __init__(self, schedule: Any, factory: Any = None, total_steps: int | None = None) -> None:
        from epochpilot.core.schedules import plateaus

        self.schedule = schedule
        self.factory = factory
        self.total_steps = total_steps  # what the factory built the schedule for
        self.plateaus = plateaus(schedule)
        self.ratios: list[float] | None = None
        #: (start, steps) of a cooldown decided at run time (a WSD schedule), kept across rebuilds
        self.phase: tuple[int, int] | None = None
        #: (schedule, first step, lrs) computed in bulk; a new schedule object recomputes
        self._bulk: tuple[Any, int, list[float]] | None = None

    def set_phase(self, phase: tuple[int, int] | None) -> None:
        """Cool a WSD schedule down from update ``phase[0]`` over ``phase[1]`` updates (None: the stable
        phase again); a no-op for other schedules."""
        self.phase = phase
        if hasattr(self.schedule, "cooldown") and hasattr(self.schedule, "stable"):
            base = self.schedule.stable()
            self.schedule = base if phase is None else base.cooldown(*phase)

    def rebuild(self, total_steps: int, state: TrainState | None = None) -> None:
        """Rebuild the schedule from its factory for ``total_steps`` updates (no-op without a factory).

        Updates already made keep the lr they had; plateau states carry over when the count matches.
        """
        from epochpilot.core.schedules import plateaus

        if self.factory is None or int(total_steps) == self.total_steps:
            return
        self.total_steps = int(total_steps)
        old = [p.state_dict() for p in self.plateaus]
        self.schedule = self.factory(int(total_steps))
        if self.phase is not None:
            self.set_phase(self.phase)
        self.plateaus = plateaus(self.schedule)
        if len(old) == len(self.plateaus):
            for plateau, sub in zip(self.plateaus, old):
                plateau.load_state_dict(sub)
        if state is not None and state.optimizer is not None:
            self._apply(state)  # the next update already uses the new schedule

    def _lr(self, step: int) -> float:
        """``schedule(step)``, read from lrs computed in bulk (``_CHUNK`` updates at a time) when the schedule
        is an epochpilot one without a plateau (a pure function of the step); computed afresh otherwise."""
        from epochpilot.core.schedules import Schedule

        if self.plateaus or not isinstance(self.schedule, Schedule):
            return float(self.schedule(step))
        cache = self._bulk
        if (
            cache is None
            or cache[0] is not self.schedule
            or not 0 <= step - cache[1] < len(cache[2])
        ):
            end = step + _CHUNK
            if self.total_steps:
                end = max(step + 1, min(end, int(self.total_steps)))
            cache = self._bulk = (
                self.schedule,
                step,
                [float(self.schedule(s)) for s in range(step, end)],
            )
        return cache[2][step - cache[1]]

    def _apply(self, state: TrainState) -> None:
        groups = state.optimizer.param_groups
        if self.ratios is None:
            self.ratios = group_ratios(state.optimizer)  # the same rule as to_torch's ScheduleLR
        lr = self._lr(state.step) * state.lr_scale
        for group, ratio in zip(groups, self.ratios, strict=True):
            group["lr"] = lr * ratio

    def on_fit_start(self, state: TrainState) -> None:
        self._apply(state)

    def on_step_end(self, state: TrainState) -> None:
        self._apply(state)

    def on_validation_end(self, state: TrainState) -> None:
        if self.plateaus:
            for plateau in self.plateaus:
                monitor = getattr(plateau, "monitor", None)
                if monitor is not None and monitor not in state.row:
                    raise ConfigError(
                        f"ReduceOnPlateau monitors {monitor!r}, not among the epoch metrics {sorted(state.row)}"
                    )
                if plateau.update(state.row):
                    log.info("epoch %d: %s", state.epoch, plateau.reduction_message())
            self._apply(state)

    def state_dict(self) -> dict[str, Any]:
        return {"plateaus": [p.state_dict() for p in self.plateaus], "ratios": self.ratios}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for plateau, sub in zip(self.plateaus, state["plateaus"], strict=True):
            plateau.load_state_dict(sub)
        self.ratios = state["ratios"]


class CheckpointTimer(Callback):
    """Asks for a checkpoint every ``n`` epochs or every ``n`` optimizer updates."""

    state_key = "checkpoint_timer"

    def __init__(self, unit: str, every: int) -> None:
        self.unit = unit
        self.every = every
        if unit == "steps":
            self.on_step_end = self._steps  # type: ignore[method-assign]

    def _steps(self, state: TrainState) -> str | None:
        return "save" if state.step % self.every == 0 else None

    def on_epoch_end(self, state: TrainState) -> str | None:
        if self.unit == "epochs" and state.epoch % self.every == 0:
            return "save"
        return None


def stop_request(reason: Reason, message: str) -> Request:
    """Shorthand for a stop request."""
    return Request("stop", reason=reason, message=message)


def finite(value: Any) -> bool:
    """True when ``value`` is a finite float."""
    return value is not None and math.isfinite(float(value))

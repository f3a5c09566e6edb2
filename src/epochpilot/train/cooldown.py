"""``cooldown="on_stop"``: when the stop policy fires in a WSD schedule's stable phase, cool the lr down first.

The loop does not stop at the policy's request: it starts the schedule's cooldown at the current update, for
``cooldown_fraction`` of the updates so far (:func:`epochpilot.core.stopping.cooldown.cooldown_length`), records
that phase boundary in :class:`~epochpilot.train.events.TrainState` (saved in checkpoints, so a resumed run
continues the same cooldown), keeps validating and keeping the best weights, and stops once the cooldown's
last update is done. Further soft stop requests are ignored while cooling; not-finite losses, divergence,
interrupts and the ``max_time`` / ``max_steps`` / ``max_epochs`` budgets still stop at once. A cooldown that
does not fit in the updates left before ``max_epochs`` (or ``max_steps``) is shortened to fit.
"""

from __future__ import annotations

import logging
from typing import Any

from epochpilot.core.stopping.base import Reason
from epochpilot.core.stopping.cooldown import cooldown_length
from epochpilot.errors import ConfigError
from epochpilot.train.callbacks import ScheduleCallback
from epochpilot.train.events import Request, TrainState

__all__ = [
    "HARD_STOPS",
    "Cooling",
    "check_cooldown",
    "epochs_trained",
    "ended",
    "kept_from",
    "schedule_callback",
    "stopper_note",
]

log = logging.getLogger("epochpilot")

#: stop reasons the cooldown never postpones
HARD_STOPS = frozenset(
    {
        Reason.NOT_FINITE,
        Reason.DIVERGENCE,
        Reason.USER,
        Reason.MAX_TIME,
        Reason.MAX_STEPS,
        Reason.MAX_EPOCHS,
    }
)


def check_cooldown(cooldown: str | None, schedule: Any, stopper: Any) -> None:
    """Refuse a cooldown mode without a WSD schedule in its stable phase, or ``"on_stop"`` without a stop
    policy (one-line ConfigError naming ``cooldown``)."""
    if cooldown is None:
        return
    from epochpilot.core.schedules.wsd import WSD

    if not isinstance(schedule, WSD):
        got = "no schedule" if schedule is None else f"schedule={type(schedule).__name__}"
        raise ConfigError(
            f"cooldown={cooldown!r} needs a WSD schedule to cool down, got {got}: use schedule='wsd'"
        )
    if schedule.cooling:
        raise ConfigError(
            f"cooldown={cooldown!r} decides when the WSD schedule cools down, but it already cools "
            f"down from update {schedule.cooldown_start}: give WSD without cooldown_start"
        )
    if stopper is False and cooldown == "on_stop":
        raise ConfigError(
            f"cooldown={cooldown!r} starts the cooldown when the stopper fires, but stopper=False: "
            "use a stopper (the default) or drop cooldown"
        )


def kept_from(state: TrainState) -> str:
    """``"trunk"`` or ``"cooldown from epoch E"``: where the kept (best) weights were trained (E: the epoch
    the cooldown branch forked after)."""
    from epochpilot.train.branches import branch_records

    if state.best_epoch is None:
        return "trunk"
    row = next((r for r in state.history if r.get("epoch") == state.best_epoch), None)
    branch = int((row or {}).get("branch") or 0)
    if not branch:
        return "trunk"
    record = next((b for b in branch_records(state) if b["branch"] == branch), None)
    return "trunk" if record is None else f"cooldown from epoch {record['fork_epoch']}"


def ended(state: TrainState, why: str) -> str:
    """The run's stop sentence after a cooldown decision: ``why``, then the kept epoch and where it was
    trained ("Stopped at epoch 30: ... Kept epoch 27 (val_loss 0.41), from the cooldown branch forked
    after epoch 24.")."""
    from epochpilot.core.stopping.wording import stop_sentence

    text = stop_sentence(state.epoch, why, state.best_epoch, state.monitor, state.best_value)
    if state.best_epoch is None:
        return text
    origin = kept_from(state)
    if origin == "trunk":
        where = "the trunk" if state.sweep is not None else "before the cooldown"
    else:
        kind = "branch forked" if state.sweep is not None else "started"
        where = f"the cooldown {kind} after epoch {origin.rsplit(' ', 1)[-1]}"
    return f"{text.rstrip('.')}, from {where}."


def stopper_note(req: Request) -> str:
    """What the stop policy said, as a clause (its bare reason when it gives one)."""
    return (req.why or req.message or req.reason.value).strip().rstrip(".")


def epochs_trained(state: TrainState) -> float:
    """Every epoch of training done, as a float (a partial last epoch counts its share of the updates)."""
    if not state.steps_per_epoch:
        return float(state.epochs_done)
    return round(state.step / state.steps_per_epoch, 6)


def schedule_callback(callbacks: list[Any]) -> ScheduleCallback | None:
    return next((cb for cb in callbacks if isinstance(cb, ScheduleCallback)), None)


class Cooling:
    """The loop's side of ``cooldown="on_stop"`` (a mixin of ``Loop``: it reads ``state``, ``cfg``,
    ``budget`` and ``callbacks``)."""

    state: TrainState
    cfg: Any
    budget: Any
    callbacks: list[Any]

    def _cooldown_takes(self, req: Request) -> bool:
        """True when the cooldown takes over stop request ``req`` (starts, or is already running)."""
        st = self.state
        if self.cfg.cooldown is None or req.reason in HARD_STOPS:
            return False
        if st.sweep is not None:
            return self._sweep_takes(req)
        if st.cooldown_start is not None:
            log.debug(
                "epoch %d: stop request ignored while cooling down: %s", st.epoch, req.message
            )
            return True
        wanted = cooldown_length(st.step, float(self.cfg.cooldown_fraction))
        left, cap = self._updates_left()
        steps = min(wanted, left)
        note = stopper_note(req)
        st.stop_details = req.details
        if steps <= 0:  # nothing left to cool down in: stop now, saying so
            st.stop, st.stop_reason = True, req.reason
            st.stop_message = ended(
                st, f"{note}; no updates were left before {cap} to cool the learning rate down"
            )
            return True
        if steps < wanted:
            note += (
                f"; the cooldown of {wanted} updates was shortened to the {steps} left before {cap}"
            )
        st.cooldown_start, st.cooldown_steps, st.cooldown_epoch = st.step, steps, st.epoch
        st.cooldown_reason, st.cooldown_note = req.reason.value, note
        self._sync_schedule()
        log.info(
            "epoch %d: the stopper fired (%s); cooling the lr down over %d updates (%.3g epochs) first",
            st.epoch,
            note,
            steps,
            steps / max(1, st.steps_per_epoch),
        )
        return True

    def _updates_left(self) -> tuple[int, str]:
        """(updates left before the run's cap, the cap's name) at the current update."""
        st = self.state
        left = st.max_epochs * st.steps_per_epoch - st.step
        cap = f"max_epochs={st.max_epochs}"
        max_steps = getattr(self.budget, "max_steps", None)
        if max_steps and max_steps - st.step < left:
            left, cap = max_steps - st.step, f"max_steps={max_steps}"
        return left, cap

    def _cooldown_over(self) -> bool:
        """True once the cooldown's last update is done."""
        st = self.state
        return st.cooldown_start is not None and st.step >= st.cooldown_start + st.cooldown_steps

    def _finish_cooldown(self) -> None:
        """At the end of an epoch: stop when the cooldown is over, saying what happened."""
        st = self.state
        if st.stop or st.sweep is not None or not self._cooldown_over():
            return
        schedule = schedule_callback(self.callbacks)
        shape = getattr(getattr(schedule, "schedule", None), "shape", "")
        epochs = st.cooldown_steps / max(1, st.steps_per_epoch)
        st.stop, st.stop_reason = True, Reason(st.cooldown_reason or Reason.USER.value)
        st.stop_message = ended(
            st,
            f"the stopper fired at epoch {st.cooldown_epoch} ({st.cooldown_note}), then the learning "
            f"rate was cooled down over {epochs:.3g} epochs ({st.cooldown_steps} updates, "
            f"{shape or 'WSD'})",
        )

    def _sync_schedule(self) -> None:
        """Make the schedule follow the state's phase boundary (after a cooldown starts, a resume or a rollback)."""
        cb = schedule_callback(self.callbacks)
        if cb is None:
            return
        st = self.state
        cb.set_phase(None if st.cooldown_start is None else (st.cooldown_start, st.cooldown_steps))
        if st.optimizer is not None and cb.ratios is not None:
            cb._apply(st)

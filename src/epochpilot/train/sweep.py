"""``cooldown="sweep"``: fork cooldown branches off a constant-lr trunk, keep the best model over all of them.

At branch points spaced geometrically in trunk updates (:class:`~epochpilot.core.stopping.cooldown.BranchPoints`,
from ``sweep_start`` epochs, doubling) the loop copies the trunk's state (model, optimizer, callbacks such as
the stop policy, grad scaler, every rank's RNG), trains a branch whose lr cools down over
``cooldown_fraction`` of the trunk's updates, validating each epoch, then puts the trunk's state back and
goes on at the constant lr. Every epoch, trunk or branch, counts against ``max_epochs`` (history epochs are
numbered in the order they were trained) and the best validated weights over trunk and branches are kept.

The trunk ends when ``sweep_patience`` branches in a row did not beat the best earlier branch
(:class:`~epochpilot.core.stopping.cooldown.SweepStop`), when the stop policy fires on the trunk, or when the
budget nears: the last branch takes every update left, so the model kept at the cap is annealed. When the
policy fires and the trunk improved (on its own line) since the last fork, the trunk is rewound to that best
epoch (a copy is kept at each trunk improvement) and a last branch cools down from there: the trunk's best
epoch usually falls between two doubling branch points, and annealing from a point the trunk had already
overfit loses to it. Hard stops (not finite, divergence, interrupts,
``max_time``) end the run at once. The state of the running branch and the trunk's copy are saved in
checkpoints, so a run killed inside a branch resumes exactly. Mixed into ``Loop``.
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Any

from epochpilot.core.stopping.base import Reason, is_better
from epochpilot.core.stopping.cooldown import (
    BranchPoints,
    SweepStop,
    cooldown_length,
    next_branch,
    whole_epochs,
)
from epochpilot.train import distributed as D
from epochpilot.train.branches import _record, new_sweep_state
from epochpilot.train.serial import snapshot

__all__ = ["Sweeping"]

log = logging.getLogger("epochpilot")


def _short_warmup(callback: Any, first: int, state: Any) -> None:
    """A schedule named by the user (``"wsd"``) warms up over 5% of the planned updates; under a sweep the
    plan is a cap, not the run's length, so the warmup is held to half the trunk before the first branch
    (a WSD object given by the user keeps its own warmup)."""
    import dataclasses

    factory = callback.factory
    limit = max(1, first // 2)

    def shorter(total_steps: int) -> Any:
        schedule = factory(total_steps)
        if getattr(schedule, "warmup_steps", 0) > limit and dataclasses.is_dataclass(schedule):
            schedule = dataclasses.replace(schedule, warmup_steps=limit)
        return schedule

    callback.factory = shorter
    callback.schedule = shorter(callback.total_steps)
    if callback.phase is not None:
        callback.set_phase(callback.phase)
    if state.optimizer is not None and callback.ratios is not None:
        callback._apply(state)


def _tried(state: Any) -> str:
    """ "4 cooldown branches, 60 epochs trained in all"."""
    n = len(state.sweep["branches"])
    epochs = state.step / max(1, state.steps_per_epoch)
    return f"{n} cooldown branch{'es' if n != 1 else ''}, {epochs:.3g} epochs trained in all"


class Sweeping:
    """The loop's side of ``cooldown="sweep"`` (a mixin of ``Loop``)."""

    state: Any
    cfg: Any
    callbacks: list[Any]
    trunk: dict[str, Any] | None = None
    trunk_best: dict[str, Any] | None = None

    # -- set-up and rows ---------------------------------------------------------------------------------
    def _sweep_start(self) -> None:
        """Before the first epoch: the schedule's warmup, and the sweep's counters (a resumed run has its own)."""
        st = self.state
        if self.cfg.cooldown != "sweep":
            return
        from epochpilot.train.cooldown import schedule_callback

        spe = max(1, st.steps_per_epoch)
        first = max(1, round(float(self.cfg.sweep_start) * spe))
        callback = schedule_callback(self.callbacks)
        if callback is not None and callback.factory is not None:
            _short_warmup(callback, first, st)  # a resumed run too: its schedule was built afresh
        if st.sweep is not None:
            return
        schedule = getattr(callback, "schedule", None)
        warmup = int(getattr(schedule, "warmup_steps", 0) or 0)
        st.sweep = new_sweep_state(max(warmup, first))

    def _branch_position(self) -> tuple[int, int]:
        """(branch, trunk_epoch) of the epoch that just trained, counting it (see the history columns)."""
        st = self.state
        sw = st.sweep
        if sw is None:  # on_stop: the cooldown is branch 1 and the run ends in it
            return (1 if st.cooldown_start is not None else 0), st.epoch
        if sw["branch"]:
            sw["branch_rows"] += 1
            return sw["branch"], sw["fork"]["trunk_epochs"] + sw["branch_rows"]
        sw["trunk_epochs"] += 1
        return 0, sw["trunk_epochs"]

    def _data_epoch(self) -> int:
        """The epoch whose batch order the next epoch walks: under a sweep, the trunk's own count (a branch
        walks the orders the trunk would), so branches leave the trunk's data order as it was."""
        st = self.state
        sw = st.sweep
        if sw is None:
            return st.epoch
        if sw["branch"]:
            return sw["fork"]["trunk_epochs"] + sw["branch_rows"] + 1
        return sw["trunk_epochs"] + 1

    def _note_trunk_best(self) -> None:
        """The stop policy says the trunk improved on its own best: keep a copy of the trunk's state here, so
        a last branch can cool down from the trunk's best epoch when the policy ends the trunk later."""
        st = self.state
        sw = st.sweep
        if sw is None or sw["branch"]:
            return
        self.trunk_best = self._trunk_capture()
        sw["trunk_best"] = {
            "epoch": st.epoch,
            "trunk_epochs": sw["trunk_epochs"],
            "trunk_step": st.step - sw["branch_steps"],
        }

    def _sweep_keeps(self, value: Any) -> bool:
        """Whether an epoch whose monitored value is ``value`` beats the kept one over trunk and branches
        (the stop policy only compares within its own line: its state goes back to the trunk's)."""
        sw = self.state.sweep
        if sw is None:
            return True
        best = sw["best_raw"]
        if best is not None and not is_better(float(value), float(best), self.state.mode):
            return False
        sw["best_raw"] = float(value)
        return True

    def _sweep_takes(self, req: Any) -> bool:
        """A soft stop request from the stop policy: ignored in a branch. On the trunk: a last branch cooled
        down from the trunk's best epoch when that came after the last fork (the trunk is rewound to it),
        else the end of the trunk once a branch was tried, else a last branch from here. Always True: the
        sweep took the request."""
        sw = self.state.sweep
        from epochpilot.train.cooldown import ended, stopper_note

        note = stopper_note(req)
        if sw["branch"]:
            log.debug("epoch %d: stop request ignored inside a branch: %s", self.state.epoch, note)
            return True
        st = self.state
        st.stop_details = req.details
        best = sw["trunk_best"]
        if best is not None and best["epoch"] != st.epoch and self.trunk_best is not None:
            sw["pending"], sw["reason"], sw["rewind"] = note, req.reason.value, True
            return True
        if sw["branches"]:  # the trunk ends; the best branch so far (or trunk epoch) is the result
            st.stop, st.stop_reason = True, req.reason
            st.stop_message = ended(st, f"{note}; the trunk ends after {_tried(st)}")
            return True
        sw["pending"], sw["reason"] = note, req.reason.value
        return True

    # -- at the end of each epoch ----------------------------------------------------------------------------
    def _sweep_epoch_end(self) -> None:
        """End a finished branch, or start one when the trunk reached a branch point or the budget's end."""
        st = self.state
        sw = st.sweep
        if sw is None or st.stop:
            return
        if sw["branch"]:
            if self._cooldown_over():
                self._join()
            return
        spe = max(1, st.steps_per_epoch)
        left, cap = self._updates_left()
        left = min(left, (st.max_epochs - st.epochs_done) * spe)  # epochs count whole, branches too
        trunk_step = st.step - sw["branch_steps"]
        fraction = float(self.cfg.cooldown_fraction)
        if sw["pending"]:
            origin = None
            if (
                sw["rewind"] and self.trunk_best is not None
            ):  # cool down from the trunk's best epoch
                self._trunk_restore(self.trunk_best)
                origin = sw["trunk_best"]
                trunk_step = origin["trunk_step"]
            steps = min(whole_epochs(cooldown_length(trunk_step, fraction), spe), left)
            if steps > 0:
                self._fork(
                    steps, final=True, note=sw["pending"], reason=sw["reason"], origin=origin
                )
            else:  # nothing left to cool down in
                from epochpilot.train.cooldown import ended

                st.stop, st.stop_reason = True, Reason(sw["reason"])
                st.stop_message = ended(
                    st, f"{sw['pending']}; no updates were left before {cap} to cool the lr down"
                )
            return
        action, steps = next_branch(trunk_step, left, spe, fraction, sw["next_point"])
        if action == "final":
            note = f"the budget ({cap}) is used up; the last cooldown branch took its {steps} last updates"
            reason = Reason.MAX_STEPS if cap.startswith("max_steps") else Reason.MAX_EPOCHS
            self._fork(steps, final=True, note=note, reason=reason.value)
        elif action == "branch":
            self._fork(steps, final=False, note="", reason="")

    def _fork(
        self, steps: int, final: bool, note: str, reason: str, origin: dict[str, Any] | None = None
    ) -> None:
        """Copy the trunk's state and start a branch cooling down over ``steps`` updates (from the trunk's
        current epoch, or from ``origin``, the trunk's best epoch it was rewound to)."""
        st = self.state
        sw = st.sweep
        self.trunk = self._trunk_capture()
        origin = origin or {
            "epoch": st.epoch,
            "trunk_epochs": sw["trunk_epochs"],
            "trunk_step": st.step - sw["branch_steps"],
        }
        sw.update(
            branch=len(sw["branches"]) + 1,
            final=final,
            note=note,
            reason=reason,
            pending="",
            rewind=False,
            trunk_best=None,
            branch_rows=0,
            fork={**origin, "step": st.step},
        )
        self.trunk_best = None  # a later trunk improvement is copied afresh
        st.cooldown_start, st.cooldown_steps, st.cooldown_epoch = st.step, steps, origin["epoch"]
        self._sync_schedule()
        log.info(
            "epoch %d: cooldown branch %d over %d updates (%.3g epochs)%s",
            st.epoch,
            sw["branch"],
            steps,
            steps / max(1, st.steps_per_epoch),
            f", the last: {note}" if final else "",
        )

    def _join(self) -> None:
        """The running branch is over: record it, put the trunk's state back, decide whether the trunk goes on."""
        st = self.state
        sw = st.sweep
        record = _record(st, sw, final=sw["final"])
        stopper = SweepStop(st.mode, patience=int(self.cfg.sweep_patience))
        if sw["stopper"] is not None:
            stopper.load_state_dict(sw["stopper"])
        value = math.nan if record["best_value"] is None else record["best_value"]
        decision = stopper.update(value)
        sw["stopper"] = stopper.state_dict()
        sw["branches"].append(record)
        sw["branch_steps"] += st.step - sw["fork"]["step"]
        final, note, reason = sw["final"], sw["note"], sw["reason"]
        sw.update(branch=0, final=False, note="", reason="", fork=None, branch_rows=0)
        st.cooldown_start, st.cooldown_steps, st.cooldown_epoch = None, 0, None
        if self.trunk is not None:
            self._trunk_restore(self.trunk)
        self.trunk = None
        self._sync_schedule()
        trunk_step = st.step - sw["branch_steps"]
        sw["next_point"] = BranchPoints(sw["first_step"]).next_after(trunk_step)
        if not final:
            log.info("epoch %d: %s", st.epoch, decision.message)
        if not (final or decision.stop):
            return
        from epochpilot.train.cooldown import ended

        if final:
            why = note
        else:
            n = int(self.cfg.sweep_patience)
            why = (
                f"{'the last cooldown branch' if n == 1 else f'the last {n} cooldown branches'} did not "
                "beat an earlier one, so later ones are unlikely to"
            )
            st.stop_details = decision.message
        st.stop = True
        st.stop_reason = Reason(reason) if final and reason else Reason.PATIENCE
        st.stop_message = ended(st, f"{why}; {_tried(st)}")

    # -- the trunk's copy ----------------------------------------------------------------------------------------
    def _trunk_capture(self) -> dict[str, Any]:
        """Everything the trunk needs to go on after a branch, as CPU copies (every rank's RNG included)."""
        from epochpilot.train.rng import get_rng

        rngs = D.gather(get_rng(), self.dist)
        return snapshot(
            {
                "model": self.module.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "callbacks": {cb.state_key: cb.state_dict() for cb in self.callbacks},
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "rng": rngs,
            }
        )

    def _trunk_restore(self, trunk: dict[str, Any]) -> None:
        """Put the trunk's copy back (the kept best weights and the counters stay as they are)."""
        from epochpilot.train.rng import set_rng

        trunk = snapshot(trunk)  # the optimizer would alias the copy's tensors
        self.module.load_state_dict(trunk["model"])
        self.optimizer.load_state_dict(trunk["optimizer"])
        by_key = trunk["callbacks"]
        for cb in self.callbacks:
            if cb.state_key in by_key and by_key[cb.state_key]:
                cb.load_state_dict(copy.deepcopy(by_key[cb.state_key]))
        if self.scaler is not None and trunk.get("scaler"):
            self.scaler.load_state_dict(trunk["scaler"])
        rngs = trunk["rng"]
        set_rng(rngs[min(self.dist.rank, len(rngs) - 1)])

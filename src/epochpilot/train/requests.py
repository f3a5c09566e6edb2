"""The loop's answers to callback requests: keep the best weights, grant an extension, stop, save."""

from __future__ import annotations

import logging
import math
from typing import Any

from epochpilot.train.events import Request

__all__ = ["Requests"]

log = logging.getLogger("epochpilot")


def _finite(value: Any) -> bool:
    """False for NaN or inf (None and non-numbers pass: they carry no value to judge)."""
    try:
        return value is None or math.isfinite(float(value))
    except (TypeError, ValueError):
        return True


class Requests:
    """Mixin for the Loop: :meth:`_handle` acts on what the callbacks asked."""

    def _handle(self, requests: list[Request], mid_epoch: bool = False) -> None:
        """Act on callback requests: keep best weights, extend, stop, save."""
        st = self.state
        save = False
        for req in requests:
            if req.action == "best":
                if not _finite(req.value) or not _finite(st.row.get(st.monitor)):
                    log.warning(
                        "epoch %d: not kept as the best, its %s is not finite", st.epoch, st.monitor
                    )
                    continue
                self._note_trunk_best()
                if not self._sweep_keeps(st.row.get(st.monitor)):
                    continue
                st.best_epoch, st.best_value = st.epoch, req.value
                self.keep_best()
            elif req.action == "extend":  # max_epochs is a hard cap unless the user's extend allows
                granted = self.budget.grant(req.extend_by, self.extended)
                asked = req.message or f"the stopper asks for {req.extend_by} more epochs"
                asked = asked.rstrip(".")
                if granted:
                    st.max_epochs += granted
                    self.extended += granted
                    log.info(
                        "epoch %d: %s. Granted %d more epochs (to %d; extend=%g).",
                        st.epoch,
                        asked,
                        granted,
                        st.max_epochs,
                        self.budget.extend,
                    )
                else:
                    log.info(
                        "epoch %d: %s. Not granted: %s.",
                        st.epoch,
                        asked,
                        self.budget.refusal(),
                    )
            elif req.action == "stop" and not st.stop:
                if self._cooldown_takes(req):
                    continue
                st.stop, st.stop_reason, st.stop_message = (
                    True,
                    req.reason,
                    req.message or req.reason.value,
                )
                st.stop_details = req.details
            elif req.action == "save":
                save = True
        if save:
            self.save(mid_epoch=mid_epoch)
            self._saved_at = (st.step, st.batch)

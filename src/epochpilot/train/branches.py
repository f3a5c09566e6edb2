"""The sweep's records: its JSON-safe counters, and one dict per cooldown branch for ``summary.json``, the
``FitResult`` and the report (see ``train.sweep``; ``cooldown="on_stop"``'s one cooldown is branch 1)."""

from __future__ import annotations

import math
from typing import Any

from epochpilot.core.stopping.base import is_better

__all__ = ["branch_records", "new_sweep_state"]


def new_sweep_state(first_step: int) -> dict[str, Any]:
    """The JSON-safe sweep counters of a run that has not branched yet (first branch at ``first_step``)."""
    return {
        "branch": 0,  # 0 on the trunk, k inside the k-th branch
        "final": False,  # the running branch ends the run
        "note": "",  # why the running branch is the last one
        "first_step": first_step,
        "next_point": first_step,  # the next branch point, in trunk updates
        "trunk_epochs": 0,
        "branch_steps": 0,  # updates trained in finished branches
        "branch_rows": 0,  # epochs done in the running branch
        "fork": None,  # {"epoch", "step", "trunk_epochs", "trunk_step"} of the running branch
        "pending": "",  # the stop policy fired on the trunk before any branch: cool down from here
        "reason": "",  # the stop reason of the run if the running branch is the last one
        "best_raw": None,  # the monitored value of the kept epoch (trunk or branch)
        "trunk_best": None,  # {"epoch", "trunk_epochs", "trunk_step"}: the trunk's best since the last fork
        "rewind": False,  # the pending last branch starts from the trunk's best epoch
        "branches": [],
        "stopper": None,
    }


def branch_records(state: Any) -> list[dict[str, Any]]:
    """One dict per cooldown branch (see docs/training.md, "Cooldown branches"), for ``summary.json`` and the report."""
    sw = state.sweep
    if sw is not None:
        out = [dict(b) for b in sw["branches"]]
        if sw["branch"]:
            out.append(_record(state, sw, final=sw["final"]))
        return out
    if state.cooldown_start is None:
        return []
    rows = [r for r in state.history if r.get("branch")]
    best_epoch, best_value = _best_of(rows, state.monitor, state.mode)
    return [
        {
            "branch": 1,
            "fork_epoch": state.cooldown_epoch,
            "fork_step": state.cooldown_start,
            "steps": state.cooldown_steps,
            "first_epoch": rows[0]["epoch"] if rows else None,
            "last_epoch": rows[-1]["epoch"] if rows else None,
            "best_value": best_value,
            "best_epoch": best_epoch,
            "final": True,
        }
    ]


def _best_of(rows: list[dict[str, Any]], monitor: str, mode: str) -> tuple[Any, Any]:
    """(epoch, value) of the best finite monitored value among ``rows``, or (None, None)."""
    best_epoch, best = None, None
    for row in rows:
        value = row.get(monitor)
        if value is None or not math.isfinite(float(value)):
            continue
        if best is None or is_better(float(value), best, mode):
            best_epoch, best = row["epoch"], float(value)
    return best_epoch, best


def _record(state: Any, sw: dict[str, Any], final: bool) -> dict[str, Any]:
    k = sw["branch"]
    rows = [r for r in state.history if r.get("branch") == k]
    best_epoch, best_value = _best_of(rows, state.monitor, state.mode)
    fork = sw["fork"]
    return {
        "branch": k,
        "fork_epoch": fork["epoch"],
        "fork_step": fork["step"],
        "steps": state.cooldown_steps,
        "first_epoch": rows[0]["epoch"] if rows else None,
        "last_epoch": rows[-1]["epoch"] if rows else None,
        "best_value": best_value,
        "best_epoch": best_epoch,
        "final": final,
    }

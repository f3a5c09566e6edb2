"""What the Keras, Lightning and Hugging Face adapters share: feeding a stop policy one row per epoch, tracking
the best epoch, driving an epochpilot schedule, and writing the run directory (``history.jsonl``,
``history.csv``, ``summary.json``, the report).

Pure: standard library and numpy only, so the Keras adapter works on any Keras backend without torch. The
trainer's own writers (``epochpilot.train.record``) import torch, hence the small JSON/CSV writer here.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import logging
import math
import numbers
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from epochpilot._files import atomic_open
from epochpilot.core.stopping.base import Decision, Policy, Reason
from epochpilot.integrations._schedule import ScheduleDriver

__all__ = [
    "PilotCore",
    "ScheduleDriver",
    "policy_target",
    "scalar",
    "write_json_atomic",
]

log = logging.getLogger("epochpilot")

#: Version of the adapters' ``state_dict`` layout.
STATE_VERSION = 1
_STATE_KEYS = {
    "format",
    "version",
    "policy",
    "history",
    "best_epoch",
    "best_value",
    "stop_epoch",
    "stop_reason",
    "stop_message",
    "extended",
    "schedule",
}


def _sanitize(obj: Any) -> Any:
    """Non-finite floats -> None, recursively, for strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_sanitize(v) for v in obj]
    return obj


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` through a uniquely named temporary file beside ``path`` (removed on any failure),
    synced, then renamed over ``path``."""
    with atomic_open(path, "w", sync=True, encoding="utf-8", newline="") as fh:
        fh.write(text)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as strict JSON (non-finite floats as null) through a temporary file and a rename."""
    _write_atomic(Path(path), json.dumps(_sanitize(obj), indent=1, allow_nan=False) + "\n")


def scalar(value: Any) -> float | None:
    """A framework's metric value (float, numpy scalar, 0-d or one-element tensor) as a float; None if not one."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    for attr in ("detach", "cpu"):  # torch tensors: leave autograd and the device first
        if hasattr(value, attr):
            value = getattr(value, attr)()
    try:
        import numpy as np

        array = np.asarray(value)
    except Exception:  # noqa: BLE001 - anything that is not array-like is not a metric
        return None
    if array.size != 1 or not np.issubdtype(array.dtype, np.number):
        return None
    return float(array.reshape(()))


def policy_target(policy: Policy) -> tuple[str | None, str | None]:
    """The (monitor, mode) whose best epoch the policy reports (``AnyOf``: its first policy's)."""
    while not hasattr(policy, "monitor") and getattr(policy, "policies", None):
        policy = policy.policies[0]  # type: ignore[attr-defined]
    return getattr(policy, "monitor", None), getattr(policy, "mode", None)


class PilotCore:
    """One run seen by an adapter: feeds the policy, tracks the best epoch, records rows, writes the run dir.

    ``observe(row)`` takes the epoch's row (with an ``epoch`` key, 1-based) plus optional ``extra`` metrics
    that the policy may read but the history does not keep (the framework's own names), and returns the
    decision. The adapter acts on it (stop the framework, keep weights). ``state_dict()`` is JSON-safe.
    """

    def __init__(
        self,
        policy: Policy | str | None,
        schedule: Callable[[int], float] | None = None,
        run_dir: str | Path | None = None,
        *,
        framework: str,
        unit: str = "epoch",
        rename: Callable[[str], str] | None = None,
    ) -> None:
        from epochpilot.integrations._policy import resolve_policy

        #: ``spec``: "auto"/"early"/"forecast" when the policy was built here (None: the user's policy)
        self.policy, self.spec = resolve_policy(policy)
        self.driver = ScheduleDriver(schedule) if schedule is not None else None
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.framework = framework
        #: what one "epoch" of the policy is, for the verbose line ("epoch" or "evaluation"), and a plain note
        #: added to the stop message when the policy's epochs are not the trainer's (set by the adapter)
        self.unit = unit
        self.note = ""
        self._rename = rename
        self._target()
        self.reset()

    def _target(self) -> None:
        monitor, self.mode = policy_target(self.policy)
        #: the monitor under its history name (e.g. Keras' ``loss`` is ``train_loss`` in history.jsonl)
        self.monitor = self._rename(monitor) if self._rename is not None and monitor else monitor

    # -- a policy built here -------------------------------------------------------------------------
    def set_budget(self, epochs: int | None) -> None:
        """Tell a policy built here (``"forecast"``) the trainer's budget, in the policy's epochs; a user's
        policy keeps its own. No budget known for a policy that needs one raises a ValueError."""
        if self.spec is None or not hasattr(self.policy, "set_budget"):
            return
        if epochs is None or epochs < 1:
            raise ValueError(
                f"policy={self.spec!r} plans for the trainer's epoch budget, but {self.framework} gives none: "
                f"set the number of epochs, or pass a policy built with its own budget"
            )
        self.policy.set_budget(int(epochs))  # type: ignore[attr-defined]

    def fallback(self, metrics: Mapping[str, Any] | None = None) -> bool:
        """Without validation metrics (no ``val_*`` key in ``metrics``; None: the adapter knows there is no
        validation), a policy built here watches ``train_loss`` instead of ``val_loss``, as ``epochpilot.fit``
        does without validation data; its state carries over. True if it switched."""
        if self.spec is None or self.monitor == "train_loss":
            return False
        if metrics is not None and (
            "train_loss" not in metrics or any(str(k).startswith("val_") for k in metrics)
        ):
            return False
        from epochpilot.integrations._policy import build_named

        state = self.policy.state_dict()
        budget = getattr(self.policy, "budget", 1)
        self.policy = build_named(self.spec, "train_loss", budget)
        self.policy.load_state_dict(state)
        self._target()
        log.info(
            "epochpilot (%s): no validation metrics: the %r policy watches train_loss",
            self.framework,
            self.spec,
        )
        return True

    def reset(self) -> None:
        """Forget the run (the policy's state included): a fresh fit."""
        self.policy.reset()
        self.history: list[dict[str, Any]] = []
        self.best_epoch: int | None = None
        self.best_value: float | None = None
        self.stop_epoch: int | None = None
        self.stop_reason = Reason.CONTINUE
        self.stop_message = ""
        self.stop_why = ""
        self.stop_details = ""
        self.extended = 0
        self.decision: Decision | None = None
        self._columns: list[str] = []
        self._written = 0
        self._started = time.perf_counter()
        if self.driver is not None:
            for plateau in self.driver.plateaus:
                plateau.reset()

    # -- the policy ------------------------------------------------------------------------------------
    def observe(
        self, row: Mapping[str, Any], extra: Mapping[str, Any] | None = None, write: bool = True
    ) -> Decision:
        """Feed one epoch to the policy (and the schedule's plateaus); record the row; return the decision."""
        row = {k: v for k, v in row.items() if v is not None}
        epoch = int(row["epoch"])
        if self.history and int(self.history[-1]["epoch"]) >= epoch:
            raise ValueError(
                f"epoch {epoch} was already observed (last was {self.history[-1]['epoch']}): "
                f"epochs must increase; on resume, load the saved state before training"
            )
        metrics = {**(extra or {}), **row}
        try:
            decision = self.policy.update(epoch, metrics)
        except KeyError as exc:
            hint = f" ({self.framework} logged: {', '.join(sorted(metrics))})"
            raise KeyError(f"{exc.args[0] if exc.args else exc}{hint}") from None
        if self.driver is not None:
            self.driver.observe(metrics)
        self.decision = decision
        self.history.append(row)
        if decision.improved or (decision.best_epoch is not None and self.best_epoch is None):
            self.best_epoch, self.best_value = decision.best_epoch, decision.best_value
        if decision.stop:
            self.stop_epoch, self.stop_reason = epoch, decision.reason
            self.stop_message = self._with_note(decision)
            # the reason clause alone and the numbers behind it (policies that give them)
            self.stop_why = str(getattr(decision, "why", "") or "")
            self.stop_details = str(getattr(decision, "details", "") or "")
            log.info("epochpilot (%s) epoch %d: %s", self.framework, epoch, self.stop_message)
        else:
            log.debug("epochpilot (%s) epoch %d: %s", self.framework, epoch, decision.message)
        if write:
            self.flush()
        return decision

    def _with_note(self, decision: Decision) -> str:
        """The decision's message with the adapter's note after its reason clause (or at the end)."""
        message = decision.message
        if not self.note:
            return message
        clause = str(getattr(decision, "why", "") or "").strip().rstrip(".")
        if clause and clause in message:
            return message.replace(clause, f"{clause} ({self.note})", 1)
        return f"{message} ({self.note})"

    def update_last(self, extra: Mapping[str, Any]) -> None:
        """Add keys the framework computes after validation (e.g. Lightning's epoch training metrics) to the
        last row, without changing keys the policy already saw."""
        if self.history:
            row = self.history[-1]
            row.update({k: v for k, v in extra.items() if k not in row and v is not None})

    # -- the run directory -----------------------------------------------------------------------------
    def start(self) -> None:
        """Create the run dir and rewrite history files from the (possibly resumed) history."""
        self._started = time.perf_counter()
        if self.run_dir is None:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._columns = []
        for row in self.history:
            self._columns.extend(k for k in row if k not in self._columns)
        _write_atomic(self.run_dir / "history.jsonl", "".join(map(_json_line, self.history)))
        _write_atomic(self.run_dir / "history.csv", self._csv(self.history))
        self._written = len(self.history)

    def flush(self) -> None:
        """Append rows not yet written to ``history.jsonl`` / ``history.csv`` and flush them."""
        if self.run_dir is None or self._written >= len(self.history):
            return
        if not (self.run_dir / "history.jsonl").is_file():
            self.start()
            return
        rows = self.history[self._written :]
        with open(self.run_dir / "history.jsonl", "a", encoding="utf-8") as fh:
            fh.write("".join(map(_json_line, rows)))
        new = [k for row in rows for k in row if k not in self._columns]
        if new:
            self._columns.extend(dict.fromkeys(new))
            _write_atomic(self.run_dir / "history.csv", self._csv(self.history))
        else:
            with open(self.run_dir / "history.csv", "a", encoding="utf-8", newline="") as fh:
                fh.write(self._csv(rows, header=False))
        self._written = len(self.history)

    def _csv(self, rows: list[dict[str, Any]], header: bool = True) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self._columns, restval="", lineterminator="\n")
        if header:
            writer.writeheader()
        for row in rows:
            writer.writerow({k: "NaN" if _nonfinite(v) else v for k, v in row.items()})
        return buf.getvalue()

    def summary(self, **info: Any) -> dict[str, Any]:
        """The ``summary.json`` contents; ``info`` fills what the framework knows (max_epochs, batch_size...)."""
        import epochpilot

        last = self.history[-1] if self.history else {}
        monitor = self.monitor
        if self.stop_epoch is None:
            reason, message = (
                info.pop("stop_reason", Reason.MAX_EPOCHS.value),
                info.pop("stop_message", "trained every epoch it was given"),
            )
        else:
            reason, message = self.stop_reason.value, self.stop_message
            info.pop("stop_reason", None), info.pop("stop_message", None)
        summary = {
            "monitor": monitor,
            "mode": self.mode,
            "best_epoch": self.best_epoch,
            "best_value": self.best_value,
            "stopped_epoch": int(last.get("epoch", 0)),
            "stop_reason": reason,
            "stop_message": message,
            "stop_details": (self.stop_details or None) if self.stop_epoch is not None else None,
            "max_epochs": None,
            "extended_by": self.extended,
            "epochs_run": len(self.history),
            "total_steps": last.get("step"),
            "steps_per_epoch": None,
            "batch_size": None,
            "n_train": None,
            "n_val": None,
            "elapsed_s": time.perf_counter() - self._started,
            "epochpilot_version": getattr(epochpilot, "__version__", "0"),
            "framework": self.framework,
            "policy": repr(self.policy),
            "final_metrics": next(
                (row for row in self.history if row.get("epoch") == self.best_epoch), None
            ),
        }
        summary.update(info)
        return summary

    def finish(self, report: bool = True, **info: Any) -> dict[str, Any]:
        """Flush the history, write ``summary.json`` and (``report=True``) ``report.html``; return the summary."""
        summary = self.summary(**info)
        if self.run_dir is None:
            return summary
        self.flush()
        write_json_atomic(self.run_dir / "summary.json", summary)
        if report and self.history:
            from epochpilot.report import write_report

            try:
                write_report(self.run_dir)
            except Exception as exc:  # noqa: BLE001 - a failed plot must not lose the trained model
                log.warning("epochpilot: report for %s not written (%s)", self.run_dir, exc)
        return summary

    # -- state -----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-safe, versioned: the policy's state, the history, the best epoch and the stop record."""
        return {
            "format": f"epochpilot.integrations.{self.framework}",
            "version": STATE_VERSION,
            "policy": self.policy.state_dict(),
            "history": _sanitize(copy.deepcopy(self.history)),
            "best_epoch": self.best_epoch,
            "best_value": _sanitize(self.best_value),
            "stop_epoch": self.stop_epoch,
            "stop_reason": self.stop_reason.value,
            "stop_message": self.stop_message,
            "extended": self.extended,
            "schedule": self.driver.state_dict() if self.driver is not None else [],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output (from any of the three adapters); wrong keys raise ValueError."""
        if not isinstance(state, Mapping) or set(state) != _STATE_KEYS:
            found = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(
                f"epochpilot adapter state must have keys {sorted(_STATE_KEYS)}, got {found}"
            )
        if state["version"] != STATE_VERSION:
            raise ValueError(
                f"epochpilot adapter state version {state['version']!r} is not supported "
                f"(expected {STATE_VERSION})"
            )
        self.policy.load_state_dict(state["policy"])
        if self.driver is not None:
            self.driver.load_state_dict(list(state["schedule"]))
        self.history = [dict(row) for row in state["history"]]
        self.best_epoch, self.best_value = state["best_epoch"], state["best_value"]
        self.stop_epoch = state["stop_epoch"]
        self.stop_reason = Reason(state["stop_reason"])
        self.stop_message = state["stop_message"]
        self.extended = int(state["extended"])
        self._written = 0


def _nonfinite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _json_line(row: Mapping[str, Any]) -> str:
    return json.dumps(_sanitize(dict(row)), allow_nan=False) + "\n"

"""What a fit hands back and leaves behind: :class:`FitResult`, the ``summary.json`` record (how the run
ended, and the settings that ran) and the run's ``report.html``."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from epochpilot.core.stopping.base import Reason
from epochpilot.train.branches import branch_records
from epochpilot.train.cooldown import epochs_trained, kept_from

__all__ = ["FitResult", "run_summary", "version", "write_run_report"]

log = logging.getLogger("epochpilot")


@dataclass
class FitResult:
    """What a fit returns: the model holding the best weights, the history and why training ended."""

    model: torch.nn.Module
    history: list[dict[str, Any]]
    best_epoch: int | None
    best_value: float | None
    stopped_epoch: int
    stop_reason: Reason
    stop_message: str
    run_dir: Path | None
    monitor: str
    mode: str
    total_steps: int = 0
    elapsed_s: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)
    #: every epoch trained, a partial last epoch as its share (cooldown included)
    epochs_trained: float = 0.0
    #: where the kept weights were trained: "trunk" or "cooldown from epoch E" (E: the epoch it forked after)
    kept_from: str = "trunk"
    #: one dict per cooldown branch (``cooldown="sweep"`` / ``"on_stop"``): fork, length, best value and epoch
    branches: list[dict[str, Any]] = field(default_factory=list)
    #: ``run_dir/report.html`` when it was written (``report=True``, the default, with a ``run_dir``)
    report: Path | None = None

    @property
    def best_row(self) -> dict[str, Any] | None:
        """The history row of the best epoch (None when nothing improved)."""
        for row in self.history:
            if row.get("epoch") == self.best_epoch:
                return row
        return None


def version() -> str:
    """epochpilot's version string."""
    import epochpilot

    return getattr(epochpilot, "__version__", "0")


def run_summary(
    st: Any,
    *,
    cfg: Any,
    budget: Any,
    train: Any,
    val: Any,
    world_size: int,
    started: float,
    records: dict[str, Any],
    batching: Any = None,
) -> dict[str, Any]:
    """``summary.json``: how the run ended (state ``st``), its budget, and what ran (``records``: ``train``,
    config.toml's ``[train]``, as ``settings``; the ``optimizer``, ``stopper`` and ``schedule`` records;
    ``batching``: the micro-batch, accumulation and effective batch, see ``train.batching``)."""
    return {
        "monitor": st.monitor,
        "mode": st.mode,
        "best_epoch": st.best_epoch,
        "best_value": st.best_value,
        "stopped_epoch": st.epochs_done,
        "stop_reason": st.stop_reason.value,
        "stop_message": st.stop_message,
        "stop_details": st.stop_details,
        "max_epochs": budget.epochs,  # as asked (or as a step/time budget set it)
        "extended_by": max(0, st.max_epochs - budget.epochs),
        "epochs_run": len(st.history),
        "epochs_trained": epochs_trained(st),
        "kept_from": kept_from(st),
        "cooldown": cfg.cooldown,
        "branches": branch_records(st),
        "total_steps": st.step,
        "steps_per_epoch": st.steps_per_epoch,
        "batch_size": cfg.batch_size,
        "batch": batching.record() if batching is not None else None,
        "n_train": train.n_samples,
        "n_val": val.n_samples if val is not None else None,
        "elapsed_s": time.perf_counter() - started,
        "budget_kind": budget.kind,
        "budget_detail": budget.summary(
            st.steps_per_epoch, extended=max(0, st.max_epochs - budget.epochs)
        ),
        "epochpilot_version": version(),
        "world_size": world_size,
        "final_metrics": next((r for r in st.history if r.get("epoch") == st.best_epoch), None),
        "settings": records["train"],
        **{k: v for k, v in records.items() if k != "train"},
    }


def write_run_report(run_dir: Path) -> Path | None:
    """``run_dir/report.html`` via :func:`epochpilot.report.write_report`; a failure is one warning line (the
    run is complete and recorded without it), never an error."""
    try:
        from epochpilot.report import write_report

        return write_report(run_dir)
    except Exception as exc:  # noqa: BLE001 - a failed plot must not lose the trained model
        text = " ".join(str(exc).split()) or type(exc).__name__
        log.warning(
            "report.html not written (%s); the run is complete: write it with "
            "epochpilot.write_report(%r), or pass report=False to skip it",
            text,
            str(run_dir),
        )
        return None

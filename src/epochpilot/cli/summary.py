"""The end-of-run summary table shared by ``demo``, ``train`` and ``resume``."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _used_cooldown(fit: Any) -> bool:
    """True when the run trained cooldown branches (``cooldown`` set, or seen in its result or history)."""
    summary = getattr(fit, "summary", None)
    summary = summary if isinstance(summary, dict) else {}
    kept_from = getattr(fit, "kept_from", None)
    return bool(
        getattr(fit, "cooldown", None)
        or summary.get("cooldown")
        or summary.get("branches")
        or (isinstance(kept_from, str) and kept_from != "trunk")
        or any("branch" in row for row in getattr(fit, "history", None) or [])
    )


def _loss_text(key: str, value: Any, scale: dict[str, Any] | None) -> str:
    """A loss with its unit for a regression job (on the standardised target), else the plain number."""
    from epochpilot.core.scores import loss_note

    note = loss_note(value, scale) if key.endswith("loss") else ""
    if key.startswith("train_") and note:  # its MSE in target units is the val row's business
        note = note.split(";")[0]
    return f"{_fmt(value)} ({note})" if note else _fmt(value)


def print_summary(result: Any, console: Console | None = None) -> None:
    """Print why training stopped, the best epoch and its metrics (with cooldown branches: where the kept
    model came from and the epochs trained), the kept model's validation and test scores (R², MAE and RMSE
    in the target's units for regression, whose losses are labelled standardised) and the report path."""
    from epochpilot.core.scores import score_rows

    console = console or Console(soft_wrap=True)
    fit = result.fit
    task = getattr(result, "task", None)
    scale = getattr(result, "target_scale", None)
    target = scale.get("target") if isinstance(scale, dict) else None
    val_metrics = getattr(result, "val_metrics", None) or {}
    best_row = next((row for row in fit.history if row.get("epoch") == fit.best_epoch), {})
    table = Table(title="epochpilot run", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    reason = getattr(fit.stop_reason, "value", fit.stop_reason)
    table.add_row("stopped", f"epoch {fit.stopped_epoch}: {reason}")
    table.add_row("why", str(fit.stop_message))
    monitor = getattr(fit, "monitor", None)
    best = _fmt(fit.best_value)
    if isinstance(monitor, str) and monitor:
        unit = ", standardised target" if scale and monitor.endswith("loss") else ""
        best = f"{monitor} {best}{unit}"
    table.add_row("best epoch", f"{fit.best_epoch} ({best}; these weights were kept)")
    if _used_cooldown(fit):
        table.add_row("kept from", str(getattr(fit, "kept_from", "trunk")))
        trained = getattr(fit, "epochs_trained", None)
        if isinstance(trained, (int, float)) and not isinstance(trained, bool):
            table.add_row("epochs trained", f"{trained:.1f} (cooldown branches included)")
    for key in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
        if key in best_row and not (key == "val_accuracy" and "accuracy" in val_metrics):
            table.add_row(key, _loss_text(key, best_row[key], scale))
    skip = ("n", "mse", "loss")  # the history's val_loss (labelled) says these already
    for key, text in score_rows(val_metrics, task=task, target=target, prefix="val_", skip=skip):
        table.add_row(key, text)
    for key, text in score_rows(
        result.test_metrics, task=task, target=target, prefix="test_", skip=("n", "mse")
    ):
        table.add_row(key, text)
    table.add_row("budget", result.budget_text)
    batch = (getattr(fit, "summary", None) or {}).get("batch")
    if isinstance(batch, dict) and (batch.get("chosen") == "auto" or batch.get("shrinks")):
        shrinks = len(batch.get("shrinks") or [])
        table.add_row(
            "batch",
            f"micro-batch {batch.get('micro_batch')} x {batch.get('accumulation')} = effective batch "
            f"{batch.get('effective_batch')} ({batch.get('chosen')}"
            + (f"; {shrinks} out-of-memory shrink(s)" if shrinks else "")
            + ")",
        )
    table.add_row("run directory", str(result.run_dir))
    if result.report is not None:
        table.add_row("report", str(result.report))
    console.print(table)

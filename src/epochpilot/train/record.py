"""Records of a run: ``history.jsonl`` + ``history.csv`` (appended and flushed every epoch), ``summary.json``,
``config.toml`` and TensorBoard scalars. Only rank 0 writes. Formats: see the run-directory contract."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from epochpilot._files import atomic_open
from epochpilot.train.events import Callback, TrainState
from epochpilot.train.serial import json_text, sanitize

__all__ = ["HistoryWriter", "TensorBoardLogger", "atomic_write_text", "write_summary"]


def atomic_write_text(path: Path, text: str, sync: bool = True) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename: a kill or a full
    disk leaves the old file whole (and no temporary file behind); ``sync`` fsyncs it before the rename."""
    with atomic_open(path, "w", sync=sync, encoding="utf-8", newline="") as fh:
        fh.write(text)


def _csv_value(value: Any) -> Any:
    if value is None:
        return "NaN"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


class HistoryWriter(Callback):
    """Appends each epoch's row to ``history.jsonl`` and ``history.csv`` and flushes them.

    The CSV header is the union of keys in first-seen order; a row bringing a new key rewrites the CSV.
    On resume the files are rewritten from the checkpoint's history, so rows of epochs that a kill cut short
    are never duplicated.
    """

    state_key = "history_writer"

    def __init__(self, run_dir: Path) -> None:
        self.jsonl = Path(run_dir) / "history.jsonl"
        self.csv = Path(run_dir) / "history.csv"
        self.columns: list[str] = []
        self.n_checks = 0

    def reset(
        self,
        history: Sequence[Mapping[str, Any]],
        checks: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Rewrite both files so they hold exactly ``history`` (and ``checks.jsonl`` the validations, if any)."""
        self.checks = self.jsonl.with_name("checks.jsonl")
        self.n_checks = len(checks or ())
        if checks:
            atomic_write_text(
                self.checks,
                "".join(json.dumps(sanitize(dict(r)), allow_nan=False) + "\n" for r in checks),
            )
        elif self.checks.exists():
            self.checks.unlink()
        self.columns = []
        for row in history:
            self.columns.extend(k for k in row if k not in self.columns)
        atomic_write_text(
            self.jsonl,
            "".join(json.dumps(sanitize(dict(r)), allow_nan=False) + "\n" for r in history),
        )
        atomic_write_text(self.csv, self._csv_text(history))

    def _csv_text(self, rows: Sequence[Mapping[str, Any]], header: bool = True) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, restval="", lineterminator="\n")
        if header:
            writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(v) for k, v in row.items()})
        return buf.getvalue()

    def on_epoch_start(self, state: TrainState) -> None:
        if state.is_main and state.val_every and self.n_checks > len(state.checks_log):
            self.reset(state.history, state.checks_log)  # a NaN rollback discarded some validations

    def on_validation_end(self, state: TrainState) -> None:
        if state.val_every and state.is_main:  # every validation, mid-epoch ones included
            self.n_checks += 1
            with open(self.jsonl.with_name("checks.jsonl"), "a", encoding="utf-8") as fh:
                fh.write(json.dumps(sanitize(dict(state.row)), allow_nan=False) + "\n")

    def on_epoch_end(self, state: TrainState) -> None:
        if not state.is_main or not state.history:
            return
        row = state.history[-1]
        with open(self.jsonl, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(sanitize(dict(row)), allow_nan=False) + "\n")
            fh.flush()
        new = [k for k in row if k not in self.columns]
        if new:
            self.columns.extend(new)
            atomic_write_text(self.csv, self._csv_text(state.history))
        else:
            with open(self.csv, "a", encoding="utf-8", newline="") as fh:
                fh.write(self._csv_text([row], header=False))
                fh.flush()


def write_summary(run_dir: Path, summary: Mapping[str, Any], sync: bool = True) -> None:
    """Write ``summary.json`` atomically (non-finite floats as null). Mid-run rewrites (``sync=False``, after
    each checkpoint) skip the fsync and the indentation, which would need the slow pure-Python encoder."""
    if sync:
        text = json.dumps(sanitize(dict(summary)), indent=1, allow_nan=False)
    else:
        text = json_text(dict(summary))
    atomic_write_text(Path(run_dir) / "summary.json", text + "\n", sync=sync)


class TensorBoardLogger(Callback):
    """Scalars (losses, metrics, lr, grad norm, throughput) per epoch under ``run_dir/tb``, by epoch number."""

    state_key = "tensorboard"
    _SKIP = ("epoch", "step")

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = Path(log_dir)
        self.writer: Any = None

    def on_fit_start(self, state: TrainState) -> None:
        if state.is_main and self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=state.epochs_done + 1)

    def on_epoch_end(self, state: TrainState) -> None:
        if self.writer is None or not state.history:
            return
        row = state.history[-1]
        for key, value in row.items():
            if key in self._SKIP or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            group = key.split("_", 1)
            tag = (
                f"{group[1]}/{group[0]}"
                if group[0] in ("train", "val") and len(group) == 2
                else key
            )
            self.writer.add_scalar(tag, value, global_step=row["epoch"])
        self.writer.flush()

    def on_fit_end(self, state: TrainState) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

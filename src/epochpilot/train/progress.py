"""A rich progress bar: epoch, batches with ETA, last loss, lr and the best value so far. Off when not a TTY."""

from __future__ import annotations

import sys
import time
from typing import Any

from epochpilot.train.events import Callback, TrainState

__all__ = ["ProgressBar", "want_progress"]


def want_progress(setting: bool | None) -> bool:
    """``progress=None`` means: on when stderr is a terminal."""
    if setting is None:
        return sys.stderr.isatty()
    return setting


class ProgressBar(Callback):
    """Shows ``epoch e/E [bar] batch b/B ETA loss lr best``; the displayed loss is refreshed a few times a second
    (``refresh_s``), and on a GPU read from an asynchronous copy, so the bar adds no device sync."""

    state_key = "progress"

    def __init__(self, refresh_s: float = 0.25) -> None:
        self.refresh_s = refresh_s
        self.progress: Any = None
        self.task: Any = None
        self._last = 0.0
        self._pending: Any = None  # (host copy, CUDA event) of a loss on its way to the host
        self._shown: float | None = None

    def on_fit_start(self, state: TrainState) -> None:
        if not state.is_main:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}/{task.fields[max_epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=Console(stderr=True),
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            "train",
            total=state.batches_per_epoch,
            epoch=state.epochs_done + 1,
            max_epochs=state.max_epochs,
            info="",
        )

    def _loss(self, loss: Any) -> float | None:
        """The last loss to show. On a GPU it is copied to host memory without waiting, and shown at the next
        refresh once the copy is done, so the bar never stalls the device; elsewhere it is read directly."""
        if not getattr(loss, "is_cuda", False):
            return None if loss is None else float(loss)
        import torch

        pending = self._pending
        if pending is not None and pending[1].query():
            self._shown, pending = float(pending[0]), None
        if pending is None:
            host = torch.empty((), dtype=loss.dtype, pin_memory=True)
            host.copy_(loss.detach(), non_blocking=True)
            done = torch.cuda.Event()
            done.record()
            pending = (host, done)
        self._pending = pending
        return self._shown

    def _info(self, state: TrainState) -> str:
        parts = []
        loss = self._loss(state.last_loss)
        if loss is not None:
            parts.append(f"loss {loss:.4g}")
        if state.optimizer is not None:
            parts.append(f"lr {state.optimizer.param_groups[0]['lr']:.3g}")
        if state.best_value is not None:
            parts.append(f"best {state.monitor} {state.best_value:.4g} @ {state.best_epoch}")
        return "  ".join(parts)

    def on_epoch_start(self, state: TrainState) -> None:
        if self.progress is not None:
            self.progress.reset(
                self.task,
                total=state.batches_per_epoch,
                completed=state.batch,
                epoch=state.epoch,
                max_epochs=state.max_epochs,
                info=self._info(state),
            )

    def on_step_end(self, state: TrainState) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if now - self._last >= self.refresh_s:
            self._last = now
            self.progress.update(self.task, completed=state.batch, info=self._info(state))

    def on_epoch_end(self, state: TrainState) -> None:
        if self.progress is not None:
            self.progress.update(
                self.task, completed=state.batches_per_epoch, info=self._info(state)
            )

    def on_fit_end(self, state: TrainState) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

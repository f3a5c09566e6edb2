"""The loop's micro-batches: a batch run in ``splits`` parts with the batch mean's gradient, and the
recovery from an out-of-memory in a training step (``on_oom="shrink"``, see ``train.batching``)."""

from __future__ import annotations

import contextlib
import gc
import logging
from typing import Any

import torch

from epochpilot.train import distributed as D

__all__ = ["Splitting", "is_oom"]

log = logging.getLogger("epochpilot")
_OOM_WORDS = ("out of memory", "can't allocate memory")


def is_oom(exc: BaseException) -> bool:
    """True for torch's out-of-memory errors (CUDA, MPS, and the CPU allocator's RuntimeError)."""
    oom_type = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    if isinstance(exc, oom_type):
        return True
    return isinstance(exc, RuntimeError) and any(w in str(exc).lower() for w in _OOM_WORDS)


def free_memory(device: torch.device, collect: bool = True) -> None:
    """Give memory back: collect cycles (slow: ~0.1 s; needed after a failure, whose traceback may hold its
    tensors in reference cycles), then empty the CUDA/MPS caches."""
    if collect:
        gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


class Splitting:
    """Mixin for the Loop: micro-batches and the out-of-memory recovery."""

    _oom: tuple[int, Any] | None = None

    def _split_step(
        self,
        model: torch.nn.Module,
        xs: list[torch.Tensor],
        y: torch.Tensor,
        size: int,
        splits: int,
        last: bool,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Forward and backward of one batch as ``splits`` micro-batches, each loss weighted by its share of
        the batch (so the gradient is the batch mean's). Returns the batch's mean loss and its metric sums.
        A DDP-wrapped ``model`` all-reduces in the update's ``last`` micro-batch only."""
        scaler = self.scaler
        wrapped = hasattr(model, "no_sync")
        bs = len(y)
        pieces = [torch.tensor_split(t, splits) for t in (*xs, y)]
        total = torch.zeros((), dtype=torch.float64, device=y.device)
        sums = [torch.zeros((), dtype=torch.float64, device=y.device) for _ in self.metrics]
        for j in range(splits):
            *cx, cy = (p[j] for p in pieces)
            cn = len(cy)
            if cn == 0:
                continue
            sync = last and j == splits - 1
            quiet = model.no_sync() if wrapped and not sync else contextlib.nullcontext()
            with quiet:
                with self.autocast or contextlib.nullcontext():
                    out = model(*cx) if self.checked else self._first_forward(model, cx)
                    loss = self._loss(out, cy)
                scaled = loss * (cn / (bs * size))
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
            total += loss.detach() * cn
            od = out.detach()
            for k, fn in enumerate(self.metrics.values()):
                sums[k] += fn(od, cy) * cn
        return total / bs, sums

    def _save_acc(self) -> tuple[torch.Tensor, list[torch.Tensor], int]:
        """The epoch's sums at an update's start, for an out-of-memory later in the update to go back to."""
        acc = self.acc
        return acc["loss"].clone(), [m.clone() for m in acc["metrics"]], acc["n"]

    def _after_oom(self) -> None:
        """Undo the update an out-of-memory broke (gradients, the epoch's sums), free memory, double the
        splits (every process alike) and go back to the update's first batch."""
        start, saved = self._oom
        self._oom = None
        st = self.state
        self.optimizer.zero_grad(set_to_none=True)
        if saved is not None:
            loss, metrics, n = saved
            self.acc["loss"].copy_(loss)
            for m, old in zip(self.acc["metrics"], metrics, strict=True):
                m.copy_(old)
            self.acc["n"] = n
        free_memory(self.device)
        log.warning(self.batching.shrink(st.epoch, st.step))
        st.batch = start
        D.barrier(self.dist)

"""The learning-rate range test (Smith 2015; fastai's and Lightning's ``lr_find``).

The learning rate grows exponentially from ``start_lr`` to ``end_lr`` over ``num_steps`` optimizer updates,
one batch each, while the training loss is recorded (smoothed by a bias-corrected exponential moving
average, as fastai and Lightning do). The sweep stops early once the smoothed loss exceeds
``diverge_factor`` times the best seen, or is not finite. Afterwards the model's weights and buffers, the
optimizer's state (lrs included) and the model's train/eval mode are restored bit for bit.

Suggestion (``method="valley"``, the default, fastai's rule since v2.5): the longest strictly decreasing
run of smoothed losses (a longest decreasing subsequence) is the valley; the suggestion is the lr halfway
along it. ``method="steepest"`` is Lightning's rule (most negative gradient of the smoothed loss, skipping
the first 10 and last point); ``method="minimum"`` is the lr of the lowest loss divided by 10.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from epochpilot._files import atomic_open

__all__ = ["LRFindResult", "lr_find", "suggest_lr"]

_METHODS = ("valley", "steepest", "minimum")


@dataclass(frozen=True)
class LRFindResult:
    """The sweep: lrs tried, smoothed and raw losses, the suggested lr and how the sweep ended."""

    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    raw_losses: tuple[float, ...]
    suggestion: float | None
    method: str
    diverged: bool

    def plot(self, path: str | Path) -> Path:
        """Write the loss-vs-lr curve (log lr axis, suggestion marked) as a PNG; returns the path."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 4))
        ax = fig.add_subplot()
        ax.plot(self.lrs, self.losses, label="smoothed loss")
        ax.plot(self.lrs, self.raw_losses, alpha=0.3, label="loss")
        if self.suggestion is not None:
            ax.axvline(
                self.suggestion,
                color="red",
                linestyle="--",
                label=f"suggestion {self.suggestion:.2e}",
            )
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.set_title(f"LR range test ({self.method})")
        finite = [v for v in self.losses if math.isfinite(v)]
        if finite:
            low, first = min(finite), finite[0]
            ax.set_ylim(low - 0.1 * abs(first - low), first + 0.5 * abs(first - low) + 1e-12)
        ax.legend()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "wb") as fh:  # a kill or a full disk leaves the old plot whole
            fig.savefig(fh, format="png", dpi=100)
        return path


def _valley(losses: np.ndarray) -> int:
    """Index halfway along the longest strictly decreasing subsequence of ``losses``."""
    n = len(losses)
    length = np.ones(n, dtype=int)
    start = np.arange(n)
    for i in range(1, n):
        lower = np.flatnonzero(losses[:i] > losses[i])
        if len(lower):
            j = lower[np.argmax(length[lower])]
            length[i], start[i] = length[j] + 1, start[j]
    end = int(np.argmax(length))
    return int(start[end] + (end - start[end]) // 2)


def suggest_lr(
    lrs: Iterable[float], losses: Iterable[float], method: str = "valley"
) -> float | None:
    """The suggested lr for a sweep (see module docstring); None when too few finite points."""
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    lr = np.asarray(list(lrs), dtype=float)
    loss = np.asarray(list(losses), dtype=float)
    keep = np.isfinite(loss)
    lr, loss = lr[keep], loss[keep]
    if len(loss) < 3:
        return None
    if method == "minimum":
        return float(lr[int(np.argmin(loss))] / 10)
    if method == "steepest":
        window = loss[10:-1] if len(loss) > 13 else loss
        offset = 10 if len(loss) > 13 else 0
        return float(lr[offset + int(np.argmin(np.gradient(window)))])
    return float(lr[_valley(loss)])


def _batches(data: Any, batch_size: int) -> Callable[[], Iterator[Any]]:
    """A factory of fresh iterators over batches: DataLoader/iterable as given, tensors or Dataset batched."""
    from torch.utils.data import DataLoader, Dataset, TensorDataset

    if isinstance(data, (tuple, list)) and data and all(isinstance(t, torch.Tensor) for t in data):
        data = TensorDataset(*data)
    if isinstance(data, Dataset) and not isinstance(data, torch.utils.data.IterableDataset):
        if len(data) == 0:  # type: ignore[arg-type]
            raise ValueError("data is empty: lr_find needs at least one batch")
        loader = DataLoader(data, batch_size=batch_size, shuffle=True)
        return lambda: iter(loader)
    if isinstance(data, Iterable):
        return lambda: iter(data)
    raise TypeError(
        f"data must be a DataLoader, Dataset or (X, y) tensors, got {type(data).__name__}"
    )


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to(b, device) for b in batch)
    return batch


def lr_find(
    model: torch.nn.Module,
    data: Any,
    *,
    loss_fn: Callable[..., torch.Tensor],
    optimizer: torch.optim.Optimizer | None = None,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    batch_size: int = 32,
    smooth: float = 0.98,
    diverge_factor: float = 4.0,
    method: str = "valley",
) -> LRFindResult:
    """Sweep the lr exponentially over ``num_steps`` updates and suggest one; model and optimizer are restored.

    ``data`` is a DataLoader (or any iterable of ``(inputs, targets)`` batches, re-iterated as needed), a
    Dataset, or ``(X, y)`` tensors (batched by ``batch_size``, shuffled). ``loss_fn(model(inputs), targets)``
    gives the loss. Without ``optimizer`` a fresh Adam is used.

    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> X = torch.randn(256, 4); y = X @ torch.tensor([1.0, -2.0, 0.5, 3.0])
    >>> result = lr_find(torch.nn.Linear(4, 1), (X, y[:, None]), loss_fn=torch.nn.functional.mse_loss)
    >>> 1e-7 < result.suggestion < 10
    True
    """
    if not (0 < start_lr < end_lr) or not math.isfinite(end_lr):
        raise ValueError(f"need 0 < start_lr < end_lr, got start_lr={start_lr}, end_lr={end_lr}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 2:
        raise ValueError(f"num_steps must be an int >= 2, got {num_steps!r}: 100-300 is typical")
    if not 0 <= smooth < 1:
        raise ValueError(
            f"smooth must be in [0, 1), got {smooth}: 0.98 is typical (0 = no smoothing)"
        )
    if not diverge_factor > 1:
        raise ValueError(f"diverge_factor must be > 1, got {diverge_factor}: 4 is typical")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    fresh = _batches(data, batch_size)
    params = list(model.parameters())
    device = params[0].device if params else torch.device("cpu")
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=start_lr)
    saved_model = {k: v.detach().clone() for k, v in model.state_dict().items()}
    saved_opt = copy.deepcopy(optimizer.state_dict())
    was_training = model.training
    lrs, losses, raw = [], [], []
    avg, best, diverged = 0.0, math.inf, False
    ratio = end_lr / start_lr
    try:
        model.train()
        batches = fresh()
        for i in range(num_steps):
            try:
                batch = next(batches)
            except StopIteration:
                batches = fresh()
                batch = next(batches, None)
                if batch is None:
                    raise ValueError("data is empty: lr_find needs at least one batch") from None
            inputs, targets = _to(batch, device)
            lr = start_lr * ratio ** (i / (num_steps - 1))
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad()
            loss = loss_fn(model(inputs), targets)
            value = float(loss.detach())
            lrs.append(lr)
            raw.append(value)
            if not math.isfinite(value):
                losses.append(math.inf)
                diverged = True
                break
            avg = smooth * avg + (1 - smooth) * value
            smoothed = avg / (1 - smooth ** (i + 1))
            losses.append(smoothed)
            best = min(best, smoothed)
            if i > 0 and smoothed > diverge_factor * best:
                diverged = True
                break
            loss.backward()
            optimizer.step()
    finally:
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_opt)
        model.train(was_training)
    return LRFindResult(
        lrs=tuple(lrs),
        losses=tuple(losses),
        raw_losses=tuple(raw),
        suggestion=suggest_lr(lrs, losses, method),
        method=method,
        diverged=diverged,
    )

"""Built-in metrics: ``fn(output, target) -> tensor`` computed per batch and averaged over samples."""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["METRICS", "accuracy", "resolve_metric"]


def accuracy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Fraction of correct predictions in a batch.

    Class scores ``(N, C)`` against class indices ``(N,)`` use the arg-max; one logit per sample against 0/1
    targets of the same shape thresholds at 0 (the logit of p = 0.5).
    """
    if output.ndim == target.ndim + 1:
        return (output.argmax(dim=-1) == target).float().mean()
    if output.shape == target.shape:
        return ((output > 0).to(target.dtype) == target).float().mean()
    raise ValueError(
        f"accuracy: output shape {tuple(output.shape)} does not fit target shape {tuple(target.shape)}; "
        f"give class scores (N, C) with labels (N,) or one logit per target"
    )


#: metrics that can be named by string in ``metrics={"accuracy": "accuracy"}``.
METRICS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"accuracy": accuracy}


def resolve_metric(name: str, fn: object) -> Callable:
    """Turn a metric spec (callable or built-in name) into a callable; unknown names raise a ValueError."""
    if callable(fn):
        return fn
    if isinstance(fn, str) and fn in METRICS:
        return METRICS[fn]
    known = ", ".join(sorted(METRICS))
    raise ValueError(
        f"metrics[{name!r}] = {fn!r} is not a callable or a built-in metric name ({known})"
    )

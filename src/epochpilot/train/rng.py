"""Every RNG a run draws from (Python, numpy, torch CPU and CUDA), as plain tensors and containers that a
``weights_only`` load accepts, and back: what makes a resumed run draw the numbers it would have drawn."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["get_rng", "set_rng"]


def get_rng() -> dict[str, Any]:
    """Python, numpy and torch (CPU + CUDA) RNG states as plain tensors/containers (weights_only-safe)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    out: dict[str, Any] = {
        # the 625 words as one tensor: pickling them as Python ints cost ~0.3 ms per checkpoint (and numpy
        # converts the tuple 3x faster than torch.tensor)
        "python": [
            version,
            torch.from_numpy(np.fromiter(internal, dtype=np.int64, count=len(internal))),
            gauss,
        ],
        "numpy": [
            name,
            torch.from_numpy(keys.astype(np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng(state: dict[str, Any]) -> None:
    """Restore :func:`get_rng` output."""
    version, internal, gauss = state["python"]
    if isinstance(internal, torch.Tensor):
        internal = internal.tolist()
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])

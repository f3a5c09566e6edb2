"""Old path of :mod:`epochpilot.core.schedules` (moved in the package layout of issue 16): the same names, plus
``to_torch`` (the torch adapter, now ``epochpilot.train.lr.to_torch``), loaded on first use so that importing
this module stays free of torch. Each old submodule (``epochpilot.schedules.wsd``...) is the new module itself.
"""

from __future__ import annotations

import importlib
from typing import Any

from epochpilot.core.schedules import (
    WSD,
    Constant,
    Cosine,
    CosineWave,
    ExponentialDecay,
    Join,
    LinearDecay,
    MultiStepDecay,
    OneCycle,
    ReduceOnPlateau,
    Scaled,
    Schedule,
    StepDecay,
    Warmup,
    cosine_with_warmup,
    linear_with_warmup,
    parse,
    peak,
    plateaus,
    sample,
    simulate,
)

__all__ = [
    "Constant",
    "Cosine",
    "CosineWave",
    "ExponentialDecay",
    "Join",
    "LinearDecay",
    "MultiStepDecay",
    "OneCycle",
    "ReduceOnPlateau",
    "Scaled",
    "Schedule",
    "StepDecay",
    "WSD",
    "Warmup",
    "cosine_with_warmup",
    "linear_with_warmup",
    "parse",
    "peak",
    "plateaus",
    "sample",
    "simulate",
    "to_torch",
]


def __getattr__(name: str) -> Any:
    """``to_torch`` from the torch side, on first use (PEP 562)."""
    if name == "to_torch":
        return importlib.import_module("epochpilot.train.lr").to_torch
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

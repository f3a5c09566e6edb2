"""Learning-rate schedules: frozen, picklable functions of the optimizer step (counted from 0).

Every schedule is a frozen dataclass called as ``schedule(step) -> lr``; warmup wraps any schedule, ``Join``
chains them, ``ReduceOnPlateau.wrap`` scales them by a metric-driven multiplier. ``epochpilot.train.lr.to_torch``
turns one into a torch LR scheduler stepped once per optimizer update. Pure: standard library only (no torch).

Example::

    >>> from epochpilot.core.schedules import Cosine, Warmup, simulate
    >>> lrs = simulate(Warmup(Cosine(0.1, total_steps=90), steps=10), 100)
    >>> round(lrs[0], 4), round(lrs[10], 4), round(lrs[-1], 6)
    (0.001, 0.1, 3e-05)
"""

from __future__ import annotations

from epochpilot.core.schedules.core import (
    Constant,
    Cosine,
    ExponentialDecay,
    Join,
    MultiStepDecay,
    OneCycle,
    Scaled,
    Schedule,
    StepDecay,
    Warmup,
)
from epochpilot.core.schedules.plateau import ReduceOnPlateau, plateaus
from epochpilot.core.schedules.presets import (
    CosineWave,
    LinearDecay,
    cosine_with_warmup,
    linear_with_warmup,
    parse,
    peak,
    sample,
    simulate,
)
from epochpilot.core.schedules.wsd import WSD

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
    "Schedule",
    "Scaled",
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
]

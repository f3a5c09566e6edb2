"""epochpilot: plan, run, stop and explain PyTorch training.

The pure parts (budget, schedules, stop policies, curve analysis) import on ``import epochpilot`` without
torch; the torch side (``Trainer``, ``fit``, ``load``, ...) and the report (matplotlib) import on first use, so a
Keras or JAX user of the stop policies never pays for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from epochpilot import budget
from epochpilot.curves import CurveReport, Phase, analyze
from epochpilot.plan import DataProfile, EpochPlan
from epochpilot.schedules import (
    Constant,
    Cosine,
    ExponentialDecay,
    Join,
    MultiStepDecay,
    OneCycle,
    ReduceOnPlateau,
    StepDecay,
    Warmup,
    simulate,
    to_torch,
)
from epochpilot.stopping import (
    EMA,
    AnyOf,
    Decision,
    EarlyStopping,
    Forecast,
    GeneralizationLoss,
    Policy,
    ProgressQuotient,
    Reason,
    Retention,
    UpStrips,
    auto_stopper,
)

__version__ = "0.1.0"

#: public names that live in modules importing torch or matplotlib: loaded on first access.
_LAZY = {
    "Trainer": "epochpilot.train",
    "TrainConfig": "epochpilot.train",
    "FitResult": "epochpilot.train",
    "fit": "epochpilot.train",
    "TrainingTerminated": "epochpilot.train",
    "accuracy": "epochpilot.train",
    "load": "epochpilot.predictor",
    "write_report": "epochpilot.report",
    "kfold_epochs": "epochpilot.select",
    "refit": "epochpilot.select",
    "EpochSelection": "epochpilot.select",
    "AuditReport": "epochpilot.audit",
    "lr_find": "epochpilot.train.lr_find",
    "LRFindResult": "epochpilot.train.lr_find",
    "MixedSampler": "epochpilot.mixed",
    "Stage": "epochpilot.mixed",
    "Stages": "epochpilot.mixed",
    "compare_runs": "epochpilot.report",
    "Predictor": "epochpilot.predictor",
}

__all__ = [
    "EMA",
    "AuditReport",
    "DataProfile",
    "AnyOf",
    "Constant",
    "Cosine",
    "CurveReport",
    "Decision",
    "EarlyStopping",
    "EpochPlan",
    "EpochSelection",
    "ExponentialDecay",
    "FitResult",
    "Forecast",
    "GeneralizationLoss",
    "Join",
    "LRFindResult",
    "MixedSampler",
    "MultiStepDecay",
    "OneCycle",
    "Phase",
    "Policy",
    "Predictor",
    "ProgressQuotient",
    "Reason",
    "ReduceOnPlateau",
    "Retention",
    "Stage",
    "Stages",
    "StepDecay",
    "TrainConfig",
    "Trainer",
    "TrainingTerminated",
    "UpStrips",
    "Warmup",
    "__version__",
    "accuracy",
    "analyze",
    "auto_stopper",
    "budget",
    "compare_runs",
    "fit",
    "kfold_epochs",
    "load",
    "lr_find",
    "refit",
    "simulate",
    "to_torch",
    "write_report",
]


def __getattr__(name: str) -> Any:
    """Import the torch- or matplotlib-backed public names on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'epochpilot' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

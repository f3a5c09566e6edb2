"""epochpilot: plan, run, stop and explain PyTorch training.

``import epochpilot`` imports nothing but this file: every public name is loaded from its module on first use
(PEP 562), so the ``epochpilot`` command answers ``--help`` and the user's mistakes without numpy or torch, a
Keras or JAX user of the stop policies never pays for torch, and the report (matplotlib) loads only when used.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module it lives in; loaded on first access.
_LAZY = {
    # pure parts (no torch)
    "CurveReport": "epochpilot.core.curves.analysis",
    "Phase": "epochpilot.core.curves.analysis",
    "analyze": "epochpilot.core.curves.analysis",
    "DataProfile": "epochpilot.core.plan",
    "EpochPlan": "epochpilot.core.plan",
    "Constant": "epochpilot.core.schedules",
    "Cosine": "epochpilot.core.schedules",
    "ExponentialDecay": "epochpilot.core.schedules",
    "Join": "epochpilot.core.schedules",
    "MultiStepDecay": "epochpilot.core.schedules",
    "OneCycle": "epochpilot.core.schedules",
    "ReduceOnPlateau": "epochpilot.core.schedules",
    "StepDecay": "epochpilot.core.schedules",
    "Warmup": "epochpilot.core.schedules",
    "simulate": "epochpilot.core.schedules",
    "to_torch": "epochpilot.train.lr",
    "EMA": "epochpilot.core.stopping",
    "AnyOf": "epochpilot.core.stopping",
    "Decision": "epochpilot.core.stopping",
    "EarlyStopping": "epochpilot.core.stopping",
    "Forecast": "epochpilot.core.stopping",
    "GeneralizationLoss": "epochpilot.core.stopping",
    "Policy": "epochpilot.core.stopping",
    "ProgressQuotient": "epochpilot.core.stopping",
    "Reason": "epochpilot.core.stopping",
    "Retention": "epochpilot.core.stopping",
    "UpStrips": "epochpilot.core.stopping",
    "auto_stopper": "epochpilot.core.stopping",
    # torch or matplotlib
    "Trainer": "epochpilot.train",
    "TrainConfig": "epochpilot.train",
    "FitResult": "epochpilot.train",
    "fit": "epochpilot.train",
    "TrainingTerminated": "epochpilot.train",
    "accuracy": "epochpilot.train",
    "load": "epochpilot.jobs.predictor",
    "write_report": "epochpilot.report",
    "kfold_epochs": "epochpilot.select.kfold",
    "refit": "epochpilot.select.kfold",
    "EpochSelection": "epochpilot.select.kfold",
    "AuditReport": "epochpilot.data.audit.report",
    "lr_find": "epochpilot.train.lr_find",
    "find_batch_size": "epochpilot.train.batch_size",
    "BatchChoice": "epochpilot.train.batch_size",
    "LRFindResult": "epochpilot.train.lr_find",
    "MixedSampler": "epochpilot.finetune.mixed",
    "Stage": "epochpilot.finetune.mixed",
    "Stages": "epochpilot.finetune.mixed",
    "compare_runs": "epochpilot.report",
    "Predictor": "epochpilot.jobs.predictor",
}

__all__ = [
    "EMA",
    "AuditReport",
    "BatchChoice",
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
    "find_batch_size",
    "fit",
    "kfold_epochs",
    "load",
    "lr_find",
    "refit",
    "simulate",
    "to_torch",
    "write_report",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time each name loads on first use
    from epochpilot.core import budget
    from epochpilot.core.curves.analysis import CurveReport, Phase, analyze
    from epochpilot.core.plan import DataProfile, EpochPlan
    from epochpilot.core.schedules import (
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
    )
    from epochpilot.core.stopping import (
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
    from epochpilot.data.audit.report import AuditReport
    from epochpilot.finetune.mixed import MixedSampler, Stage, Stages
    from epochpilot.jobs.predictor import Predictor, load
    from epochpilot.report import compare_runs, write_report
    from epochpilot.select.kfold import EpochSelection, kfold_epochs, refit
    from epochpilot.train import FitResult, TrainConfig, Trainer, TrainingTerminated, accuracy, fit
    from epochpilot.train.batch_size import BatchChoice, find_batch_size
    from epochpilot.train.lr import to_torch
    from epochpilot.train.lr_find import LRFindResult, lr_find


def __getattr__(name: str) -> Any:
    """Load a public name (or a submodule such as ``epochpilot.stopping``) on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
    elif not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(
            f"{__name__}.{name}"
        )  # ``import epochpilot; epochpilot.budget``
    else:
        raise AttributeError(f"module 'epochpilot' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

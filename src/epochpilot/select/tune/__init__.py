"""Hyperparameter tuning with Optuna: the study and its storage (study, storage, make), the search space
(space), per-epoch pruning with the stop policies (pruner, judge), k-fold objectives (cv), worker processes
(workers) and ``tune()`` itself (run).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from epochpilot.select.tune.run import (
        PRUNERS,
        SAMPLERS,
        SETTINGS_ATTR,
        SPACE_ATTR,
        EpochpilotPruner,
        JobObjective,
        Param,
        PruningCallback,
        TunedStudy,
        make_pruner,
        make_sampler,
        open_storage,
        parse_space,
        real_params,
        tune,
    )

__all__ = [
    "PRUNERS",
    "SAMPLERS",
    "SETTINGS_ATTR",
    "SPACE_ATTR",
    "EpochpilotPruner",
    "JobObjective",
    "Param",
    "PruningCallback",
    "TunedStudy",
    "make_pruner",
    "make_sampler",
    "open_storage",
    "parse_space",
    "real_params",
    "tune",
]


def __getattr__(name: str) -> Any:
    """A name of ``run`` on first use (PEP 562): importing a sibling module
    (``epochpilot.select.tune.space``) loads neither torch nor the study code."""
    if name in __all__:
        return getattr(importlib.import_module("epochpilot.select.tune.run"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

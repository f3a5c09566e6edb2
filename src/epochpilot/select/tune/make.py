"""Pruners and samplers by name (``tune(pruner="median", sampler="random")``) or as Optuna instances."""

from __future__ import annotations

from typing import Any

import optuna

from epochpilot.select.tune.pruner import EpochpilotPruner

__all__ = ["PRUNERS", "SAMPLERS", "make_pruner", "make_sampler"]

PRUNERS = ("epochpilot", "median", "hyperband", "none")
SAMPLERS = ("tpe", "random")


def make_pruner(pruner: Any) -> optuna.pruners.BasePruner:
    """A pruner from its name (epochpilot | median | hyperband | none) or an Optuna pruner instance."""
    if isinstance(pruner, optuna.pruners.BasePruner):
        return pruner
    if pruner is None or pruner == "none":
        return optuna.pruners.NopPruner()
    if pruner == "epochpilot":
        return EpochpilotPruner()
    if pruner == "median":
        return optuna.pruners.MedianPruner()
    if pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    raise ValueError(f"pruner={pruner!r} is unknown: use one of {', '.join(PRUNERS)}")


def make_sampler(sampler: Any, seed: int | None) -> optuna.samplers.BaseSampler:
    """A sampler from its name (tpe | random) or an Optuna sampler instance."""
    if isinstance(sampler, optuna.samplers.BaseSampler):
        return sampler
    if sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"sampler={sampler!r} is unknown: use one of {', '.join(SAMPLERS)}")

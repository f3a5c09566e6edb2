"""The adapters' ``policy`` argument: a stop policy, or None / a name for the same policies as
``epochpilot.fit(stopper=...)``, whose budget (when one is needed) comes from the framework's trainer.

Pure: standard library only (the stop policies are pure too).
"""

from __future__ import annotations

import inspect
from typing import Any

from epochpilot.core.stopping.base import Policy

__all__ = ["NAMES", "build_named", "resolve_policy"]

#: the policy names the adapters accept, as ``epochpilot.fit(stopper=...)`` does; None means "auto"
NAMES = ("auto", "early", "forecast")


def build_named(name: str, monitor: str, budget: int = 1) -> Policy:
    """The policy ``epochpilot.fit`` builds for ``stopper=name`` (``epochpilot.train.build.build_stopper``).

    ``"auto"`` is ``default_stopper`` (EarlyStopping, patience 10), ``"early"`` ``EarlyStopping(patience=5)``,
    ``"forecast"`` ``auto_stopper`` (reading ``train_loss`` too when the monitor is a validation metric) with
    no extension past ``budget``: the trainer's epoch budget is a hard cap, and the adapter sets the budget
    from the trainer when training starts (``set_budget``).
    """
    from epochpilot.core.stopping import EarlyStopping, auto_stopper, default_stopper

    if name == "auto":
        return default_stopper(monitor, "min")
    if name == "early":
        return EarlyStopping(monitor, mode="min", patience=5)
    from epochpilot.core.stopping.forecast import Forecast

    extra: dict[str, Any] = {"train_monitor": "train_loss"} if monitor != "train_loss" else {}
    if "max_extension" in inspect.signature(Forecast).parameters:
        extra["max_extension"] = (
            0.0  # never past the trainer's budget unless the user builds the policy
        )
    return auto_stopper(monitor, "min", budget=max(int(budget), 1), **extra)


def resolve_policy(spec: Any, monitor: str = "val_loss") -> tuple[Policy, str | None]:
    """``(policy, name)``: the user's policy with name None, or the policy built for None/"auto"/"early"/
    "forecast" on ``monitor`` with its name; anything else raises a TypeError naming what is accepted."""
    if spec is None:
        spec = "auto"
    if isinstance(spec, str) and spec in NAMES:
        return build_named(spec, monitor), spec
    if isinstance(spec, Policy):
        return spec, None
    shown = repr(spec) if isinstance(spec, str) else type(spec).__name__
    raise TypeError(
        "policy must be an epochpilot stop policy (e.g. EarlyStopping('val_loss', mode='min')), or "
        "None / 'auto' (the default, as in epochpilot.fit: EarlyStopping with patience 10 on val_loss), "
        f"'early' (patience 5) or 'forecast'; got {shown}"
    )

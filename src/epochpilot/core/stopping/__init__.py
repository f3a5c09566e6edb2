"""Stop policies: ``update(epoch, metrics) -> Decision``, pure (stdlib + numpy), framework-free.

Every policy takes 1-based epochs, holds floats only, has a JSON-safe versioned ``state_dict`` and a
``decide(history)`` that agrees with streaming ``update``.
"""

from __future__ import annotations

from epochpilot.core.stopping.auto import AutoStopper, BlowUpGuard, auto_stopper, default_stopper
from epochpilot.core.stopping.base import (
    STATE_VERSION,
    Decision,
    Policy,
    Reason,
    check_mode,
    get_metric,
    is_better,
)
from epochpilot.core.stopping.combine import AnyOf
from epochpilot.core.stopping.early import EarlyStopping
from epochpilot.core.stopping.forecast import Forecast
from epochpilot.core.stopping.prechelt import GeneralizationLoss, ProgressQuotient, UpStrips
from epochpilot.core.stopping.retention import Retention
from epochpilot.core.stopping.smoothing import EMA

__all__ = [
    "STATE_VERSION",
    "AnyOf",
    "AutoStopper",
    "BlowUpGuard",
    "Decision",
    "EMA",
    "EarlyStopping",
    "Forecast",
    "GeneralizationLoss",
    "Policy",
    "ProgressQuotient",
    "Reason",
    "Retention",
    "UpStrips",
    "auto_stopper",
    "default_stopper",
    "check_mode",
    "get_metric",
    "is_better",
]

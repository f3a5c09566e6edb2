"""Old path of :mod:`epochpilot.core.stopping` (moved in the package layout of issue 16): the same names. Each
old submodule (``epochpilot.stopping.early``...) is the new module itself.
"""

from __future__ import annotations

from epochpilot.core.stopping import (
    EMA,
    STATE_VERSION,
    AnyOf,
    AutoStopper,
    BlowUpGuard,
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
    check_mode,
    default_stopper,
    get_metric,
    is_better,
)

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

"""Choosing epochs and settings: k-fold epoch selection (kfold) and Optuna tuning with per-epoch pruning (tune/).

``epochpilot.select`` gives every public name of the module it was before (``kfold`` now), on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from epochpilot.select.kfold import (  # noqa: F401 - for type checkers; the names load on first use
        RULES,
        EpochSelection,
        choose_epoch,
        kfold_epochs,
        refit,
    )

#: every public name of the old module (its ``__all__`` and the public names outside it), loaded on first use
_NAMES = (
    "EpochSelection",
    "RULES",
    "choose_epoch",
    "kfold_epochs",
    "refit",
)

__all__ = [
    "EpochSelection",
    "kfold_epochs",
    "refit",
]


def __getattr__(name: str) -> Any:
    """A name of ``kfold`` on first use (PEP 562): importing a sibling module
    (``epochpilot.select.tune.space``) does not load the k-fold code."""
    if name in _NAMES:
        return getattr(importlib.import_module("epochpilot.select.kfold"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NAMES))

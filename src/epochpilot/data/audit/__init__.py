"""The data audit: exact and near-duplicate rows, leakage between splits, class balance.

load (inputs to a Split), near (near-duplicate index), report (``audit()`` and ``AuditReport``), render (rich
tables; imports nothing of the audit, so the report can call it without a cycle).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from epochpilot.data.audit.report import (
        AuditReport,
        DataError,
        Overlap,
        audit,
    )

__all__ = [
    "AuditReport",
    "DataError",
    "Overlap",
    "audit",
]


def __getattr__(name: str) -> Any:
    """A name of ``report`` on first use (PEP 562): importing a sibling module
    (``epochpilot.data.audit.render``) does not load pandas."""
    if name in __all__:
        return getattr(importlib.import_module("epochpilot.data.audit.report"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

"""What the report reads from one run directory (:class:`RunData`), apart from the reading itself (load.py),
so the modules that interpret a run (branches.py) can name the type without importing the loader."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from epochpilot.core.curves.analysis import CurveReport
from epochpilot.errors import EpochpilotError

__all__ = ["ReportError", "RunData"]


class ReportError(EpochpilotError, ValueError):
    """A run directory cannot be reported on; the message names the file and the fix."""


@dataclass
class RunData:
    """Everything the report reads from one run directory, plus the curve analysis of its monitor."""

    path: Path
    history: list[dict[str, Any]]
    summary: dict[str, Any]
    config: dict[str, Any] | None = None
    config_text: str | None = None
    notes: list[str] = field(default_factory=list)
    lr_steps: tuple[list[float], list[float]] | None = None
    monitor: str | None = None
    mode: str | None = None
    analysis: CurveReport | None = None
    label: str | None = None
    #: what acts in training only (``"dropout 0.1 (job.toml [model] dropout)"``), from job.toml/config.toml
    regularisers: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The run's name: ``label`` when set, else its directory's name."""
        return self.label or self.path.resolve().name

    @property
    def keys(self) -> list[str]:
        """History keys in first-seen order."""
        seen: dict[str, None] = {}
        for row in self.history:
            seen.update(dict.fromkeys(row))
        return list(seen)

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """(epochs, values) of ``key``, NaN where the value is null/non-numeric; rows lacking it skipped."""
        xs, ys = [], []
        for i, row in enumerate(self.history):
            if key in row:
                xs.append(int(row.get("epoch", i + 1)))
                ys.append(_num(row[key]))
        return xs, ys

    def has(self, key: str) -> bool:
        """True when ``key`` has at least one finite value."""
        return any(math.isfinite(v) for v in self.series(key)[1])

    def row_at(self, epoch: int | None) -> dict[str, Any] | None:
        """The history row of ``epoch`` (1-based), or None."""
        for i, row in enumerate(self.history):
            if int(row.get("epoch", i + 1)) == epoch:
                return row
        return None


def _num(v: Any) -> float:
    if isinstance(v, bool) or v is None:
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan

"""The learned attributes every adapter exposes (``best_epoch_``, ...), read from its ``PilotCore``.

Pure: no framework import.
"""

from __future__ import annotations

from typing import Any

from epochpilot.integrations._common import PilotCore

__all__ = ["PilotAttributes", "check_verbose"]


def check_verbose(verbose: object) -> bool:
    """``verbose`` as a bool (Keras' 0/1 accepted); anything else raises a TypeError."""
    if isinstance(verbose, bool):
        return verbose
    if isinstance(verbose, int) and verbose in (0, 1):
        return bool(verbose)
    raise TypeError(f"verbose must be True or False, got {verbose!r}")


class PilotAttributes:
    """The learned attributes every adapter exposes, read from its :class:`PilotCore` (``self.core``).

    For the Hugging Face adapter an "epoch" is one evaluation (see its docstring).
    """

    core: PilotCore

    @property
    def best_epoch_(self) -> int | None:
        """The best epoch so far (1-based), by the policy's monitor."""
        return self.core.best_epoch

    @property
    def best_value_(self) -> float | None:
        """The monitor's value at the best epoch."""
        return self.core.best_value

    @property
    def stopped_epoch_(self) -> int | None:
        """The epoch at which the policy said stop (1-based), or None."""
        return self.core.stop_epoch

    @property
    def history_(self) -> list[dict[str, Any]]:
        """The rows written to history.jsonl, one per epoch."""
        return self.core.history

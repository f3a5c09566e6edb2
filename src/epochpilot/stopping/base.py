"""The stop-policy contract shared by every policy: ``update(epoch, metrics) -> Decision``.

Pure: standard library and numpy only, so one policy serves PyTorch, Lightning, Keras and Hugging Face.
"""

from __future__ import annotations

import copy
import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Decision",
    "Policy",
    "Reason",
    "STATE_VERSION",
    "check_mode",
    "get_metric",
    "is_better",
]

#: Version of every policy's ``state_dict`` layout; bumped when a layout changes.
STATE_VERSION = 1

_MODES = ("min", "max")


class Reason(str, enum.Enum):
    """Why a policy stopped (or ``CONTINUE`` when it did not)."""

    CONTINUE = "continue"
    PATIENCE = "patience"
    BASELINE = "baseline"
    STOPPING_THRESHOLD = "stopping_threshold"
    DIVERGENCE = "divergence"
    NOT_FINITE = "not_finite"
    GENERALIZATION_LOSS = "generalization_loss"
    PROGRESS_QUOTIENT = "progress_quotient"
    UP_STRIPS = "up_strips"
    FORECAST = "forecast"
    BUDGET = "budget"
    RETENTION = "retention"
    MAX_EPOCHS = "max_epochs"
    MAX_TIME = "max_time"
    USER = "user"


@dataclass(frozen=True)
class Decision:
    """One policy answer: whether to stop, why, and the best epoch seen so far (1-based).

    ``extend_by`` > 0 asks the trainer for that many more epochs past its budget; ``policy`` names the
    policy that produced the decision (useful under ``AnyOf``).
    """

    stop: bool
    reason: Reason
    improved: bool
    best_epoch: int | None
    best_value: float | None
    message: str
    policy: str = ""
    extend_by: int = 0


def check_mode(mode: str) -> str:
    """Return ``mode`` if it is "min" or "max"; otherwise raise a ValueError naming the argument."""
    if mode not in _MODES:
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}: say which direction is better")
    return mode


def is_better(value: float, best: float | None, mode: str, min_delta: float = 0.0, rel: bool = False) -> bool:
    """True when ``value`` beats ``best`` by more than ``min_delta`` (absolute, or relative to |best|)."""
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    delta = abs(min_delta) * (abs(best) if rel else 1.0)
    if mode == "min":
        return value < best - delta
    return value > best + delta


def get_metric(metrics: Mapping[str, float], monitor: str) -> float:
    """Fetch ``metrics[monitor]`` as a float; a missing key raises KeyError listing the keys present."""
    try:
        value = metrics[monitor]
    except KeyError:
        present = ", ".join(sorted(map(str, metrics))) or "none"
        raise KeyError(
            f"monitor {monitor!r} is not in the metrics (present: {present}); "
            f"log it every epoch or monitor one of those"
        ) from None
    return float(value)


class Policy:
    """Base of every stop policy.

    Subclasses implement ``update`` and keep their mutable state in plain floats/ints/lists listed by
    ``_state_keys``; ``state_dict``/``load_state_dict``/``reset``/``decide`` come from here.
    """

    #: names of the attributes that make up the mutable state (JSON-safe values only).
    _state_keys: tuple[str, ...] = ()

    def update(self, epoch: int, metrics: Mapping[str, float]) -> Decision:  # pragma: no cover
        """Feed one epoch's metrics (epoch is 1-based) and return the decision after it."""
        raise NotImplementedError

    @property
    def name(self) -> str:
        """A short human name for messages, e.g. ``EarlyStopping(val_loss)``."""
        monitor = getattr(self, "monitor", None)
        return f"{type(self).__name__}({monitor})" if monitor else type(self).__name__

    def reset(self) -> None:
        """Forget everything seen so far (the constructor's arguments stay)."""
        fresh = self._fresh()
        for key in self._state_keys:
            setattr(self, key, copy.deepcopy(getattr(fresh, key)))

    def _fresh(self) -> Policy:
        """A new policy with the same constructor arguments and empty state."""
        clone = copy.copy(self)
        clone.__dict__ = copy.deepcopy(self.__dict__)
        clone._init_state()
        return clone

    def _init_state(self) -> None:  # pragma: no cover - subclasses override
        """Set the mutable state to its initial values."""

    def state_dict(self) -> dict[str, Any]:
        """The mutable state as a JSON-safe dict, tagged with the policy type and a format version."""
        state = {key: copy.deepcopy(getattr(self, key)) for key in self._state_keys}
        return {"policy": type(self).__name__, "version": STATE_VERSION, "state": state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore ``state_dict()`` output; unknown, missing or foreign keys raise a ValueError."""
        if not isinstance(state, Mapping) or set(state) != {"policy", "version", "state"}:
            raise ValueError("state must be a dict with keys 'policy', 'version', 'state' (from state_dict())")
        if state["policy"] != type(self).__name__:
            raise ValueError(f"state is for {state['policy']!r}, not {type(self).__name__!r}")
        if state["version"] != STATE_VERSION:
            raise ValueError(f"state version {state['version']!r} is not supported (expected {STATE_VERSION})")
        inner = state["state"]
        missing = set(self._state_keys) - set(inner)
        extra = set(inner) - set(self._state_keys)
        if missing or extra:
            raise ValueError(
                f"state keys do not match {type(self).__name__}: missing {sorted(missing)}, unknown {sorted(extra)}"
            )
        for key in self._state_keys:
            setattr(self, key, copy.deepcopy(inner[key]))

    def decide(self, history: Iterable[Mapping[str, float]]) -> Decision:
        """Recompute the decision from a whole history (one metrics dict per epoch, in order).

        Agrees with feeding the same history one epoch at a time through ``update`` on a fresh policy;
        stops feeding at the first epoch that says stop. An entry's ``"epoch"`` key, when present, is used as
        its epoch number; otherwise epochs count from 1.
        """
        fresh = self._fresh()
        decision: Decision | None = None
        for index, metrics in enumerate(history, start=1):
            epoch = int(metrics.get("epoch", index))
            decision = fresh.update(epoch, metrics)
            if decision.stop:
                break
        if decision is None:
            raise ValueError("history is empty: give at least one epoch of metrics")
        return decision

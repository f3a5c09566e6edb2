"""The stop-policy contract shared by every policy: ``update(epoch, metrics) -> Decision``.

Pure: standard library and numpy only, so one policy serves PyTorch, Lightning, Keras and Hugging Face.
"""

from __future__ import annotations

import copy
import enum
import inspect
import math
import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from epochpilot.core.stopping.wording import stop_sentence

__all__ = [
    "Decision",
    "Policy",
    "Reason",
    "STATE_VERSION",
    "check_epoch",
    "check_float",
    "check_lrs",
    "check_int",
    "check_mode",
    "fmt_value",
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
    MAX_STEPS = "max_steps"
    USER = "user"


@dataclass(frozen=True)
class Decision:
    """One policy answer: whether to stop, why, and the best epoch seen so far (1-based).

    ``message`` is one plain sentence; for a stop it says where, why and which epoch is kept ("Stopped at
    epoch 21: validation loss has not improved for 6 epochs. Kept epoch 15 (val_loss 0.145)."). ``details``
    holds the numbers behind it (the policy's own terms: thresholds, probabilities, counters). ``why`` is the
    reason clause of a stop alone ("validation loss has not improved for 6 epochs"), for callers that word
    the sentence around their own epoch numbers (empty when continuing). ``extend_by`` > 0 asks the trainer
    for that many more epochs past its budget (a trainer grants it only when its user allows extensions);
    ``policy`` names the policy that produced the decision (useful under ``AnyOf``).
    """

    stop: bool
    reason: Reason
    improved: bool
    best_epoch: int | None
    best_value: float | None
    message: str
    policy: str = ""
    extend_by: int = 0
    details: str = ""
    why: str = ""


def check_mode(mode: str) -> str:
    """Return ``mode`` if it is "min" or "max"; otherwise raise a ValueError naming the argument."""
    if mode not in _MODES:
        raise ValueError(
            f"mode must be 'min' or 'max', got {mode!r}: say which direction is better"
        )
    return mode


def check_int(name: str, value: Any, minimum: int = 0) -> int:
    """Return ``value`` as an int if it is a whole number >= ``minimum``; else raise naming ``name``."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})") from None
    if number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {number}")
    return number


def check_lrs(name: str, values: Any) -> list[float] | None:
    """A per-epoch learning-rate sequence as floats (None stays None): non-empty, every entry a finite
    number >= 0; otherwise a ValueError naming ``name`` and the bad entry."""
    if values is None:
        return None
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or not len(values):
        raise ValueError(
            f"{name} must be a non-empty sequence of per-epoch learning rates, got {values!r}"
        )
    for i, lr in enumerate(values):
        if isinstance(lr, bool) or not isinstance(lr, (int, float)):
            raise ValueError(f"{name}[{i}] must be a number (a learning rate), got {lr!r}")
        if not math.isfinite(lr) or lr < 0:
            raise ValueError(f"{name}[{i}] must be a finite learning rate >= 0, got {lr!r}")
    return [float(v) for v in values]


def check_float(
    name: str,
    value: Any,
    *,
    allow_none: bool = False,
    minimum: float | None = None,
    strict: bool = False,
) -> float | None:
    """Return ``value`` as a finite float (or None when allowed); NaN/inf or too small raise naming ``name``.

    ``minimum`` is inclusive unless ``strict`` (then ``value`` must be > ``minimum``).
    """
    if value is None:
        if allow_none:
            return None
        raise ValueError(f"{name} must be a number, got None")
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(
            f"{name} must be a number, got {value!r} ({type(value).__name__})"
        ) from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {number!r}")
    if minimum is not None and (number <= minimum if strict else number < minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum:g}, got {number:g}")
    return number


def check_epoch(epoch: Any) -> int:
    """Return ``epoch`` as an int >= 1 (epochs are numbered from 1); else raise a clear error."""
    return check_int("epoch", epoch, minimum=1)


def fmt_value(value: float | None) -> str:
    """Format a metric value for messages: 4 significant digits, ``none`` for None."""
    if value is None:
        return "none"
    return f"{value:.4g}"


def is_better(
    value: float, best: float | None, mode: str, min_delta: float = 0.0, rel: bool = False
) -> bool:
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
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(
            f"metrics[{monitor!r}] must be a number (a float or a one-element tensor/array), got {value!r}"
        ) from None


class Policy:
    """Base of every stop policy.

    Subclasses implement ``update`` and keep their mutable state in plain floats/ints/lists listed by
    ``_state_keys`` (set in ``_init_state``); ``state_dict``/``load_state_dict``/``reset``/``decide``
    come from here.

    >>> class MaxEpochs(Policy):
    ...     _state_keys = ("seen_",)
    ...     def __init__(self, epochs: int) -> None:
    ...         self.epochs = epochs
    ...         self._init_state()
    ...     def _init_state(self) -> None:
    ...         self.seen_ = 0
    ...     def update(self, epoch, metrics):
    ...         self.seen_ += 1
    ...         stop = epoch >= self.epochs
    ...         reason = Reason.MAX_EPOCHS if stop else Reason.CONTINUE
    ...         return Decision(stop, reason, False, None, None, f"epoch {epoch} of {self.epochs}")
    >>> MaxEpochs(2).decide([{}, {}, {}]).message
    'epoch 2 of 2'
    >>> MaxEpochs(2)
    MaxEpochs(epochs=2)
    """

    #: names of the attributes that make up the mutable state (JSON-safe values only).
    _state_keys: tuple[str, ...] = ()

    def __repr__(self) -> str:
        """The constructor call that rebuilds this policy (arguments are stored unchanged)."""
        parts = []
        for param in inspect.signature(type(self).__init__).parameters.values():
            if param.name == "self" or not hasattr(self, param.name):
                continue
            value = getattr(self, param.name)
            if param.kind is param.VAR_POSITIONAL:
                parts.extend(repr(item) for item in value)
            elif param.default is param.empty or value != param.default:
                parts.append(f"{param.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    #: whether ``_decision`` appends ": stop" / ": continue" to messages (Forecast writes its own ending)
    _verdict_suffix: ClassVar[bool] = True

    def _decision(
        self,
        stop: bool,
        reason: Reason,
        improved: bool,
        message: str,
        extend_by: int = 0,
        *,
        epoch: int | None = None,
        why: str = "",
        details: str = "",
    ) -> Decision:
        """This policy's Decision, carrying its ``best_epoch_`` / ``best_value_`` and its name.

        A stop with a ``why`` clause gets the plain stop sentence as its message (``message`` then goes to
        ``details`` unless details are given); otherwise ``message`` gets ": continue" / ": stop" appended
        (unless the policy writes its own verdict).
        """
        best_epoch = getattr(self, "best_epoch_", None)
        best_value = getattr(self, "best_value_", None)
        if stop and why:
            details = details or f"{self.name}: {message}"
            message = stop_sentence(
                epoch if epoch is not None else "this epoch",
                why,
                best_epoch,
                str(getattr(self, "monitor", "") or "the monitor"),
                best_value,
            )
        elif self._verdict_suffix:
            message = f"{message}: {'stop' if stop else 'continue'}"
        return Decision(
            stop=stop,
            reason=reason,
            improved=improved,
            best_epoch=best_epoch,
            best_value=best_value,
            message=message,
            policy=self.name,
            extend_by=extend_by,
            details=details,
            why=why.strip().rstrip(".") if stop else "",
        )

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
        inner = self._unwrap_state(state)
        missing = set(self._state_keys) - set(inner)
        extra = set(inner) - set(self._state_keys)
        if missing or extra:
            raise ValueError(
                f"state keys do not match {type(self).__name__}: missing {sorted(missing)}, unknown {sorted(extra)}"
            )
        for key in self._state_keys:
            setattr(self, key, copy.deepcopy(inner[key]))

    def _unwrap_state(self, state: Mapping[str, Any]) -> Mapping[str, Any]:
        """Check the ``{"policy", "version", "state"}`` envelope of a state dict and return its ``state``."""
        if not isinstance(state, Mapping) or set(state) != {"policy", "version", "state"}:
            raise ValueError(
                "state must be a dict with keys 'policy', 'version', 'state' (from state_dict())"
            )
        if state["policy"] != type(self).__name__:
            raise ValueError(f"state is for {state['policy']!r}, not {type(self).__name__!r}")
        if state["version"] != STATE_VERSION:
            raise ValueError(
                f"state version {state['version']!r} is not supported (expected {STATE_VERSION})"
            )
        inner = state["state"]
        if not isinstance(inner, Mapping):
            raise ValueError(f"state['state'] must be a dict, got {type(inner).__name__}")
        return inner

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

"""Reduce-on-plateau as a stateful multiplier that composes with any schedule, warmup included.

torch's ``ReduceLROnPlateau`` owns the optimizer's lr, so it cannot be combined with warmup or cosine decay
(pytorch #68978). Here the plateau logic only keeps a *scale* (``factor ** reductions``); a schedule wrapped
with :meth:`ReduceOnPlateau.wrap` multiplies its own lr by that scale. Pure: standard library only.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from typing import Any

from epochpilot.core.stopping.base import check_mode, get_metric
from epochpilot.core.stopping.wording import metric_words

__all__ = ["ReduceOnPlateau", "plateaus"]

#: Version of the ``state_dict`` layout; bumped when the layout changes.
STATE_VERSION = 1

_STATE_KEYS = ("best", "num_bad_epochs", "cooldown_counter", "num_reductions", "last_epoch")


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_float(
    name: str, value: Any, low: float, high: float, *, high_open: bool = False
) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    number = float(value)
    if not (
        math.isfinite(number) and low <= number and (number < high if high_open else number <= high)
    ):
        bound = f"[{low}, {high})" if high_open else f"[{low}, {high}]"
        raise ValueError(f"{name} must be a finite number in {bound}, got {value!r}")
    return number


class ReduceOnPlateau:
    """Multiply the lr by ``factor`` when a metric stops improving (torch ``ReduceLROnPlateau`` rules).

    Feed one value per evaluation with ``step(value)`` or ``update(metrics)`` (reads ``metrics[monitor]``).
    A value improves when it beats the best so far by ``threshold`` (relative: ``best * (1 - threshold)``
    in "min" mode, absolute: ``best - threshold``); after more than ``patience`` evaluations without
    improvement the scale is multiplied by ``factor``, then ``cooldown`` evaluations are ignored.
    NaN and infinite values never improve, so they count as bad evaluations (torch agrees, except that
    torch accepts ``+inf`` as a new best in "max" mode).

    ``apply(lr)`` returns ``lr * scale`` but never less than ``min_lr`` unless ``lr`` itself is below it:
    reductions stop at ``min_lr`` and warmup stays untouched. torch's ``eps`` (ignore reductions smaller
    than eps) is not modelled. ``mode`` is required: it is never guessed from the metric's name.

    Example::

        >>> from epochpilot.core.schedules import Cosine, Warmup, ReduceOnPlateau
        >>> plateau = ReduceOnPlateau("val_loss", mode="min", patience=0, factor=0.5)
        >>> schedule = plateau.wrap(Warmup(Cosine(0.1, total_steps=100), steps=10))
        >>> plateau.update({"val_loss": 1.0}), plateau.update({"val_loss": 1.2})
        (False, True)
        >>> round(schedule(10), 6)
        0.05
    """

    def __init__(
        self,
        monitor: str | None = None,
        *,
        mode: str,
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float = 0.0,
    ) -> None:
        if monitor is not None and (not isinstance(monitor, str) or not monitor):
            raise ValueError(f"monitor must be a metric name such as 'val_loss', got {monitor!r}")
        self.monitor = monitor
        self.mode = check_mode(mode)
        self.factor = _check_float("factor", factor, 0.0, 1.0, high_open=True)
        if self.factor == 0.0:
            raise ValueError("factor must be in (0, 1): 0 would zero the lr; try factor=0.1")
        self.patience = _check_int("patience", patience, 0)
        self.threshold = _check_float("threshold", threshold, 0.0, math.inf, high_open=True)
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        self.threshold_mode = threshold_mode
        self.cooldown = _check_int("cooldown", cooldown, 0)
        self.min_lr = _check_float("min_lr", min_lr, 0.0, math.inf, high_open=True)
        self.reset()

    # -- state ---------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every value seen and every reduction (scale back to 1)."""
        self.best: float | None = None
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.num_reductions = 0
        self.last_epoch = 0

    @property
    def scale(self) -> float:
        """The current multiplier, ``factor ** num_reductions``."""
        return self.factor**self.num_reductions

    def _is_better(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            bound = (
                self.best * (1.0 - self.threshold)
                if self.threshold_mode == "rel"
                else self.best - self.threshold
            )
            return value < bound
        bound = (
            self.best * (1.0 + self.threshold)
            if self.threshold_mode == "rel"
            else self.best + self.threshold
        )
        return value > bound

    def step(self, value: float) -> bool:
        """Feed one evaluation's metric value; return True when this call reduced the scale."""
        current = float(value)
        self.last_epoch += 1
        if self._is_better(current):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self.num_reductions += 1
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
            return True
        return False

    def update(self, metrics: Mapping[str, float]) -> bool:
        """Feed ``metrics[monitor]`` (see :meth:`step`); a missing key lists the keys present."""
        if self.monitor is None:
            raise ValueError(
                "ReduceOnPlateau has no monitor: pass monitor='val_loss' (or call step(value))"
            )
        return self.step(get_metric(metrics, self.monitor))

    def reduction_message(self) -> str:
        """The plain sentence for the reduction the last :meth:`step` made (call it when step returned True).

        >>> plateau = ReduceOnPlateau("val_loss", mode="min", patience=1, factor=0.5, threshold=0.0)
        >>> [plateau.step(v) for v in (1.0, 1.0, 1.1)]
        [False, False, True]
        >>> plateau.reduction_message()
        'Lowered the learning rate to 0.5x the schedule (reduction 1, factor 0.5): validation loss has not improved for 2 evaluations (patience 1).'
        """
        words = metric_words(self.monitor) if self.monitor else "the monitored value"
        by = ""
        if self.threshold > 0:
            size = (
                f"{self.threshold * 100:g}%"
                if self.threshold_mode == "rel"
                else f"{self.threshold:g}"
            )
            by = f" by more than {size}"
        waited = self.patience + 1
        unit = "evaluation" if waited == 1 else "evaluations"
        return (
            f"Lowered the learning rate to {self.scale:.3g}x the schedule (reduction "
            f"{self.num_reductions}, factor {self.factor:g}): {words} has not improved{by} for "
            f"{waited} {unit} (patience {self.patience})."
        )

    def apply(self, lr: float) -> float:
        """Scale ``lr`` by the current multiplier, floored at ``min_lr`` (never raising ``lr`` above itself)."""
        if self.num_reductions == 0:
            return lr
        return max(lr * self.scale, min(lr, self.min_lr))

    def wrap(self, schedule: Any) -> Any:
        """Return ``Scaled(schedule, self)``: the schedule's lr times this plateau's scale."""
        from epochpilot.core.schedules.core import Scaled

        return Scaled(schedule, self)

    def state_dict(self) -> dict[str, Any]:
        """The mutable state as a JSON-safe dict, tagged with the class name and a format version."""
        state = {key: getattr(self, key) for key in _STATE_KEYS}
        return {"policy": type(self).__name__, "version": STATE_VERSION, "state": state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore ``state_dict()`` output; unknown, missing or foreign keys raise a ValueError."""
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
        if not isinstance(inner, Mapping) or set(inner) != set(_STATE_KEYS):
            found = sorted(inner) if isinstance(inner, Mapping) else inner
            raise ValueError(f"state keys must be {sorted(_STATE_KEYS)}, got {found}")
        best = inner["best"]
        self.best = None if best is None else float(best)
        for key in _STATE_KEYS[1:]:
            setattr(self, key, int(inner[key]))

    # -- identity ------------------------------------------------------------------------------
    def _config(self) -> tuple[Any, ...]:
        return (
            self.monitor,
            self.mode,
            self.factor,
            self.patience,
            self.threshold,
            self.threshold_mode,
            self.cooldown,
            self.min_lr,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ReduceOnPlateau):
            return NotImplemented
        return self._config() == other._config() and self.state_dict() == other.state_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"ReduceOnPlateau(monitor={self.monitor!r}, mode={self.mode!r}, factor={self.factor!r}, "
            f"patience={self.patience!r}, threshold={self.threshold!r}, "
            f"threshold_mode={self.threshold_mode!r}, cooldown={self.cooldown!r}, min_lr={self.min_lr!r})"
        )


def plateaus(schedule: Any) -> list[ReduceOnPlateau]:
    """Every ReduceOnPlateau inside ``schedule`` (each once, in field order): the ones to feed metrics to."""
    found: list[ReduceOnPlateau] = []

    def walk(node: Any) -> None:
        if isinstance(node, ReduceOnPlateau):
            if not any(node is seen for seen in found):
                found.append(node)
        elif dataclasses.is_dataclass(node) and not isinstance(node, type):
            for field in dataclasses.fields(node):
                walk(getattr(node, field.name))
        elif isinstance(node, (tuple, list)):
            for item in node:
                walk(item)

    walk(schedule)
    return found

"""``stopper="auto"``: :class:`Forecast` plus a blow-up guard, with a budget the trainer may change.

Pure: standard library and numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from epochpilot.core.stopping.base import (
    STATE_VERSION,
    Decision,
    Policy,
    Reason,
    check_epoch,
    check_float,
    check_int,
    check_lrs,
    check_mode,
    fmt_value,
    get_metric,
)
from epochpilot.core.stopping.combine import AnyOf
from epochpilot.core.stopping.early import EarlyStopping
from epochpilot.core.stopping.forecast import Forecast
from epochpilot.core.stopping.wording import metric_words

__all__ = [
    "DEFAULT_PATIENCE",
    "AutoStopper",
    "BlowUpGuard",
    "auto_settings",
    "auto_stopper",
    "default_stopper",
]


class BlowUpGuard(Policy):
    """Stop when ``monitor`` blows up: worse than its first finite value by more than ``factor - 1`` times it.

    The limit is fixed by the first finite value ``v1``: in mode "min" it is ``v1 + (factor - 1) * |v1|``
    (``factor * v1`` for a positive loss: with the default 5, a loss five times its first epoch's), in mode
    "max" ``v1 - (factor - 1) * |v1|``. When ``v1`` is 0 the scale is 1. Reaching the limit stops at once
    with reason ``DIVERGENCE``. Unlike ``EarlyStopping(divergence_threshold=...)`` no absolute number has to
    be known in advance. For a bounded metric such as accuracy the limit is usually out of reach, so the
    guard stays silent there.

    NaN/inf: ignored here (``decide``/``update`` neither store nor stop on them) because the policy it is
    combined with, :class:`Forecast`, already stops on them with ``NOT_FINITE``; use it alone with
    :class:`EarlyStopping` (``check_finite=True``) if you need that too.

    >>> guard = BlowUpGuard("val_loss", mode="min", factor=5.0)
    >>> [guard.update(e, {"val_loss": v}).stop for e, v in enumerate([0.8, 0.5, 3.9, 4.1], 1)]
    [False, False, False, True]
    """

    _state_keys = ("first_", "best_value_", "best_epoch_")

    def __init__(self, monitor: str, mode: str, factor: float = 5.0) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"monitor must be a non-empty metric name, got {monitor!r}")
        check_mode(mode)
        check_float("factor", factor, minimum=1.0, strict=True)
        self.monitor = monitor
        self.mode = mode
        self.factor = factor
        self._init_state()

    def _init_state(self) -> None:
        #: the first finite value (fixes the limit), and the raw best so far with its epoch
        self.first_: float | None = None
        self.best_value_: float | None = None
        self.best_epoch_: int | None = None

    @property
    def limit(self) -> float | None:
        """The value at which the guard fires (None before the first finite value)."""
        if self.first_ is None:
            return None
        first = float(self.first_)
        scale = abs(first) if first != 0.0 else 1.0
        margin = (float(self.factor) - 1.0) * scale
        return first + margin if self.mode == "min" else first - margin

    def update(self, epoch: int, metrics: Mapping[str, float]) -> Decision:
        """Feed epoch ``epoch``'s metrics (1-based); stop when the value reaches the blow-up limit."""
        epoch = check_epoch(epoch)
        raw = get_metric(metrics, self.monitor)
        improved = False
        if math.isfinite(raw):
            if self.first_ is None:
                self.first_ = raw
            best = self.best_value_
            if best is None or (raw < best if self.mode == "min" else raw > best):
                self.best_value_, self.best_epoch_, improved = raw, epoch, True
        limit = self.limit
        blown = (
            limit is not None
            and math.isfinite(raw)
            and (raw >= limit if self.mode == "min" else raw <= limit)
        )
        text = f"{self.monitor} = {fmt_value(raw)}, blow-up limit {fmt_value(limit)}"
        if blown:
            text = (
                f"{self.monitor} = {fmt_value(raw)} reached {fmt_value(float(self.factor))}x its first value "
                f"{fmt_value(self.first_)} (limit {fmt_value(limit)}): diverged; best "
                f"{fmt_value(self.best_value_)} at epoch {self.best_epoch_}"
            )
            moved = "rose" if self.mode == "min" else "fell"
            why = (
                f"{metric_words(self.monitor)} {moved} to {fmt_value(raw)}, past {fmt_value(limit)} "
                f"({fmt_value(float(self.factor))}x its first value {fmt_value(self.first_)}): "
                "training has diverged"
            )
            return self._decision(True, Reason.DIVERGENCE, improved, text, epoch=epoch, why=why)
        return self._decision(False, Reason.CONTINUE, improved, text)


class AutoStopper(AnyOf):
    """``AnyOf(Forecast, BlowUpGuard)`` whose epoch budget can be changed by the trainer (``set_budget``).

    The trainer calls ``set_budget(epochs)`` when a step or time budget turns into a number of epochs; the
    budget is part of the state, so it survives a resume. Best epoch/value and extensions come from the
    Forecast.
    """

    def __init__(self, forecast: Forecast, guard: BlowUpGuard) -> None:
        if not isinstance(forecast, Forecast):
            raise TypeError(f"forecast must be a Forecast, got {type(forecast).__name__}")
        if not isinstance(guard, BlowUpGuard):
            raise TypeError(f"guard must be a BlowUpGuard, got {type(guard).__name__}")
        super().__init__(forecast, guard)
        self.forecast = forecast
        self.guard = guard

    def __repr__(self) -> str:
        return f"AutoStopper({self.forecast!r}, {self.guard!r})"

    @property
    def monitor(self) -> str:
        """The monitored metric (the Forecast's)."""
        return self.forecast.monitor

    @property
    def mode(self) -> str:
        """``"min"`` or ``"max"`` (the Forecast's)."""
        return self.forecast.mode

    @property
    def budget(self) -> int:
        """The epoch budget the Forecast plans for (extensions come on top)."""
        return int(self.forecast.budget)

    def set_budget(self, epochs: int) -> None:
        """Plan for ``epochs`` epochs from now on (what was seen stays; extensions stay granted)."""
        self.forecast.budget = check_int("epochs", epochs, minimum=1)

    def set_schedule(self, schedule: list[float] | None) -> None:
        """Tell the Forecast the learning rate of every epoch of the budget (None: unknown).

        The trainer calls it with its schedule evaluated per epoch (e.g. each epoch's mean lr), again
        whenever the budget changes; it is part of the state, so it survives a resume."""
        self.forecast.schedule = check_lrs("schedule", schedule)

    def state_dict(self) -> dict[str, Any]:
        """AnyOf's state plus the budget and the lr schedule."""
        out = super().state_dict()
        out["state"]["budget"] = self.budget
        sched = self.forecast.schedule
        out["state"]["schedule"] = None if sched is None else [float(v) for v in sched]
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the children's state and the budget."""
        inner = dict(self._unwrap_state(state))
        if "budget" not in inner:
            raise ValueError("AutoStopper state has no 'budget': give state_dict() output")
        budget = check_int("budget", inner.pop("budget"), minimum=1)
        schedule = inner.pop(
            "schedule", None
        )  # absent in states saved before schedules were passed
        if schedule is not None:
            Forecast(self.monitor, self.mode, 1, schedule=schedule)  # validates
        super().load_state_dict(
            {"policy": state["policy"], "version": STATE_VERSION, "state": inner}
        )
        self.forecast.budget = budget
        self.forecast.schedule = schedule


def auto_settings() -> dict[str, Any]:
    """The Forecast settings ``auto_stopper`` uses unless told otherwise: those chosen by the
    leave-one-corpus-out benchmark (``bench/stopping.py --fit-prior``), shipped with the prior's weights."""
    from epochpilot.core.stopping import _prior_weights

    return dict((_prior_weights.WEIGHTS or {}).get("setting", {}))


def auto_stopper(
    monitor: str, mode: str, budget: int, *, blowup_factor: float = 5.0, **forecast_kwargs: Any
) -> AutoStopper:
    """The ``stopper="forecast"`` policy: :class:`Forecast` (``forecast_kwargs``) plus :class:`BlowUpGuard`.

    Forecast stops at the forecast sweet spot, asks for more epochs at the budget when a gain is still
    likely, and stops on NaN/inf (``NOT_FINITE``); the guard stops on a blow-up (``DIVERGENCE``: the value
    ``blowup_factor`` times worse than its first). Unless ``forecast_kwargs`` says otherwise, Forecast runs
    with :func:`auto_settings` (``confidence`` 0.5 and ``patience_cap`` 10: it stops no later than patience
    10 would, and sooner when the forecast is confident), the setting whose worst held-out ratio was best
    on the leave-one-corpus-out benchmark (docs/benchmarks.md, "Forecast: held out"). Pass ``train_monitor`` (e.g.
    ``"train_loss"``) when a training curve is logged, and ``schedule``/``resolution`` when known.

    >>> stopper = auto_stopper("val_loss", "min", budget=30)
    >>> decision = stopper.decide([{"val_loss": v} for v in [1.0, 0.7, 0.6, float("nan")]])
    >>> decision.stop, decision.reason.value, decision.best_epoch
    (True, 'not_finite', 3)
    """
    kwargs = {**auto_settings(), **forecast_kwargs}
    return AutoStopper(
        Forecast(monitor, mode, budget, **kwargs),
        BlowUpGuard(monitor, mode, factor=blowup_factor),
    )


#: Patience of the default stop policy: the most robust rule of the held-out stopping benchmark (docs/benchmarks.md,
#: "Forecast: held out"): no held-out corpus where it is worse than patience, by construction, and the
#: lowest p90 regret of the patience rules at about 0.4-0.8 of the budget.
DEFAULT_PATIENCE = 10


def default_stopper(monitor: str, mode: str) -> EarlyStopping:
    """The ``stopper="auto"`` policy: ``EarlyStopping(patience=10)`` on ``monitor`` (NaN/inf stop it too).

    Forecast (``stopper="forecast"``, :func:`auto_stopper`) is better than patience on some corpora, but with
    its settings chosen without the corpus it broke the safety floor (worse than patience) on 3 of 8 held-out
    rows of the benchmark, so it is available by name and not the default.

    >>> default_stopper("val_loss", "min").patience
    10
    """
    return EarlyStopping(monitor, mode, patience=DEFAULT_PATIENCE)

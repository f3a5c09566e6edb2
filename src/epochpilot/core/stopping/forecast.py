"""Forecast: stop at the sweet spot by forecasting the rest of the validation curve, extend when still improving.

Pure: standard library and numpy only.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np

from epochpilot.core.stopping import _forecast_words as fw
from epochpilot.core.stopping import _prior_weights
from epochpilot.core.stopping._curvefit import CurveForecast, fit_forecast
from epochpilot.core.stopping._forecast_settings import (
    EXCURSION,
    FIT_OPTIONS,
    LOOKAHEAD,
    MAX_FIT_POINTS,
    MIN_FIT_POINTS,
)
from epochpilot.core.stopping._prior import FEATURES, features, predict
from epochpilot.core.stopping.base import (
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
from epochpilot.core.stopping.wording import epochs as n_epochs
from epochpilot.core.stopping.wording import metric_words, not_finite

__all__ = ["Forecast"]


class Forecast(Policy):
    """Stop at the sweet spot: when a better epoch has become unlikely; ask for more epochs when one is likely.

    After each epoch (from epoch ``max(min_epochs, 5)`` on) it estimates ``P(improve)``: the probability
    that one of the next ``lookahead`` epochs (``max(3, round(0.2 * budget))``) beats the best value so
    far by more than the curve's own noise and by more than 1.5% of ``|best|`` (and by more than
    ``min_delta``, absolute or relative to ``|best|``, when given). Two parts, both closed form and deterministic:

    1. a curve ensemble (power law and exponential decay, each with and without a linear overfitting
       upturn, over a grid of shapes; weighted least squares favouring recent epochs; BIC model weights)
       that forecasts the curve with an uncertainty;
    2. an empirical prior: a logistic model over that forecast and the curve's trend (slope t-statistics,
       epochs since the best, distance to the best, the train curve's trend when ``train_monitor`` is
       given, the position in the budget: early stops forfeit more; optionally the lr schedule and the
       metric's resolution, below) fitted on the validation curves of every corpus of
       ``bench/stopping.py`` (generated MLP/CNN, SGD-schedule and CNN families, TaskSet RNNs, AlgoPerf),
       its settings chosen leave-one-corpus-out. It turns the forecast into a calibrated probability. A
       second weight set, fitted on the same samples with the train features blanked, serves runs
       without a train curve (the first would read "no train curve" as "train loss not improving").

    Excursion guard: it does not stop (whatever ``P(improve)``) while one of the last ``lookahead`` values
    is worse than the first value by more than ``|first|`` (a loss above twice its first epoch's): the
    curve is in a transient spike or is unstable, the fit cannot be trusted, and a run that spikes early
    and later recovers would otherwise be stopped in the spike, keeping a bad checkpoint. A run that keeps
    blowing up is not Forecast's to stop: ``stopper="auto"`` adds a blow-up guard (5x the first value).

    It stops (reason ``FORECAST``) once ``P(improve) < 1 - confidence``; ``P(improve)`` does not depend on
    ``confidence``, so a higher ``confidence`` never stops earlier. Why a look-ahead rather than "any
    epoch left in the budget": the latter falls towards 0 as the budget runs out and stopped still-improving
    runs a few epochs before the end, which cost accuracy for little compute (measured on the benchmark).

    Budget and extension: the budget is a hard cap unless ``max_extension`` > 0 (default 0: never past it).
    With ``max_extension`` > 0, at ``epoch >= budget`` (plus any extension already granted), if
    ``P(improve)`` over the next epochs is still ``>= 1 - confidence`` it returns ``stop=False,
    reason=BUDGET, extend_by=k`` (``k`` = the look-ahead, capped by what is left of ``max_extension *
    budget``): the trainer runs ``k`` more epochs and asks again (epochpilot's trainer grants it only when
    its own ``extend`` setting allows). Otherwise it returns ``stop=True, reason=BUDGET``, saying whether
    the curve was still expected to improve. The total extension never exceeds ``max_extension * budget``.

    Messages: a stop's ``message`` is one plain sentence (what it expected, why it stopped, the epoch kept);
    ``details`` carries the numbers (``P(improve)``, the forecast best and its spread, the look-ahead).

    NaN/inf: a non-finite monitored value is treated as divergence: stop at once with reason
    ``NOT_FINITE`` (the value is not stored). ``grad_monitor`` names an optional gradient-norm metric that
    is recorded and shown in messages only (it did not improve the benchmark).

    Context the trainer knows and patience cannot see (all optional, all plain numbers, so the policy stays
    pure and its state JSON):

    - ``schedule``: the learning rate of every epoch of the budget (``schedule[0]`` is epoch 1's; past its
      end the last value holds), e.g. the mean lr of each epoch's updates. The prior reads how far the lr
      will still fall within the look-ahead and before the budget ends (a step drop or a cosine tail to
      come) and whether it just fell.
    - ``resolution``: the smallest change the monitored metric can show, e.g. ``1 / len(val_set)`` for
      accuracy (bounded, quantised); the prior reads it against the curve's noise.
    - ``patience_floor``: never stop on a forecast fewer than this many epochs after the best epoch (the
      forecast can only shorten a run past what patience ``patience_floor`` would have trained).
    - ``patience_cap``: stop (reason ``PATIENCE``) once this many epochs have passed without a new best,
      whatever the forecast says (0: no cap). Forecast then only chooses, curve by curve, to stop
      *sooner* than patience ``patience_cap``: on every held-out corpus of the benchmark this kept it at or
      below the patience frontier where the forecast alone (too confident on a few curve shapes) was not.
    - ``min_fraction``: never stop on a forecast before this fraction of the budget. A run still stuck
      at its starting level (a speech model at WER 0.9 for its first evaluations) looks "converged" to
      any curve fit; measured on AlgoPerf, such early stops carried most of the regret.

    ``best_value``/``best_epoch`` are the raw best (the checkpoint to keep).

    Accuracy, Keras style (``monitor="val_accuracy"``, mode "max"), with the validation-set size:

    >>> stopper = Forecast("val_accuracy", mode="max", budget=40, resolution=1 / 200)
    >>> acc = [round(min(0.5 + 0.05 * e, 0.9) * 200) / 200 for e in range(1, 41)]
    >>> stop = next(e for e, v in enumerate(acc, 1) if stopper.update(e, {"val_accuracy": v}).stop)
    >>> stop < 40, stopper.best_epoch_
    (True, 8)

    >>> stopper = Forecast("val_loss", mode="min", budget=30)
    >>> curve = [1 / e + 0.02 * max(0, e - 10) for e in range(1, 31)]
    >>> decision = next(d for e, v in enumerate(curve, 1) if (d := stopper.update(e, {"val_loss": v})).stop)
    >>> decision.reason.value, decision.best_epoch
    ('forecast', 10)
    """

    _verdict_suffix = False  # messages end with their own verdict

    _state_keys = (
        "epochs_",
        "values_",
        "train_values_",
        "grad_values_",
        "best_value_",
        "best_epoch_",
        "extended_",
    )

    def __init__(
        self,
        monitor: str,
        mode: str,
        budget: int,
        min_delta: float = 0.0,
        min_delta_mode: str = "rel",
        confidence: float = 0.95,
        min_epochs: int = 3,
        max_extension: float = 0.0,
        train_monitor: str | None = None,
        grad_monitor: str | None = None,
        schedule: Sequence[float] | None = None,
        resolution: float = 0.0,
        patience_floor: int = 0,
        min_fraction: float = 0.0,
        patience_cap: int = 0,
    ) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"monitor must be a non-empty metric name, got {monitor!r}")
        check_mode(mode)
        check_int("budget", budget, minimum=1)
        check_float("min_delta", min_delta, minimum=0.0)
        if min_delta_mode not in ("abs", "rel"):
            raise ValueError(f"min_delta_mode must be 'abs' or 'rel', got {min_delta_mode!r}")
        conf = check_float("confidence", confidence)
        if not 0.0 < conf < 1.0:  # type: ignore[operator]
            raise ValueError(f"confidence must be in (0, 1), e.g. 0.95, got {confidence!r}")
        check_int("min_epochs", min_epochs, minimum=1)
        check_float("max_extension", max_extension, minimum=0.0)
        for name, value in (("train_monitor", train_monitor), ("grad_monitor", grad_monitor)):
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{name} must be a metric name or None, got {value!r}")
        check_lrs("schedule", schedule)
        check_float("resolution", resolution, minimum=0.0)
        check_int("patience_floor", patience_floor, minimum=0)
        check_int("patience_cap", patience_cap, minimum=0)
        frac = check_float("min_fraction", min_fraction, minimum=0.0)
        if frac > 1.0:  # type: ignore[operator]
            raise ValueError(f"min_fraction must be in [0, 1], e.g. 0.1, got {min_fraction!r}")
        self.monitor = monitor
        self.mode = mode
        self.budget = budget
        self.min_delta = min_delta
        self.min_delta_mode = min_delta_mode
        self.confidence = confidence
        self.min_epochs = min_epochs
        self.max_extension = max_extension
        self.train_monitor = train_monitor
        self.grad_monitor = grad_monitor
        self.schedule = schedule
        self.resolution = resolution
        self.patience_floor = patience_floor
        self.min_fraction = min_fraction
        self.patience_cap = patience_cap
        self._init_state()

    def _init_state(self) -> None:
        #: epochs seen with a finite monitored value, and those values (sign-flipped in mode "max")
        self.epochs_: list[int] = []
        self.values_: list[float] = []
        #: optional training loss and gradient norm per epoch (None where not logged)
        self.train_values_: list[float | None] = []
        self.grad_values_: list[float | None] = []
        #: raw best value and its epoch (the checkpoint to keep)
        self.best_value_: float | None = None
        self.best_epoch_: int | None = None
        #: epochs granted past ``budget`` so far
        self.extended_ = 0
        #: diagnostic, not state: P(improve) of the last forecast (None before the first forecast)
        self.last_p_improve: float | None = None
        #: diagnostic, not state: why the last decision held off a forecast stop (None when it did not)
        self.last_hold: str | None = None
        self.last_features: np.ndarray | None = None

    # -- helpers ---------------------------------------------------------------------------------
    @property
    def lookahead(self) -> int:
        """Epochs ahead that ``P(improve)`` looks: ``max(3, round(LOOKAHEAD * budget))``."""
        return max(3, int(round(LOOKAHEAD * int(self.budget))))

    @property
    def max_extra(self) -> int:
        """The most epochs this policy may add past ``budget`` in total."""
        return int(math.floor(float(self.max_extension) * int(self.budget)))

    def _delta(self, reference: float) -> float:
        delta = float(self.min_delta)
        return delta * abs(reference) if self.min_delta_mode == "rel" else delta

    def _ext(self, internal: float) -> float:
        """Internal (lower is better) value back to the metric's own sign."""
        return internal if self.mode == "min" else -internal

    def _optional(self, metrics: Mapping[str, float], key: str | None) -> float | None:
        if key is None or key not in metrics:
            return None
        value = float(metrics[key])
        return value if math.isfinite(value) else None

    def excursion(self) -> str | None:
        """Why the curve is in an excursion (a value of the last ``lookahead`` epochs worse than the first
        by more than ``EXCURSION * |first|``), or None when it is not."""
        first = self.values_[0]
        limit = first + EXCURSION * abs(first)
        recent = self.values_[-self.lookahead :]
        worst = max(recent)
        if worst <= limit or first == 0.0:
            return None
        at = self.epochs_[len(self.values_) - len(recent) + recent.index(worst)]
        return (
            f"the curve is in a spike ({fmt_value(self._ext(worst))} at epoch {at} is worse than "
            f"{fmt_value(self._ext(limit))}, {1 + EXCURSION:g}x the first value "
            f"{fmt_value(self._ext(first))}), so the forecast is not trusted yet"
        )

    def floor_hold(self, epoch: int) -> str | None:
        """Why a floor holds off a stop (before ``min_fraction`` of the budget, or fewer than
        ``patience_floor`` epochs since the best), or None."""
        first = math.ceil(float(self.min_fraction) * int(self.budget) - 1e-9)
        if epoch < first:
            return (
                f"no stop before epoch {first} ({self.min_fraction:g} of the {self.budget}-epoch "
                "budget, min_fraction)"
            )
        since = epoch - int(self.best_epoch_ or epoch)
        if since >= int(self.patience_floor):
            return None
        return (
            f"no stop until {n_epochs(int(self.patience_floor))} after the best epoch "
            f"(patience_floor; {since} so far)"
        )

    def forecast(self, horizon: int) -> CurveForecast:
        """Forecast ``horizon`` more epochs (internal units: lower is better).

        The curve ensemble gives the forecast best and its spread; ``p_improve`` is the empirical prior's
        calibration of the ensemble's answer together with the curve's trend and position in the budget.
        """
        epochs = np.asarray(self.epochs_[-MAX_FIT_POINTS:], dtype=float)
        values = np.asarray(self.values_[-MAX_FIT_POINTS:], dtype=float)
        best = float(np.min(values))
        fc = fit_forecast(epochs, values, horizon, self._delta(best), **FIT_OPTIONS)
        x = features(
            self.epochs_[-MAX_FIT_POINTS:],
            self.values_[-MAX_FIT_POINTS:],
            self.train_values_[-MAX_FIT_POINTS:],
            fc,
            int(self.budget),
            self.lookahead,
            self.schedule,
            float(self.resolution),
        )
        self.last_features = x
        has_train = x[FEATURES.index("has_train")] > 0.0
        weights = _prior_weights.WEIGHTS if has_train else _prior_weights.WEIGHTS_NO_TRAIN
        if weights is None:
            return fc
        p = predict(x, weights)
        if (
            float(self.min_delta) > 0.0
        ):  # the gain must also clear min_delta in the ensemble's forecast
            p = min(p, fc.p_improve)
        return dataclasses.replace(fc, p_improve=p)

    # -- the policy ------------------------------------------------------------------------------
    def update(self, epoch: int, metrics: Mapping[str, float]) -> Decision:
        """Feed epoch ``epoch``'s metrics (1-based) and say whether to stop (or to extend the budget)."""
        epoch = check_epoch(epoch)
        raw = get_metric(metrics, self.monitor)
        words = metric_words(self.monitor)
        if not math.isfinite(raw):
            best = "(no best yet)"
            if self.best_epoch_ is not None:
                best = f"(best {fmt_value(self.best_value_)} at epoch {self.best_epoch_})"
            return self._decision(
                True,
                Reason.NOT_FINITE,
                False,
                f"{self.monitor} is {raw} (not finite: diverged) at epoch {epoch} {best}",
                epoch=epoch,
                why=not_finite(words, raw),
            )
        self.last_p_improve = None
        self.last_features = None
        self.last_hold = None
        internal = raw if self.mode == "min" else -raw
        improved = not self.values_ or internal < min(self.values_)
        if improved:
            self.best_value_, self.best_epoch_ = raw, epoch
        self.epochs_.append(epoch)
        self.values_.append(internal)
        self.train_values_.append(self._optional(metrics, self.train_monitor))
        self.grad_values_.append(self._optional(metrics, self.grad_monitor))

        n = len(self.values_)
        end = int(self.budget) + int(self.extended_)
        threshold = 1.0 - float(self.confidence)
        best = f"best {fmt_value(self.best_value_)} at epoch {self.best_epoch_}"
        if epoch >= end:
            return self._at_budget(epoch, improved, threshold)
        if epoch < int(self.min_epochs) or n < MIN_FIT_POINTS:
            need = max(int(self.min_epochs) - epoch, MIN_FIT_POINTS - n)
            return self._decision(
                False,
                Reason.CONTINUE,
                improved,
                f"{words}: {n_epochs(need)} more before the first forecast ({best}): continue",
            )
        since = epoch - int(self.best_epoch_ or epoch)
        if int(self.patience_cap) and since >= int(self.patience_cap):
            return self._decision(
                True,
                Reason.PATIENCE,
                improved,
                f"no new best for {since} epochs (patience_cap {self.patience_cap}; {best})",
                epoch=epoch,
                why=f"{words} has not improved for {n_epochs(since)}, the longest this stopper waits "
                f"(patience_cap {self.patience_cap})",
            )
        fc = self.forecast(self.lookahead)
        self.last_p_improve = fc.p_improve
        details = fw.details(self, fc, threshold, self.lookahead)
        if fc.p_improve >= threshold:
            text = f"{words} may still {fw.expect(self, fc, self.lookahead)}; {best}: continue"
            return self._decision(False, Reason.CONTINUE, improved, text, details=details)
        expect = fw.expect(self, fc, self.lookahead, threshold)
        self.last_hold = self.excursion() or self.floor_hold(epoch)
        if self.last_hold is not None:
            text = f"{words} is unlikely to {expect}, but {self.last_hold}: continue"
            return self._decision(False, Reason.CONTINUE, improved, text, details=details)
        state = f"has not improved for {n_epochs(since)}" if since else "is at its best"
        why = f"{words} {state} and is unlikely to {expect}"
        return self._decision(
            True, Reason.FORECAST, improved, details, epoch=epoch, why=why, details=details
        )

    def _at_budget(self, epoch: int, improved: bool, threshold: float) -> Decision:
        """At (or past) the budget: ask for more epochs while a gain is still likely and extension room is
        left; else stop, saying what was still expected."""
        room = self.max_extra - int(self.extended_)
        if len(self.values_) < MIN_FIT_POINTS:
            text = f"{self.name}: budget {self.budget} reached, too few values to forecast"
            why = fw.budget_used(self)
            return self._decision(True, Reason.BUDGET, improved, text, epoch=epoch, why=why)
        horizon = int(min(self.lookahead, room)) if room > 0 else self.lookahead
        fc = self.forecast(horizon)
        self.last_p_improve = fc.p_improve
        details = fw.details(self, fc, threshold, horizon)
        text = fw.at_budget(self, fc, horizon, room, threshold)
        if room > 0 and fc.p_improve >= threshold:
            self.extended_ = int(self.extended_) + horizon
            return self._decision(
                False, Reason.BUDGET, improved, text, extend_by=horizon, details=details
            )
        return self._decision(
            True, Reason.BUDGET, improved, details, epoch=epoch, why=text, details=details
        )

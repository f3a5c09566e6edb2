"""The "epochpilot" Optuna pruner: prune with the stop policies, against the best trial so far.

A trial reports its monitored validation value once per epoch (step = epoch, 1-based). After ``min_epochs``
and once ``n_startup_trials`` trials have completed, the trial is pruned when one of these holds, checked in
order (the first that fires names the reason, saved as the trial's ``prune_reason``/``prune_message``
attributes):

1. ``not_finite``: the last reported value is NaN or infinite (the run diverged).
2. ``behind_best``: the trial cannot catch up with the best completed trial even if it gains ``catch_up``
   times what that trial gained from the same epoch to its end. With ``catch_up=1`` this is "worse than the
   best trial was at the same epoch"; larger values spare slow starters early in training, when the best
   trial still gained a lot, and bite later, when it did not.
3. ``patience``: :class:`~epochpilot.stopping.EarlyStopping` on the trial's own curve says it has not improved
   for ``patience`` epochs, and its best is worse than the best trial's.
4. ``forecast``: :class:`~epochpilot.stopping.forecast.Forecast`'s learning-curve ensemble (when importable)
   gives a probability below ``1 - confidence`` that the trial's best over the rest of its budget beats the
   best trial's value.

Every decision is a pure function of the two stored curves (:func:`prune_decision`), so it can be recomputed
from the study's database at any time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna

from epochpilot.stopping import EarlyStopping
from epochpilot.stopping.base import check_float, check_int

__all__ = ["EpochpilotPruner", "PruneDecision", "prune_decision"]

#: the trial user attribute where the trainer's callback records the trial's epoch budget
BUDGET_ATTR = "max_epochs"


@dataclass(frozen=True)
class PruneDecision:
    """Whether to prune, why (``reason``: "", not_finite, behind_best, patience, forecast) and a message."""

    prune: bool
    reason: str
    message: str


def _best_so_far(curve: Mapping[int, float], epoch: int, sign: float) -> float | None:
    values = [sign * v for e, v in curve.items() if e <= epoch and math.isfinite(v)]
    return min(values) if values else None


def _p_beat(
    curve: Mapping[int, float], sign: float, target: float, budget: int, epoch: int
) -> float | None:
    """P(the trial's best over epochs epoch+1..budget beats ``target``), internal units (lower is better).

    Uses the learning-curve ensemble behind :class:`~epochpilot.stopping.forecast.Forecast` (its forecast
    best and spread, with Forecast's fit options); None when it is not available or cannot fit.
    """
    try:
        from epochpilot.stopping._curvefit import fit_forecast
        from epochpilot.stopping.forecast import FIT_OPTIONS, MIN_FIT_POINTS
    except ImportError:  # pragma: no cover - forecast not available in this build
        return None
    points = sorted((e, sign * v) for e, v in curve.items() if math.isfinite(v))
    if len(points) < MIN_FIT_POINTS or budget <= epoch:
        return None
    epochs = np.array([p[0] for p in points], dtype=float)
    values = np.array([p[1] for p in points], dtype=float)
    try:
        fc = fit_forecast(epochs, values, budget - epoch, 0.0, **FIT_OPTIONS)
    except (ValueError, TypeError, ArithmeticError, np.linalg.LinAlgError):
        return None  # a curve the ensemble cannot fit: no forecast, no pruning on it
    if not math.isfinite(fc.best):
        return None
    if fc.sd <= 0 or not math.isfinite(fc.sd):
        return 1.0 if fc.best < target else 0.0
    return 0.5 * (1.0 + math.erf((target - fc.best) / (fc.sd * math.sqrt(2.0))))


def prune_decision(
    curve: Mapping[int, float],
    best_curve: Mapping[int, float] | None,
    *,
    mode: str,
    budget: int | None = None,
    min_epochs: int = 3,
    patience: int = 5,
    catch_up: float = 2.0,
    confidence: float = 0.95,
    forecast: bool = True,
) -> PruneDecision:
    """Decide for a trial with per-epoch values ``curve`` against the best completed trial's ``best_curve``.

    ``mode`` is "min" or "max"; ``budget`` is the trial's epoch budget (for the forecast horizon; default:
    the best trial's length). NaN values are skipped except the last, which prunes (``not_finite``).
    """
    if not curve:
        return PruneDecision(False, "", "no value reported yet")
    epoch = max(curve)
    last = curve[epoch]
    if not math.isfinite(last):
        return PruneDecision(True, "not_finite", f"value {last} at epoch {epoch}: diverged")
    if epoch < min_epochs:
        return PruneDecision(False, "", f"epoch {epoch} < min_epochs {min_epochs}")
    if not best_curve or not any(math.isfinite(v) for v in best_curve.values()):
        return PruneDecision(False, "", "no completed trial to compare with yet")
    sign = 1.0 if mode == "min" else -1.0
    mine = _best_so_far(curve, epoch, sign)
    target = _best_so_far(best_curve, max(best_curve), sign)
    theirs = _best_so_far(best_curve, epoch, sign)
    if mine is None or target is None or theirs is None:
        return PruneDecision(False, "", "no finite value to compare yet")

    def show(v: float) -> str:
        return f"{sign * v:.4g}"

    gain = theirs - target  # what the best trial still gained after this epoch (>= 0)
    if epoch <= max(best_curve) and mine - catch_up * gain > target:
        return PruneDecision(
            True,
            "behind_best",
            f"best {show(mine)} by epoch {epoch} vs the best trial's {show(theirs)} at that epoch; even "
            f"{catch_up:g}x its later gain ({gain:.3g}) would not reach its {show(target)}",
        )
    if mine > target:
        stopper = EarlyStopping("value", mode, patience=patience)
        decision = None
        for e in sorted(curve):
            if math.isfinite(curve[e]):
                decision = stopper.update(e, {"value": curve[e]})
        if decision is not None and decision.stop:
            return PruneDecision(
                True,
                "patience",
                f"{decision.message}; and its best {show(mine)} is worse than the best trial's {show(target)}",
            )
        if forecast:
            horizon_end = int(budget) if budget else max(best_curve)
            p = _p_beat(curve, sign, target, horizon_end, epoch)
            if p is not None and p < 1.0 - confidence:
                return PruneDecision(
                    True,
                    "forecast",
                    f"forecast P(beating the best trial's {show(target)} by epoch {horizon_end}) = {p:.3f} "
                    f"< {1.0 - confidence:.2f}",
                )
    return PruneDecision(False, "", f"best {show(mine)} by epoch {epoch}: keep going")


class EpochpilotPruner(optuna.pruners.BasePruner):
    """Optuna pruner built on the stop policies; see the module docstring for the rules.

    >>> import optuna
    >>> pruner = EpochpilotPruner(n_startup_trials=1)
    >>> study = optuna.create_study(pruner=pruner)
    >>> def objective(trial):
    ...     slope = trial.suggest_float("slope", 0.1, 1.0)
    ...     for epoch in range(1, 11):
    ...         trial.report(1.0 / (slope * epoch), epoch)
    ...         if trial.should_prune():
    ...             raise optuna.TrialPruned(pruner.reason(trial.number))
    ...     return 1.0 / (slope * 10)
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> study.optimize(objective, n_trials=8)
    >>> len(study.trials)
    8
    """

    def __init__(
        self,
        *,
        min_epochs: int = 3,
        patience: int = 5,
        catch_up: float = 2.0,
        confidence: float = 0.95,
        n_startup_trials: int = 3,
        forecast: bool = True,
    ) -> None:
        check_int("min_epochs", min_epochs, minimum=1)
        check_int("patience", patience, minimum=1)
        check_float("catch_up", catch_up, minimum=1.0)
        conf = check_float("confidence", confidence)
        if not 0.0 < conf < 1.0:  # type: ignore[operator]
            raise ValueError(f"confidence must be in (0, 1), e.g. 0.95, got {confidence!r}")
        check_int("n_startup_trials", n_startup_trials, minimum=0)
        self.min_epochs = min_epochs
        self.patience = patience
        self.catch_up = catch_up
        self.confidence = confidence
        self.n_startup_trials = n_startup_trials
        self.forecast = forecast
        self._decisions: dict[int, PruneDecision] = {}

    def decide(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> PruneDecision:
        """The decision for ``trial`` now (recomputed from the study's stored curves)."""
        done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        curve = dict(trial.intermediate_values)
        best: dict[int, float] | None = None
        if len(done) >= max(1, self.n_startup_trials):
            maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
            scored = [t for t in done if t.value is not None and math.isfinite(t.value)]
            if scored:
                pick = (max if maximize else min)(scored, key=lambda t: t.value)
                best = dict(pick.intermediate_values)
        mode = "max" if study.direction == optuna.study.StudyDirection.MAXIMIZE else "min"
        budget = trial.user_attrs.get(BUDGET_ATTR) or trial.params.get("max_epochs")
        return prune_decision(
            curve,
            best,
            mode=mode,
            budget=int(budget) if budget else None,
            min_epochs=self.min_epochs,
            patience=self.patience,
            catch_up=self.catch_up,
            confidence=self.confidence,
            forecast=self.forecast,
        )

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        """Optuna's hook: True prunes the trial (the decision is kept for :meth:`reason`)."""
        decision = self.decide(study, trial)
        self._decisions[trial.number] = decision
        return decision.prune

    def reason(self, number: int) -> str:
        """ "reason: message" of the last decision taken for trial ``number`` in this process."""
        d = self._decisions.get(number)
        return f"{d.reason}: {d.message}" if d is not None else ""

    def last_decision(self, number: int) -> PruneDecision | None:
        """The last decision taken for trial ``number`` in this process (None if none)."""
        return self._decisions.get(number)

    def __repr__(self) -> str:
        args: dict[str, Any] = {
            "min_epochs": self.min_epochs,
            "patience": self.patience,
            "catch_up": self.catch_up,
            "confidence": self.confidence,
            "n_startup_trials": self.n_startup_trials,
            "forecast": self.forecast,
        }
        return f"EpochpilotPruner({', '.join(f'{k}={v!r}' for k, v in args.items())})"

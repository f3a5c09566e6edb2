"""The "epochpilot" Optuna pruner: prune a trial only when it is unlikely to beat the study's best.

A trial reports its monitored validation value once per epoch (step = epoch, 1-based). Once
``n_startup_trials`` trials have completed, :class:`EpochpilotPruner` judges it with
:func:`epochpilot.tune_judge.judge` (pure; the rules are in that module's docstring): never inside its warmup
or before its learning rate reached its peak regime (read from the trial's user attributes
``epochpilot_warmup_epochs`` / ``epochpilot_lrs``, recorded with :func:`record_schedule` / :func:`record_lr`;
unknown: a grace of ``max(min_epochs, 10% of the budget)`` epochs), kept while it is ahead of half of the
completed trials at the same epoch (rung statistics), and pruned (``behind_best``) only when the forecast of
its own curve gives ``P(beating the study's best by its budget's end) < probability``. A NaN value prunes at
once (``not_finite``). The reason is kept for :meth:`EpochpilotPruner.reason`.

:func:`prune_decision` keeps the previous rules (behind the best trial at the same epoch with a catch-up
allowance, patience, forecast), a pure function of two stored curves, for comparison.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import optuna

from epochpilot.stopping import EarlyStopping
from epochpilot.stopping.base import check_float, check_int
from epochpilot.tune_judge import PruneDecision, best_so_far, judge

__all__ = [
    "EpochpilotPruner",
    "PruneDecision",
    "prune_decision",
    "pruned",
    "record_lr",
    "record_schedule",
]

#: the trial user attribute where the trainer's callback records the trial's epoch budget
BUDGET_ATTR = "max_epochs"
#: the trial user attribute with the trial's warmup length in epochs (float)
WARMUP_ATTR = "epochpilot_warmup_epochs"
#: the trial user attribute with the trial's learning rate per epoch (planned, or appended as it runs)
LRS_ATTR = "epochpilot_lrs"


def record_schedule(
    trial: optuna.Trial, *, warmup_epochs: float | None = None, lrs: list[float] | None = None
) -> None:
    """Tell the epochpilot pruner the trial's warmup length (epochs) and/or its planned lr per epoch."""
    if warmup_epochs is not None:
        trial.set_user_attr(WARMUP_ATTR, float(warmup_epochs))
    if lrs is not None:
        trial.set_user_attr(LRS_ATTR, [float(v) for v in lrs])


def record_lr(trial: optuna.Trial, epoch: int, lr: Any) -> None:
    """Record epoch ``epoch``'s learning rate (1-based) on ``trial`` as it runs; non-numbers are ignored."""
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not math.isfinite(lr):
        return
    stored = list(trial.user_attrs.get(LRS_ATTR, ()))
    if len(stored) >= 2 and int(epoch) > len(stored) and lr <= stored[-1] <= stored[-2]:
        return  # past its rise: a later epoch at no higher a rate changes nothing the pruner reads
    lrs = stored[: max(int(epoch) - 1, 0)]
    lrs += [lrs[-1] if lrs else float(lr)] * (int(epoch) - 1 - len(lrs))
    trial.set_user_attr(LRS_ATTR, [*lrs, float(lr)])


def pruned(trial: optuna.Trial, epoch: int, note: str = "") -> optuna.TrialPruned:
    """The ``TrialPruned`` to raise at ``epoch``, after saving why on the trial (``prune_reason``,
    ``prune_message``, ``pruned_epoch``): the epochpilot pruner's reason, or the pruner's class name."""
    pruner = trial.study.pruner
    message = f"pruned at epoch {epoch}{note}"
    if isinstance(pruner, EpochpilotPruner):
        decision = pruner.last_decision(trial.number)
        if decision is not None:
            trial.set_user_attr("prune_reason", decision.reason)
            message = f"{decision.reason}: {decision.message}{note}"
    else:
        trial.set_user_attr("prune_reason", type(pruner).__name__)
    trial.set_user_attr("prune_message", message)
    trial.set_user_attr("pruned_epoch", int(epoch))
    return optuna.TrialPruned(message)


_best_so_far = best_so_far


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
    """The previous rules (not used by :class:`EpochpilotPruner`): decide for a trial with per-epoch values
    ``curve`` against the best completed trial's ``best_curve``.

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
    """Optuna pruner: prune a trial only when its forecast gives less than ``probability`` of beating the
    study's best by its budget's end; never inside its warmup (see the module docstring). Any sampler, any
    storage.

    >>> import optuna
    >>> pruner = EpochpilotPruner(n_startup_trials=1)
    >>> study = optuna.create_study(pruner=pruner)
    >>> def objective(trial):
    ...     slope = trial.suggest_float("slope", 0.1, 1.0)
    ...     trial.set_user_attr("max_epochs", 10)
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
        probability: float = 0.01,
        n_startup_trials: int = 1,
        min_epochs: int = 3,
        grace_fraction: float = 0.1,
        rung_quantile: float = 0.5,
        optimism: float = 0.2,
        window: int = 2,
        margin: float = 0.01,
    ) -> None:
        check_int("min_epochs", min_epochs, minimum=1)
        check_int("n_startup_trials", n_startup_trials, minimum=0)
        check_int("window", window, minimum=1)
        check_float("optimism", optimism, minimum=0.0)
        check_float("margin", margin, minimum=0.0)
        for name, value in (
            ("probability", probability),
            ("grace_fraction", grace_fraction),
            ("rung_quantile", rung_quantile),
        ):
            number = check_float(name, value)
            if not 0.0 <= number <= 1.0:  # type: ignore[operator]
                raise ValueError(f"{name} must be in [0, 1], e.g. 0.05, got {value!r}")
        self.probability = float(probability)
        self.n_startup_trials = n_startup_trials
        self.min_epochs = min_epochs
        self.grace_fraction = float(grace_fraction)
        self.rung_quantile = float(rung_quantile)
        self.optimism = float(optimism)
        self.window = int(window)
        self.margin = float(margin)
        self._decisions: dict[int, PruneDecision] = {}

    def decide(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> PruneDecision:
        """The decision for ``trial`` now (recomputed from the study's stored curves and user attributes)."""
        curve = dict(trial.intermediate_values)
        mode = "max" if study.direction == optuna.study.StudyDirection.MAXIMIZE else "min"
        sign = 1.0 if mode == "min" else -1.0
        done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        # the study's best in the quantity the curves report (like with like, whatever the objective returns):
        # a completed trial's best reported value, else its value
        finals = []
        for t in done:
            reported = best_so_far(t.intermediate_values, math.inf, sign)
            if reported is not None:
                finals.append(reported)
            elif t.value is not None and math.isfinite(t.value):
                finals.append(sign * t.value)
        target = None
        if finals and len(done) >= self.n_startup_trials:
            target = sign * min(finals)
        epoch = max(curve) if curve else 0
        rung = []
        for t in done:
            if t.intermediate_values and max(t.intermediate_values) >= epoch:
                value = best_so_far(t.intermediate_values, epoch, sign)
                if value is not None:
                    rung.append(sign * value)
        budget = trial.user_attrs.get(BUDGET_ATTR) or trial.params.get("max_epochs")
        if not budget:  # unknown: the longest completed trial's
            budget = max(
                (max(t.intermediate_values) for t in done if t.intermediate_values), default=0
            )
        warmup = trial.user_attrs.get(WARMUP_ATTR)
        lrs = trial.user_attrs.get(LRS_ATTR)

        return judge(
            curve,
            mode=mode,
            target=target,
            rung=rung,
            budget=int(budget) if budget else None,
            warmup_epochs=float(warmup) if isinstance(warmup, (int, float)) else None,
            lrs=list(lrs) if isinstance(lrs, (list, tuple)) else None,
            probability=self.probability,
            min_epochs=self.min_epochs,
            grace_fraction=self.grace_fraction,
            rung_quantile=self.rung_quantile,
            optimism=self.optimism,
            window=self.window,
            margin=self.margin,
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
            "probability": self.probability,
            "n_startup_trials": self.n_startup_trials,
            "min_epochs": self.min_epochs,
            "grace_fraction": self.grace_fraction,
            "rung_quantile": self.rung_quantile,
            "optimism": self.optimism,
            "window": self.window,
            "margin": self.margin,
        }
        return f"EpochpilotPruner({', '.join(f'{k}={v!r}' for k, v in args.items())})"

"""The "epochpilot" Optuna pruner: prune a trial only when it cannot, or is unlikely to, beat the study's best.

A trial reports its monitored validation value once per epoch (step = epoch, 1-based). Once
``n_startup_trials`` trials have completed, :class:`EpochpilotPruner` judges it with
:func:`epochpilot.select.tune.judge.judge` (pure; the rules are in that module's docstring): never inside its warmup
or before its learning rate reached its peak regime (read from the trial's user attributes
``epochpilot_warmup_epochs`` / ``epochpilot_lrs``, recorded with :func:`record_schedule` / :func:`record_lr`;
unknown: a grace of ``max(min_epochs, 10% of the budget)`` epochs), kept while it is ahead of half of the
completed trials at the same epoch (rung statistics), pruned (``out_of_reach``) when what its own curve
projects it to gain by its budget's end leaves it behind the study's best, or
(``behind_best``) when the forecast of its own curve gives ``P(beating the study's best by its budget's end)
< probability``. A NaN value prunes at once (``not_finite``). The reason is kept for
:meth:`EpochpilotPruner.reason` and saved on the trial by :func:`pruned`.
"""

from __future__ import annotations

import math
from typing import Any

import optuna

from epochpilot.core.stopping.base import check_float, check_int
from epochpilot.select.tune.judge import JUDGE_SETTINGS, PruneDecision, best_so_far, judge

__all__ = [
    "EpochpilotPruner",
    "PruneDecision",
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
        probability: float = 0.05,
        n_startup_trials: int = 1,
        min_epochs: int = 3,
        grace_fraction: float = 0.1,
        rung_quantile: float = 0.5,
        line_fraction: float = 0.2,
        window: int = 3,
        margin: float = 0.01,
        noise_z: float = 2.0,
    ) -> None:
        check_int("min_epochs", min_epochs, minimum=1)
        check_int("n_startup_trials", n_startup_trials, minimum=0)
        check_int("window", window, minimum=1)
        check_float("line_fraction", line_fraction, minimum=0.0)
        check_float("margin", margin, minimum=0.0)
        check_float("noise_z", noise_z, minimum=0.0)
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
        self.line_fraction = float(line_fraction)
        self.window = int(window)
        self.margin = float(margin)
        self.noise_z = float(noise_z)
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
            **{name: getattr(self, name) for name in JUDGE_SETTINGS},
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
        names = ("n_startup_trials", *JUDGE_SETTINGS)
        args: dict[str, Any] = {name: getattr(self, name) for name in names}
        return f"EpochpilotPruner({', '.join(f'{k}={v!r}' for k, v in args.items())})"

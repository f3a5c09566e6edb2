"""The epochpilot pruner's decision math, pure (no optuna, no torch): judge one trial's learning curve.

A trial is judged only once its learning rate is in the regime it will be judged in, like with like, and on
its own curve:

1. ``not_finite``: the last value is NaN or infinite (the run diverged): prune at once, warmup or not.
2. **Grace**: no judgement before the trial's *judged-from* epoch: the first epoch that runs wholly after its
   warmup (``warmup_epochs``) and at >= 90% of the peak of its per-epoch learning rates (``lrs``, each the rate
   at the epoch's end; after a rise, the epoch after the one that reached 90% is the first wholly there), never
   before ``min_epochs``; when neither is known, ``max(min_epochs, ceil(grace_fraction * budget))``.
3. A trial whose best so far matches the study's best is kept.
4. **Rung**: the trial's best so far at epoch ``e`` is ranked among the completed trials' best values at the
   same epoch ``e``; a trial ahead of ``rung_quantile`` of them (default: half) is kept.
5. ``out_of_reach``: what the trial would still gain by the end of its budget, projected from its own curve
   since its judged-from epoch (:func:`projected_gain`: the least-squares slope of its last ``window`` + 1
   values, shrinking each epoch as much as the slope shrank since its first judged values, a geometric
   series; a straight line while it does not shrink; never less than ``line_fraction`` (0.2) of the straight
   line), leaves it behind the study's best by more than ``margin`` (1%, relative) plus ``noise_z`` (2) times
   one epoch's noise (:func:`epoch_noise`). ``line_fraction``, ``margin``, ``probability`` and
   ``n_startup_trials`` were chosen on two problems of ``bench/tune_efficiency.py`` (digits, breast_cancer with
   cv); ``window`` and ``noise_z`` were set after the first design cut noisy MNIST-1D winners that had stalled
   for two epochs (the two choice problems cannot tell the values apart).
6. ``behind_best``: the learning-curve ensemble behind :class:`~epochpilot.core.stopping.forecast.Forecast`, fitted
   to the trial's own curve from its judged-from epoch (``MIN_FIT_POINTS`` of them), forecasts its best value
   by the end of its budget with an uncertainty (the ensemble's spread, times ``epochs left / epochs fitted``
   when the forecast reaches further than the curve it was fitted to, plus one epoch's noise); the trial is
   pruned when ``P(that beats the study's best value) < probability`` (default 0.05; 0 turns it off).

Every input is stored in the study (the curves, the trial's user attributes), so a decision can be recomputed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from epochpilot.core.stopping._curvefit import fit_forecast
from epochpilot.core.stopping._forecast_settings import FIT_OPTIONS, MIN_FIT_POINTS

__all__ = [
    "PruneDecision",
    "best_so_far",
    "judge",
    "judged_from",
    "epoch_noise",
    "p_beat",
    "projected_gain",
]

#: the settings :func:`judge` takes (the pruner keeps each as an attribute of the same name)
JUDGE_SETTINGS = (
    "probability",
    "min_epochs",
    "grace_fraction",
    "rung_quantile",
    "line_fraction",
    "window",
    "margin",
    "noise_z",
)
#: an epoch runs "in the regime it is judged in" once its learning rate is at least this fraction of the peak
LR_REGIME = 0.9


@dataclass(frozen=True)
class PruneDecision:
    """Whether to prune, why (``reason``: "", not_finite, behind_best, ...) and a one-line message."""

    prune: bool
    reason: str
    message: str
    p_beat: float | None = (
        None  # P(the trial beats the study's best by its budget's end), when forecast
    )


def best_so_far(curve: Mapping[int, float], epoch: int, sign: float = 1.0) -> float | None:
    """Best finite value of ``curve`` up to ``epoch``, in internal units (``sign * value``, lower is better)."""
    values = [sign * v for e, v in curve.items() if e <= epoch and math.isfinite(v)]
    return min(values) if values else None


def judged_from(
    *,
    budget: int | None,
    warmup_epochs: float | None = None,
    lrs: Sequence[float] | None = None,
    min_epochs: int = 3,
    grace_fraction: float = 0.1,
) -> tuple[int, str]:
    """The first epoch a trial may be judged at, and why (its warmup, its lr reaching the peak, or the grace).

    ``lrs[i]`` is the learning rate of epoch ``i + 1`` (the planned schedule or the epochs seen so far: an lr
    still rising at the last epoch seen keeps the trial in its warmup).
    """
    first, why = min_epochs, f"min_epochs {min_epochs}"
    known = False
    if warmup_epochs is not None and math.isfinite(warmup_epochs) and warmup_epochs >= 0:
        known = True
        after = math.ceil(warmup_epochs) + 1 if warmup_epochs > 0 else 1
        if after > first:
            first, why = after, f"a warmup of {warmup_epochs:g} epochs"
    rates = [float(v) for v in (lrs or ()) if v is not None and math.isfinite(float(v))]
    if rates and max(rates) > 0:
        known = True
        peak = max(rates)
        reached = next(i for i, v in enumerate(rates, 1) if v >= LR_REGIME * peak)
        if (
            reached > 1
        ):  # an epoch's lr is its last update's: the epoch after it is the first wholly there
            reached += 1
        if len(rates) >= 2 and rates[-1] > rates[-2] * (1 + 1e-9):
            reached = len(rates) + 1  # still warming up: the regime is not reached yet
        if reached > first:
            first, why = reached, f"its learning rate reaching {LR_REGIME:.0%} of its peak"
    if not known and budget:
        grace = math.ceil(grace_fraction * budget)
        if grace > first:
            first, why = grace, f"a grace of {grace_fraction:.0%} of its {budget}-epoch budget"
    return first, why


def p_beat(
    epochs: Sequence[float], values: Sequence[float], target: float, budget: int
) -> float | None:
    """P(the best of a curve (lower is better) from its last epoch to ``budget`` beats ``target``), from the
    learning-curve ensemble; None when there are too few points, no epoch left, or the fit fails."""
    if len(values) < MIN_FIT_POINTS or budget <= int(max(epochs)):
        return None
    try:
        fc = fit_forecast(
            np.asarray(epochs, dtype=float),
            np.asarray(values, dtype=float),
            int(budget - max(epochs)),
            0.0,
            **FIT_OPTIONS,
        )
    except (ValueError, TypeError, ArithmeticError, np.linalg.LinAlgError):
        return None
    if not math.isfinite(fc.best):
        return None
    # the ensemble's spread is that of a short extrapolation; a trial is judged far from its budget's end,
    # so the spread grows with how far the forecast reaches beyond the points fitted
    stretch = max(1.0, (budget - max(epochs)) / len(values))
    sd = math.hypot(fc.sd * stretch, fc.sigma) if math.isfinite(fc.sd * fc.sigma) else 0.0
    if sd <= 0:
        return 1.0 if fc.best < target else 0.0
    return 0.5 * (1.0 + math.erf((target - fc.best) / (sd * math.sqrt(2.0))))


def _slope(points: Sequence[tuple[int, float]]) -> float:
    """Least-squares slope of (epoch, value) points (at least two)."""
    xs = np.array([p[0] for p in points], dtype=float)
    ys = np.array([p[1] for p in points], dtype=float)
    xs -= xs.mean()
    return float((xs * (ys - ys.mean())).sum() / (xs * xs).sum())


def epoch_noise(values: Sequence[float]) -> float:
    """One epoch's noise (sd) in a curve, from the median absolute second difference (a smooth trend has
    small second differences, white noise of sd s gives sd(d2) = s * sqrt(6)); 0 with fewer than 3 values."""
    if len(values) < 3:
        return 0.0
    d2 = np.abs(np.diff(np.asarray(values, dtype=float), 2))
    return float(np.median(d2) / (0.6745 * math.sqrt(6.0)))


def projected_gain(
    curve: Mapping[int, float],
    epoch: int,
    first: int,
    budget: int,
    sign: float = 1.0,
    window: int = 3,
) -> tuple[float, float, float]:
    """What the trial would still gain by ``budget`` if its improvement kept shrinking as it has, from its
    own curve since epoch ``first - 1`` (progress at a warmup's lower learning rate is not the trial's):
    ``(gain, rate, ratio)`` in internal units (lower is better). ``rate`` is the improvement per epoch, the
    least-squares slope of the last ``window`` + 1 values (a slope, not a difference of two noisy values);
    ``ratio`` how much it shrank per epoch since the first ``window`` + 1 values judged (<= 1; 1 when it did
    not shrink or there is no second span yet: then the straight line ``rate * epochs left``). ``gain`` is
    inf when there are fewer than two values to measure a slope on."""
    left = max(budget - epoch, 0)
    points = sorted(
        (e, sign * v)
        for e, v in curve.items()
        if max(first - 1, 1) <= e <= epoch and math.isfinite(v)
    )
    if len(points) < 2:
        return math.inf, math.inf, 1.0
    recent = points[-(window + 1) :]
    rate = max(-_slope(recent), 0.0)
    ratio = 1.0
    if len(points) >= 2 * (window + 1):
        early = points[: window + 1]
        prev = -_slope(early)
        apart = (recent[0][0] + recent[-1][0] - early[0][0] - early[-1][0]) / 2.0
        if prev > 0 and rate < prev and apart > 0:
            ratio = (rate / prev) ** (1.0 / apart)
    if ratio >= 1.0:
        return rate * left, rate, 1.0
    return rate * ratio * (1.0 - ratio**left) / (1.0 - ratio), rate, ratio


def judge(
    curve: Mapping[int, float],
    *,
    mode: str,
    target: float | None,
    rung: Sequence[float] = (),
    budget: int | None = None,
    warmup_epochs: float | None = None,
    lrs: Sequence[float] | None = None,
    probability: float = 0.05,
    min_epochs: int = 3,
    grace_fraction: float = 0.1,
    rung_quantile: float = 0.5,
    line_fraction: float = 0.2,
    window: int = 3,
    margin: float = 0.01,
    noise_z: float = 2.0,
) -> PruneDecision:
    """Decide for a trial with per-epoch values ``curve`` (see the module docstring for the rules).

    ``target`` is the study's best value (None: nothing completed yet, never prune); ``rung`` the completed
    trials' best values up to the trial's current epoch (external units); ``budget`` the trial's epochs.
    """
    if not curve:
        return PruneDecision(False, "", "no value reported yet")
    epoch = max(curve)
    last = curve[epoch]
    if not math.isfinite(last):
        return PruneDecision(True, "not_finite", f"value {last} at epoch {epoch}: diverged")
    first, why = judged_from(
        budget=budget,
        warmup_epochs=warmup_epochs,
        lrs=lrs,
        min_epochs=min_epochs,
        grace_fraction=grace_fraction,
    )
    if epoch < first:
        return PruneDecision(False, "", f"epoch {epoch}: not judged before epoch {first} ({why})")
    if target is None or not math.isfinite(target):
        return PruneDecision(False, "", "no completed trial to compare with yet")
    sign = 1.0 if mode == "min" else -1.0
    mine = best_so_far(curve, epoch, sign)
    if mine is None:
        return PruneDecision(False, "", "no finite value yet")

    def show(v: float) -> str:
        return f"{sign * v:.4g}"

    goal = sign * target
    if mine <= goal:
        return PruneDecision(False, "", f"best {show(mine)} already matches the study's best")
    peers = [sign * v for v in rung if math.isfinite(v)]
    ahead = sum(1 for v in peers if v > mine)
    if ahead > 0 and ahead >= rung_quantile * len(peers):
        return PruneDecision(
            False, "", f"best {show(mine)} is ahead of {ahead}/{len(peers)} trials at epoch {epoch}"
        )
    if not budget or budget <= epoch:
        return PruneDecision(False, "", f"epoch {epoch}: no budget left to forecast")
    points = sorted((e, sign * v) for e, v in curve.items() if e >= first and math.isfinite(v))
    gain, rate, ratio = projected_gain(curve, epoch, first, budget, sign, window)
    gain = max(gain, line_fraction * rate * (budget - epoch))
    reach = mine - gain
    noise = epoch_noise(
        [v for _, v in points]
    )  # a lucky epoch ahead can land this much under the trend
    if reach > goal + margin * abs(goal) + noise_z * noise:
        shrink = f", shrinking x{ratio:.2f} per epoch" if ratio < 1 else ""
        return PruneDecision(
            True,
            "out_of_reach",
            f"best {show(mine)} at epoch {epoch}, improving {rate:.3g} per epoch{shrink}: by epoch {budget} "
            f"that projects to {show(reach)}, behind the study's best {show(goal)} by more than {margin:.0%}",
            0.0,
        )
    p = p_beat([e for e, _ in points], [v for _, v in points], goal, budget)
    if p is None:
        need = MIN_FIT_POINTS - len(points)
        return PruneDecision(
            False, "", f"epoch {epoch}: no forecast yet ({max(need, 0)} more epochs)"
        )
    rank = f"behind {len(peers) - ahead}/{len(peers)} trials at epoch {epoch}; " if peers else ""
    message = f"{rank}forecast P(beating the study's best {show(goal)} by epoch {budget}) = {p:.3f}"
    if p < probability:
        return PruneDecision(True, "behind_best", f"{message} < {probability:g}", p)
    return PruneDecision(False, "", f"{message} >= {probability:g}", p)

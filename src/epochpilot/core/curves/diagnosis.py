"""Curve diagnosis: from the analysed series to a verdict, advice sentences and a suggested budget/patience.

Pure (numpy only); :func:`epochpilot.core.curves.analysis.analyze` is the entry point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from epochpilot.core.curves.curvemath import (
    _argbest,
    _fmt,
    _longest_wait,
    _n,
    _noise,
    _pct,
    _slope,
    _smooth,
)


@dataclass
class _Ctx:
    monitor: str
    mode: str
    train: str | None
    epochs: tuple[int, ...]
    raw: np.ndarray
    y: np.ndarray
    s: np.ndarray
    sigma: float
    w: int
    tr_raw: np.ndarray | None
    tr_y: np.ndarray | None
    #: what acts in training only in this run (e.g. "dropout 0.1"), named when val beats train
    regularisers: tuple[str, ...] = ()


def _explosion(v: np.ndarray, w: int) -> tuple[int, int] | None:
    """(best, last) indices when the smoothed series ends worse than it started, far beyond its noise."""
    s = _smooth(v, w)
    ok = np.nonzero(np.isfinite(s))[0]
    b = _argbest(s)
    if ok.size < 4 or b is None:
        return None
    first, last = int(ok[0]), int(ok[-1])
    rise = s[last] - s[b]
    if last - b >= 2 and rise > max(s[first] - s[b], 10 * _noise(v) / math.sqrt(w)):
        return b, last
    return None


_Verdict = tuple[str, list[str], int | None, int | None]


def _v(
    diagnosis: str, *advice: str, budget: int | None = None, patience: int | None = None
) -> _Verdict:
    return diagnosis, list(advice), budget, patience


def _diagnose(c: _Ctx, bad, tr_bad, m, sweet, onset, gap) -> _Verdict:
    """The diagnosis, advice sentences, suggested epoch budget and patience; a curve that did not diverge
    and ends with validation better than training gets a sentence on why (see :func:`_negative_gap`)."""
    diagnosis, advice, budget, patience = _verdict(c, bad, tr_bad, m, sweet, onset, gap)
    if diagnosis != "diverged":
        advice += _negative_gap(c, gap, sweet)
    return diagnosis, advice, budget, patience


def _verdict(c: _Ctx, bad, tr_bad, m, sweet, onset, gap) -> _Verdict:
    n, E, mon, sign = len(c.y), c.epochs, c.monitor, (1.0 if c.mode == "min" else -1.0)
    worse, bottomed = ("rose", "bottomed") if c.mode == "min" else ("fell", "peaked")
    keep = f"; keep the epoch-{E[sweet]} weights" if sweet is not None else ""
    cure = "lower the learning rate 3-10x, clip gradients (e.g. max_norm=1.0) or add warmup"

    for name, b, vals in ((mon, bad, c.raw), (c.train, tr_bad, c.tr_raw)):
        if name is None or vals is None or not b.any():
            continue
        i = int(np.nonzero(b)[0][0])
        prev = np.nonzero(np.isfinite(vals[:i]))[0]
        was = f" (last finite {_fmt(vals[prev[-1]])} at epoch {E[prev[-1]]})" if prev.size else ""
        return _v(
            "diverged", f"{name} became non-finite (NaN/inf) at epoch {E[i]}{was}: {cure}{keep}."
        )
    # with a train series a rising val curve is overfitting, so only train can explode; else the monitor
    name, v, vals = (c.train, c.tr_y, c.tr_raw) if c.tr_y is not None else (mon, c.y, c.raw)
    ex = _explosion(v, c.w) if vals is not None and v is not None else None
    if ex is not None:
        b, last = ex
        return _v(
            "diverged",
            f"{name} {bottomed} at {_fmt(vals[b])} around epoch {E[b]} and {worse} to "
            f"{_fmt(vals[last])} by epoch {E[last]}, worse than where it started: training diverged; "
            f"{cure}{keep}.",
        )

    n_ok = int(np.isfinite(c.y).sum())
    if m is None or n_ok < 4:
        msg = f"only {_n(n_ok, 'epoch')} of {mon}: train at least 5-10 epochs before reading the curve."
        return _v("too_noisy_to_tell", msg)
    rng = float(np.nanmax(c.s) - np.nanmin(c.s))
    if rng < 3 * c.sigma:
        return _v(
            "too_noisy_to_tell",
            f"{mon} moved by {_fmt(rng)} (smoothed) over {n_ok} epochs against an epoch-to-epoch noise of "
            f"{_fmt(c.sigma)}: the trend is lost in the noise. Use a larger validation set, smooth the "
            f"monitor or require min_delta >= {_fmt(2 * c.sigma)} before trusting a stop.",
        )

    patience = max(3, _longest_wait(c.s, m) + 2)
    ss, best_raw = E[sweet], float(c.raw[sweet])
    last = int(np.nonzero(np.isfinite(c.y))[0][-1])
    budget, enough = _enough(ss, patience, E[last])
    advice: list[str] = []
    if onset is not None:
        advice.append(
            f"{mon} {bottomed} at epoch {ss} ({_fmt(best_raw)}) and {worse} {_pct(best_raw, c.raw[last])} "
            f"by epoch {E[last]}: keep the epoch-{ss} weights; {enough}."
        )
        if c.tr_raw is not None and np.isfinite(c.tr_raw[[sweet, last]]).all():
            advice.append(
                f"Meanwhile {c.train} kept improving ({_fmt(c.tr_raw[sweet])} -> {_fmt(c.tr_raw[last])}): "
                f"the model is memorising the training set; add regularisation (weight decay, dropout, "
                f"augmentation) or more data."
            )
        return "overfitting", advice + _gap_advice(gap, E, sweet, last), budget, patience

    k = min(5, max(2, n_ok // 3))
    slope = _slope(c.y[last - k + 1 : last + 1])
    se = c.sigma / math.sqrt(((np.arange(k) - (k - 1) / 2) ** 2).sum())
    descent = float(c.s[np.isfinite(c.s)][0] - np.nanmin(c.s))
    tr_slope = None if c.tr_y is None else _slope(c.tr_y[last - k + 1 : last + 1])
    if slope < -2 * se and -slope * (k - 1) > 0.05 * descent and (tr_slope is None or tr_slope < 0):
        rel = abs(slope) / max(abs(float(c.raw[last])), 1e-300) * 100
        budget = max(2 * n, n + 10)
        way = "falling" if sign > 0 else "rising"
        tr_txt = (
            ""
            if tr_slope is None
            else f", while {c.train} was {way} {_fmt(abs(tr_slope))} per epoch"
        )
        advice.append(
            f"{mon} was still {way} at the end: {_fmt(abs(slope))} per epoch "
            f"({rel:.1f}% per epoch) over the last {k} epochs{tr_txt}; the model is underfitting. Raise "
            f"the epoch budget (e.g. to {budget} epochs), the learning rate, or the model's capacity."
        )
        return "underfitting", advice, budget, patience

    after = E[last] - ss
    if after > 0:
        s_best, s_last = float(sign * c.s[m]), float(sign * c.s[last])
        advice.append(
            f"{mon} levelled off around epoch {ss} ({_fmt(best_raw)} there); over the {_n(after, 'epoch')} "
            f"after it the smoothed curve moved {_pct(s_best, s_last)} ({_fmt(s_best)} -> {_fmt(s_last)}): it "
            f"has converged; {enough}."
        )
    else:
        advice.append(
            f"{mon} reached its best at the last epoch, {ss} ({_fmt(best_raw)}), but the last {k} epochs "
            f"gained under 5% of the total descent: the budget was about right; a few more epochs "
            f"(patience {patience}) would confirm it."
        )
    return "good_fit", advice + _gap_advice(gap, E, sweet, last), budget, patience


def _enough(sweet: int, patience: int, ran: int) -> tuple[int, str]:
    """The epoch budget to suggest for a curve that converged or overfit, and the clause saying it.

    A patience stopper stops ``patience`` epochs after the sweet spot; when that is not before the run's own
    last epoch, the run was not longer than needed, and the advice says so instead of naming a budget the
    run did not even reach (it never suggests more epochs than the run had)."""
    budget = sweet + patience
    if budget < ran:
        saved = ran - budget
        return budget, (
            f"next time a budget of {budget} epochs with patience {patience} is enough "
            f"({saved} fewer than the {ran} run here)"
        )
    return ran, (
        f"the {ran} epochs run here were enough (a stopper with patience {patience} would not have "
        f"stopped before epoch {budget})"
    )


def _gap_advice(gap, E, sweet: int, last: int) -> list[str]:
    if not gap or gap[sweet] is None or gap[last] is None:
        return []
    if gap[sweet] < 0:  # val better than train: _negative_gap says so, and why
        return []
    head = "The generalization gap (how much worse val is than train) was"
    if sweet == last:
        return [f"{head} {_fmt(gap[last])} at epoch {E[last]}."]
    return [
        f"{head} {_fmt(gap[sweet])} at epoch {E[sweet]} and {_fmt(gap[last])} at epoch {E[last]}."
    ]


def _and(items: tuple[str, ...]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _negative_gap(c: _Ctx, gap, sweet: int | None) -> list[str]:
    """One sentence when validation is better than training at the kept epoch (else the last one with
    both), with a median gap up to there beyond the curve's noise and 1% of its range: regularisers acting
    in training only (named when the run's config says which) and an epoch-averaged train metric make
    training look worse; without either, the split may leak."""
    if not gap or c.train is None:
        return []
    both = [i for i, g in enumerate(gap) if g is not None]
    if not both:
        return []
    i = sweet if sweet is not None and gap[sweet] is not None else both[-1]
    # the median gap up to that epoch (the sweet spot's own value is picked for being low) beyond twice the
    # smoothed noise and 1% of the curve's range: a gap of about 0 says nothing
    finite = c.s[np.isfinite(c.s)]
    span = float(finite.max() - finite.min()) if finite.size else 0.0
    median = float(np.median([g for g in gap[: i + 1] if g is not None]))
    if not (gap[i] < 0 and median < -max(2 * c.sigma / math.sqrt(c.w), 0.01 * span)):
        return []
    over = f"epoch {c.epochs[0]}" if i == 0 else f"epochs {c.epochs[0]}-{c.epochs[i]}"
    head = (
        f"{c.monitor} is better than {c.train} (generalization gap {_fmt(gap[i])} at epoch "
        f"{c.epochs[i]}, median {_fmt(median)} over {over})"
    )
    averaged = (
        f"{c.train} is also averaged over each epoch while the weights are still improving, and "
        f"{c.monitor} is measured at the epoch's end"
    )
    if c.regularisers:
        acts = "acts" if len(c.regularisers) == 1 else "act"
        return [
            f"{head}: expected with this run's {_and(c.regularisers)}, which {acts} in training only, "
            f"so {c.train} is measured on a harder task than {c.monitor}; {averaged}. This alone is no "
            f"sign of leakage."
        ]
    return [
        f"{head}: common when dropout, augmentation or label smoothing/noise act in training only "
        f"({c.train} is measured with them on, {c.monitor} with them off); {averaged}. If none of "
        f"these applies, check that the validation rows are not easier than, or copies of, the "
        f"training rows (epochpilot audit TRAIN.csv --val VAL.csv)."
    ]

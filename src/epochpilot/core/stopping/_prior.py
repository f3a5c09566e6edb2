"""Empirical prior for :class:`~epochpilot.core.stopping.forecast.Forecast`: curve features -> P(improve).

A logistic model over scale-free features of the curve so far (the curve ensemble's own forecast, the
recent trend's t-statistic, epochs since the best, the train curve's trend, how far into the budget, and the
run's context when given: the lr schedule still to come and the metric's resolution). It was fitted by
``bench/stopping.py --fit-prior`` on the *validation* curves of every benchmark corpus, never on test
metrics; which features, label floor and decision settings ship was chosen leave-one-corpus-out (by the
worst held-out ratio). The label at epoch ``e`` is "one of the next ``lookahead`` epochs beats the best so
far by more than ``LABEL_NOISE`` times the curve's noise and by more than ``label_rel`` of ``|best|``"
(``label_rel`` 0.5% or 1.5%, stored with the weights; ``LABEL_REL`` is the historical 1.5%). Weights live in :mod:`epochpilot.core.stopping._prior_weights` (generated, plain floats). Pure numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from epochpilot.core.stopping._curvefit import CurveForecast

__all__ = [
    "CONTEXT_FEATURES",
    "FEATURES",
    "LABEL_NOISE",
    "LABEL_REL",
    "TRAIN_FEATURES",
    "context_features",
    "features",
    "predict",
]

#: a future gain counts when it beats the best by more than this many noise standard deviations
LABEL_NOISE = 1.0
#: ... and by more than this fraction of ``|best|`` (converged smooth curves have almost no noise)
LABEL_REL = 0.015

FEATURES = (
    "ensemble_logit",
    "gain_z",
    "log_since_best",
    "since_best_frac",
    "trend_t",
    "short_trend_t",
    "gap_z",
    "progress_z",
    "recent_gain_z",
    "train_trend_t",
    "has_train",
    "rel_noise",
    "rel_recent_gain",
    "budget_frac",
    "lr_drop_ahead",
    "lr_drop_rest",
    "lr_recent_drop",
    "has_schedule",
    "resolution_z",
)
#: features from the run's context (the learning-rate schedule, the metric's resolution): 0 when not given
CONTEXT_FEATURES = (
    "lr_drop_ahead",
    "lr_drop_rest",
    "lr_recent_drop",
    "has_schedule",
    "resolution_z",
)
#: features that need the train curve: 0 without one (a separate weight set is fitted for that case)
TRAIN_FEATURES = ("train_trend_t", "has_train")


def _slog(x: float) -> float:
    """Signed log1p: keeps sign, compresses large magnitudes."""
    return math.copysign(math.log1p(abs(x)), x)


def _trend_t(values: np.ndarray) -> float:
    """t-statistic of the least-squares slope (negative = improving), clipped to [-20, 20]."""
    n = len(values)
    if n < 3:
        return 0.0
    x = np.arange(n, dtype=float) - (n - 1) / 2.0
    sxx = float(np.sum(x * x))
    slope = float(np.sum(x * (values - values.mean()))) / sxx
    resid = values - values.mean() - slope * x
    se = math.sqrt(max(float(np.sum(resid * resid)) / (n - 2), 1e-300) / sxx)
    return float(np.clip(slope / se, -20.0, 20.0)) if se > 0 else 0.0


def features(
    epochs: Sequence[int],
    values: Sequence[float],
    train: Sequence[float | None],
    fc: CurveForecast,
    budget: int,
    lookahead: int = 3,
    schedule: Sequence[float] | None = None,
    resolution: float = 0.0,
) -> np.ndarray:
    """Feature vector (order of ``FEATURES``) at the last epoch seen; ``values`` lower-is-better.

    ``budget`` (epochs planned) gives the position in the budget: a stop early in the budget forfeits
    more, so the prior asks for more evidence there. ``schedule``/``resolution``: see
    :func:`context_features`."""
    y = np.asarray(values, dtype=float)
    e = int(epochs[-1])
    n = len(y)
    i_best = int(np.argmin(y))
    best = float(y[i_best])
    sigma = max(fc.sigma, 1e-6 * abs(best), 1e-12)
    since = e - int(epochs[i_best])
    p = min(max(fc.p_improve, 1e-4), 1 - 1e-4)
    w = max(5, n // 2)
    past_best = float(np.min(y[: max(n - w, 1)]))
    tr = np.array([v for v in train[-w:] if v is not None], dtype=float)
    return np.array(
        [
            math.log(p / (1 - p)),
            _slog((fc.reference - fc.best) / sigma),
            math.log1p(since),
            since / max(e, 1),
            _trend_t(y[-w:]),
            _trend_t(y[-5:]),
            _slog((y[-1] - best) / sigma),
            _slog((float(y[0]) - best) / sigma),
            _slog((past_best - best) / sigma),
            _trend_t(tr) if len(tr) >= 3 else 0.0,
            1.0 if len(tr) >= 3 else 0.0,
            math.log(sigma / (abs(best) + sigma)),
            math.log1p(1000.0 * max(past_best - best, 0.0) / (abs(best) + sigma)),
            min(e / max(int(budget), 1), 1.0),  # past the budget (an extension) counts as its end
            *context_features(e, int(budget), lookahead, schedule, resolution, sigma),
        ]
    )


def _lr_at(schedule: Sequence[float], epoch: int) -> float:
    """Learning rate of ``epoch`` (1-based); past the schedule's end its last value."""
    return float(schedule[min(max(epoch, 1), len(schedule)) - 1])


def context_features(
    epoch: int,
    budget: int,
    lookahead: int,
    schedule: Sequence[float] | None,
    resolution: float,
    sigma: float,
) -> list[float]:
    """The ``CONTEXT_FEATURES`` at ``epoch``: log-ratios of the current learning rate to the lowest one in
    the look-ahead and in the rest of the budget (a step drop or a cosine tail still to come), to the highest
    one of the last ``lookahead`` epochs (a drop just happened), and the metric's resolution (e.g. one
    validation example of accuracy) in units of the curve's noise ``sigma``."""
    out = [0.0, 0.0, 0.0, 0.0]
    if schedule:
        now = max(_lr_at(schedule, epoch), 1e-300)
        ahead = [_lr_at(schedule, e) for e in range(epoch + 1, epoch + lookahead + 1)]
        rest = [_lr_at(schedule, e) for e in range(epoch + 1, max(budget, epoch + 1) + 1)]
        past = [_lr_at(schedule, e) for e in range(max(1, epoch - lookahead), epoch + 1)]

        def lg(a: float, b: float) -> float:
            return float(min(max(math.log(max(a, 1e-300) / max(b, 1e-300)), 0.0), 7.0))

        out = [lg(now, min(ahead)), lg(now, min(rest)), lg(max(past), now), 1.0]
    out.append(_slog(float(resolution) / max(sigma, 1e-12)) if resolution > 0 else 0.0)
    return out


def predict(x: np.ndarray, weights: dict) -> float:
    """Logistic P(improve) from standardised features (those of ``FEATURES`` the weight set names)."""
    names = weights.get("features", FEATURES)
    if tuple(names) != FEATURES:
        x = x[[FEATURES.index(f) for f in names]]
    z = (x - np.asarray(weights["mean"])) / np.asarray(weights["scale"])
    s = float(np.dot(z, np.asarray(weights["coef"])) + weights["bias"])
    return 1.0 / (1.0 + math.exp(-s)) if s > -700 else 0.0

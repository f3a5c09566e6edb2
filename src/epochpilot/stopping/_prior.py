"""Empirical prior for :class:`~epochpilot.stopping.forecast.Forecast`: curve features -> P(improve).

A logistic model over scale-free features of the curve so far (the curve ensemble's own forecast, the
recent trend's t-statistic, epochs since the best, the train curve's trend, how far into the budget). It was fitted by
``bench/stopping.py --fit-prior`` on the *validation* curves of the tuning split of the benchmark corpora
(generated MLP/CNN curves and TaskSet RNN curves), never on test metrics. The label at epoch ``e`` is
"one of the next ``lookahead`` epochs beats the best so far by more than ``LABEL_NOISE`` times the curve's
noise and by more than ``LABEL_REL`` of ``|best|``" (the 1.5% floor was chosen on the tuning split, over
0.5% to 3%, together with the budget-position feature: without a floor, smooth curves that creep down forever
never stop; 0.5% stopped less often but no better). Weights live in :mod:`epochpilot.stopping._prior_weights` (generated, plain floats). Pure numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from epochpilot.stopping._curvefit import CurveForecast

__all__ = ["FEATURES", "LABEL_NOISE", "LABEL_REL", "TRAIN_FEATURES", "features", "predict"]

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
) -> np.ndarray:
    """Feature vector (order of ``FEATURES``) at the last epoch seen; ``values`` lower-is-better.

    ``budget`` (epochs planned) gives the position in the budget: a stop early in the budget forfeits
    more, so the prior asks for more evidence there."""
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
        ]
    )


def predict(x: np.ndarray, weights: dict) -> float:
    """Logistic P(improve) from standardised features."""
    z = (x - np.asarray(weights["mean"])) / np.asarray(weights["scale"])
    s = float(np.dot(z, np.asarray(weights["coef"])) + weights["bias"])
    return 1.0 / (1.0 + math.exp(-s)) if s > -700 else 0.0

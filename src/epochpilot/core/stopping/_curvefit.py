"""Learning-curve ensemble for :class:`~epochpilot.core.stopping.forecast.Forecast` (pure numpy).

Each model is ``c + a*phi(t) [+ d*t]`` with ``phi`` a decaying basis (power law ``t**-alpha`` or exponential
``exp(-beta*t)``) on a fixed grid of shapes and an optional linear "overfitting upturn" ``d*t`` with ``d >= 0``.
For a fixed shape the model is linear in its coefficients, so every grid point is one weighted least-squares
solve (variable projection); all grid points are solved at once with batched normal equations. Models are
averaged with BIC weights, and each model's coefficient covariance gives the uncertainty of the forecast gain.
Everything is closed form: no sampling, so the result is deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["CurveForecast", "fit_forecast"]

_ALPHAS = np.geomspace(0.05, 4.0, 12)  # power-law exponents
_BETAS = np.geomspace(0.01, 1.5, 12)  # exponential rates (per epoch)
_SQRT2 = math.sqrt(2.0)


@dataclass(frozen=True)
class CurveForecast:
    """What the ensemble expects from the epochs after the last one seen (internal units: lower is better)."""

    p_improve: float  # P(some future epoch's expected value beats the reference by more than delta)
    reference: float  # fitted (denoised) best value over the epochs seen
    best: float  # mixture forecast of the best future value
    best_epoch: int  # epoch at which the most likely model puts that best
    sd: float  # standard deviation of that forecast
    sigma: float  # estimated noise of one epoch's value


def _norm_cdf(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF, vectorised without scipy."""
    erf = np.frompyfunc(math.erf, 1, 1)
    return 0.5 * (1.0 + erf(np.asarray(x, dtype=float) / _SQRT2).astype(float))


def _bases(t: np.ndarray) -> np.ndarray:
    """Decaying basis functions, shape (n_shapes, len(t)), each scaled to [0, 1] on t >= 1."""
    pw = np.power(t[None, :], -_ALPHAS[:, None])
    ex = np.exp(-_BETAS[:, None] * (t[None, :] - 1.0))
    return np.concatenate([pw, ex])


def fit_forecast(
    epochs: np.ndarray,
    values: np.ndarray,
    horizon: int,
    delta: float,
    tau_frac: float = 0.5,
    tau_min: float = 5.0,
    sigma_floor: float = 1e-3,
    temperature: float = 1.0,
    noise_factor: float = 0.0,
    start_frac: float = 0.0,
) -> CurveForecast:
    """Fit the ensemble to ``values`` (lower is better) at ``epochs`` and forecast ``horizon`` more epochs.

    ``delta`` is the improvement (in the values' units) that counts; recent epochs weigh more
    (``exp(-(n - t) / tau)``, ``tau = max(tau_min, tau_frac * n)``); ``sigma_floor`` (relative to the
    curve's range) keeps a perfectly smooth curve from looking infinitely certain. A gain only counts when
    it also exceeds ``noise_factor`` times the estimated noise of one epoch (smaller gains cannot be told
    apart from luck). Epochs before ``start_frac`` of those seen (the early transient) are not fitted.
    """
    t = np.asarray(epochs, dtype=float)
    y = np.asarray(values, dtype=float)
    best_seen = float(np.min(y))
    first = min(int(start_frac * len(y)), max(len(y) - 5, 0))
    t, y = t[first:], y[first:]
    n = len(y)
    lo, hi = float(np.min(y)), float(np.max(y))
    scale = hi - lo if hi > lo else max(abs(hi), 1.0) * 1e-6 + 1e-12
    z = (y - lo) / scale
    last = t[-1]
    if horizon <= 0:
        return CurveForecast(0.0, best_seen, best_seen, int(last), 0.0, 0.0)
    tf = last + _future_steps(horizon)
    tau = max(tau_min, tau_frac * n)
    w = np.exp(-(last - t) / tau)
    sw = np.sqrt(w)
    phi_all = _bases(np.concatenate([t, tf]))  # (S, n + h)
    s_count = phi_all.shape[0]
    ones = np.ones((s_count, n + len(tf)))
    lin = np.broadcast_to((np.concatenate([t, tf]) - last) / max(n, 1), (s_count, n + len(tf)))
    # design matrices: (M, n + h, p) for the 2-parameter and 3-parameter (upturn) families
    designs = [np.stack([ones, phi_all], axis=-1), np.stack([ones, phi_all, lin], axis=-1)]
    results = []  # per family: (sse, p, gain, var_gain, best_future, t_best_future, ref) arrays
    for x in designs:
        p = x.shape[-1]
        xo, xf = x[:, :n, :], x[:, n:, :]
        xw = xo * sw[None, :, None]
        gram = np.einsum("mnp,mnq->mpq", xw, xw) + 1e-10 * np.eye(p)
        rhs = np.einsum("mnp,n->mp", xw, sw * z)
        try:
            inv = np.linalg.inv(gram)
        except np.linalg.LinAlgError:
            continue
        theta = np.einsum("mpq,mq->mp", inv, rhs)
        fit_o = np.einsum("mnp,mp->mn", xo, theta)
        fit_f = np.einsum("mnp,mp->mn", xf, theta)
        sse = np.einsum("n,mn->m", w, (fit_o - z[None, :]) ** 2)
        valid = (
            theta[:, 1] >= 0.0
        )  # a decaying curve (a rising saturation is handled by the upturn term)
        if p == 3:
            valid &= theta[:, 2] >= 0.0
        i_ref = np.argmin(fit_o, axis=1)
        i_fut = np.argmin(fit_f, axis=1)
        m_idx = np.arange(x.shape[0])
        ref = fit_o[m_idx, i_ref]
        fut = fit_f[m_idx, i_fut]
        g = xo[m_idx, i_ref, :] - xf[m_idx, i_fut, :]
        var_unit = np.einsum("mp,mpq,mq->m", g, inv, g)
        results.append((sse, p, ref - fut, var_unit, fut, tf[i_fut], ref, valid))
    sse = np.concatenate([r[0] for r in results])
    pcount = np.concatenate([np.full(len(r[0]), r[1]) for r in results])
    valid = np.concatenate([r[7] for r in results])
    w_sum = float(np.sum(w))
    n_eff = w_sum**2 / float(np.sum(w * w))
    dof = np.maximum(w_sum - pcount, 1.0)
    sig2 = max(float(np.min(np.where(valid, sse / dof, np.inf))), sigma_floor**2)
    if not math.isfinite(sig2):
        sig2 = max(float(np.min(sse / dof)), sigma_floor**2)
        valid = np.ones_like(valid)
    score = -0.5 * sse / sig2 / temperature - 0.5 * pcount * math.log(max(n_eff, 2.0))
    score = np.where(valid, score, -np.inf)
    weights = np.exp(score - np.max(score))
    weights /= weights.sum()
    gain = np.concatenate([r[2] for r in results])
    var = np.concatenate([r[3] for r in results]) * sig2 + (sigma_floor**2) * 0.0
    sd = np.sqrt(np.maximum(var, 1e-24))
    d = max(delta / scale, noise_factor * math.sqrt(sig2))
    p_m = _norm_cdf((gain - d) / sd)
    p_improve = float(np.clip(np.sum(weights * p_m), 0.0, 1.0))
    fut = np.concatenate([r[4] for r in results])
    t_fut = np.concatenate([r[5] for r in results])
    ref = np.concatenate([r[6] for r in results])
    best = float(np.sum(weights * fut))
    spread = float(np.sqrt(np.sum(weights * ((fut - best) ** 2 + var))))
    top = int(np.argmax(weights))
    return CurveForecast(
        p_improve=p_improve,
        reference=lo + scale * float(np.sum(weights * ref)),
        best=lo + scale * best,
        best_epoch=int(t_fut[top]),
        sd=scale * spread,
        sigma=scale * math.sqrt(sig2),
    )


#: Future epochs evaluated one by one; beyond, a geometric grid up to the horizon (memory stays bounded when a
#: budget of millions of epochs makes the look-ahead huge; every horizon up to this is evaluated exactly).
EXACT_HORIZON = 512


def _future_steps(horizon: int) -> np.ndarray:
    """Epochs after the last one at which the forecast is evaluated: every one up to ``EXACT_HORIZON``, then
    256 geometrically spaced ones ending at ``horizon``."""
    if horizon <= EXACT_HORIZON:
        return np.arange(1, horizon + 1, dtype=float)
    tail = np.geomspace(EXACT_HORIZON + 1, horizon, 256).round()
    return np.unique(np.concatenate([np.arange(1, EXACT_HORIZON + 1, dtype=float), tail]))

"""Leave-one-corpus-out machinery for bench/stopping.py: cached Forecast features, score.py-exact scoring.

Forecast's expensive part (the curve ensemble and the features) does not depend on the prior's weights, so
each curve is replayed once and its per-epoch features are cached; every prior fit, confidence and floor is
then scored with numpy alone. Scores follow ``../shared/stopbench/score.py`` exactly: compute = mean(stop /
budget), regret per curve against the full run's best-validation epoch, the patience frontier over patience
1..30 interpolated (and clamped at its ends) at a policy's compute.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _replay import GRAD, TRAIN, VAL, Curve, metrics_at, noise_sd, regret

from epochpilot.stopping import _prior
from epochpilot.stopping.forecast import Forecast

PATIENCES = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 25, 30)  # as score.py
CACHE = Path(tempfile.gettempdir()) / "epochpilot-stopbench"
BIG = 1 << 30
TRACE_VERSION = 1


def feed(c: Curve, i: int) -> dict[str, float]:
    """What the bench feeds a policy at epoch ``i + 1``: score.py's {"val", "train"} plus the grad norm;
    a train curve in "max" orientation (AlgoPerf's accuracy/mAP) is flipped so that it reads like a loss."""
    m = metrics_at(c, i)
    if c.kind == "rel" and c.mode == "max":
        m[TRAIN] = -m[TRAIN]
    return m


def context(c: Curve) -> dict:
    """Forecast's context arguments for ``c``: the per-epoch lr schedule and the metric's resolution."""
    out: dict = {}
    if c.lr is not None and np.all(np.isfinite(c.lr)):
        out["schedule"] = [float(v) for v in c.lr]
    if c.kind == "acc" and c.n_val:
        out["resolution"] = 1.0 / c.n_val
    return out


@dataclass
class Row:
    """One corpus x metric, with everything needed to score any Forecast setting or patience rule."""

    title: str
    corpus: str
    unit: str
    budgets: np.ndarray  # (C,)
    regret_at: list[np.ndarray]  # per curve: regret when stopping at epoch 1..budget
    nonfinite: np.ndarray  # (C,) first non-finite validation epoch (Forecast stops there), else BIG
    waits: list[
        np.ndarray
    ]  # per curve: score.py patience's "epochs without a new best" after each epoch
    X: np.ndarray  # (R, F) features at every forecasting epoch
    curve_of: np.ndarray  # (R,) curve index of each feature row
    epoch: np.ndarray  # (R,) 1-based epoch of each row
    since: np.ndarray  # (R,) epochs since the best at that row
    excursion: np.ndarray  # (R,) the excursion guard holds
    gain: (
        np.ndarray
    )  # (R,) validation gain over the next look-ahead (internal units, for labels only)
    unit_noise: np.ndarray  # (R,) curve noise sd (labels only)
    best: np.ndarray  # (R,) |best so far| (labels only)
    names: list[str]

    def __len__(self) -> int:
        return len(self.budgets)


def _trace(c: Curve):
    """Replay ``c`` once through Forecast (no prior needed) and record features and label inputs."""
    pol = Forecast(
        VAL, c.mode, budget=c.budget, train_monitor=TRAIN, grad_monitor=GRAD, **context(c)
    )
    y = c.valid if c.mode == "min" else -c.valid
    sigma = noise_sd(y)
    rows = []
    for i in range(c.budget):
        if not math.isfinite(c.valid[i]):
            break
        pol.update(i + 1, feed(c, i))
        x = pol.last_features
        if x is None:
            continue
        future = y[i + 1 : i + 1 + pol.lookahead]
        future = future[np.isfinite(future)]
        best = float(np.nanmin(y[: i + 1]))
        gain = best - float(future.min()) if len(future) else 0.0
        exc = pol.excursion() is not None
        rows.append((x, i + 1, i + 1 - int(pol.best_epoch_), exc, gain, sigma, abs(best)))
    return rows


def _patience_waits(c: Curve) -> np.ndarray:
    sign = 1 if c.mode == "min" else -1
    best, wait, out = math.inf, 0, []
    for v in c.valid:
        if math.isfinite(v) and sign * v < best:
            best, wait = sign * v, 0
        else:
            wait += 1
        out.append(wait)
    return np.array(out)


def trace_key(curves: list[Curve]) -> str:
    """Cache key: the curves, their context, and the code that computes features (bump TRACE_VERSION
    when ``_trace`` changes)."""
    from epochpilot.stopping import _curvefit

    return hashlib.sha1(
        repr([(c.name, c.kind, c.valid.tobytes(), c.train.tobytes()) for c in curves]).encode()
        + repr([(None if c.lr is None else c.lr.tobytes(), c.n_val) for c in curves]).encode()
        + repr((_prior.FEATURES, TRACE_VERSION)).encode()
        + Path(_prior.__file__).read_bytes()
        + Path(_curvefit.__file__).read_bytes()
    ).hexdigest()[:16]


def build_row(title: str, corpus: str, unit: str, curves: list[Curve]) -> Row:
    """Replay every curve once; the result is cached on disk by the curves' content."""
    h = trace_key(curves)
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{corpus}-{title.split()[-1]}-{h}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    xs, meta, curve_of = [], [], []
    budgets, regs, nonfin, waits = [], [], [], []
    for j, c in enumerate(curves):
        for x, e, s, exc, g, sg, b in _trace(c):
            xs.append(x)
            meta.append((e, s, exc, g, sg, b))
            curve_of.append(j)
        budgets.append(c.budget)
        regs.append(np.array([regret(c, s) for s in range(1, c.budget + 1)]))
        bad = np.flatnonzero(~np.isfinite(c.valid))
        nonfin.append(int(bad[0]) + 1 if len(bad) else BIG)
        waits.append(_patience_waits(c))
    m = np.array(meta, dtype=float).reshape(-1, 6)
    row = Row(
        title=title,
        corpus=corpus,
        unit=unit,
        budgets=np.array(budgets),
        regret_at=regs,
        nonfinite=np.array(nonfin),
        waits=waits,
        X=np.array(xs).reshape(-1, len(_prior.FEATURES)),
        curve_of=np.array(curve_of, dtype=int),
        epoch=m[:, 0].astype(int),
        since=m[:, 1].astype(int),
        excursion=m[:, 2].astype(bool),
        gain=m[:, 3],
        unit_noise=m[:, 4],
        best=m[:, 5],
        names=[c.name for c in curves],
    )
    path.write_bytes(pickle.dumps(row))
    return row


# -- scoring (score.py semantics) -------------------------------------------------------------------
def summarise(row: Row, stops: np.ndarray) -> tuple[float, float, float]:
    """(compute, mean regret, p90 regret) of per-curve stop epochs."""
    stops = np.minimum(stops, row.budgets)
    reg = np.array([r[s - 1] for r, s in zip(row.regret_at, stops)])
    return (
        float(np.mean(stops / row.budgets)),
        float(np.mean(reg)),
        float(np.percentile(reg, 90)),
    )


def patience_stops(row: Row, p: int) -> np.ndarray:
    """Stop epochs of score.py's patience(p)."""
    out = []
    for w in row.waits:
        hit = np.flatnonzero(w >= p)
        out.append(int(hit[0]) + 1 if len(hit) else len(w))
    return np.array(out)


def frontier(row: Row) -> list[tuple[float, float, float]]:
    """score.py's frontier: sorted (compute, mean, p90) of patience 1..30."""
    return sorted(summarise(row, patience_stops(row, p)) for p in PATIENCES)


def frontier_at(pts, compute: float) -> tuple[float, float]:
    """score.py's frontier_at: linear interpolation, clamped to the end points."""
    if compute <= pts[0][0]:
        return pts[0][1], pts[0][2]
    if compute >= pts[-1][0]:
        return pts[-1][1], pts[-1][2]
    for (c0, m0, p0), (c1, m1, p1) in zip(pts, pts[1:]):
        if c0 <= compute <= c1:
            w = 0.0 if c1 == c0 else (compute - c0) / (c1 - c0)
            return m0 + w * (m1 - m0), p0 + w * (p1 - p0)
    raise AssertionError("unreachable")


def ratio(mean: float, front_mean: float) -> float:
    """Mean regret over the frontier's at equal compute (0 when both are <= 0, inf when only it is)."""
    if front_mean > 1e-12:
        return mean / front_mean
    return 0.0 if mean <= front_mean + 1e-12 else math.inf


def forecast_stops(
    row: Row,
    p: np.ndarray,
    confidence: float,
    floor: int = 0,
    min_fraction: float = 0.0,
    blank_guard: bool = False,
) -> np.ndarray:
    """Stop epochs of Forecast given P(improve) ``p`` at every feature row (excursion guard, floors, NaN)."""
    first = np.ceil(min_fraction * row.budgets[row.curve_of] - 1e-9)
    cond = (p < 1.0 - confidence) & (row.since >= floor) & (row.epoch >= first)
    if not blank_guard:
        cond &= ~row.excursion
    first = np.full(len(row), BIG)
    if cond.any():
        np.minimum.at(first, row.curve_of[cond], row.epoch[cond])
    return np.minimum(np.minimum(first, row.nonfinite), row.budgets)


# -- the prior ----------------------------------------------------------------------------------------
def labels(row: Row, label_rel: float) -> tuple[np.ndarray, np.ndarray]:
    """(label, gain in label units) at each feature row: a gain > LABEL_NOISE noise sds and > label_rel|best|."""
    unit = np.maximum(np.maximum(row.unit_noise, label_rel * row.best / _prior.LABEL_NOISE), 1e-12)
    gz = row.gain / unit
    return (gz > _prior.LABEL_NOISE).astype(float), gz


def logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float) -> dict:
    """Weighted L2 logistic regression on standardised features (Newton / IRLS)."""
    mean, scale = x.mean(0), x.std(0)
    scale = np.where(scale < 1e-6, 1.0, scale)
    z = np.column_stack([(x - mean) / scale, np.ones(len(x))])
    theta = np.zeros(z.shape[1])
    lam = l2 * np.eye(z.shape[1])
    lam[-1, -1] = 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ theta, -30, 30)))
        grad = z.T @ (w * (p - y)) + lam @ theta
        hess = (z * (w * p * (1 - p))[:, None]).T @ z + lam + 1e-9 * np.eye(len(theta))
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return {
        "mean": [round(float(v), 6) for v in mean],
        "scale": [round(float(v), 6) for v in scale],
        "coef": [round(float(v), 6) for v in theta[:-1]],
        "bias": round(float(theta[-1]), 6),
    }


def fit(
    rows: list[Row],
    names: tuple[str, ...],
    label_rel: float,
    l2: float = 1.0,
    gain_weight: float = 1.0,
    per_row: int = 30000,
    blank_train: bool = False,
) -> dict:
    """Fit a weight set over features ``names`` on ``rows`` (each row weighs the same)."""
    idx = [_prior.FEATURES.index(f) for f in names]
    xs, ys, ws = [], [], []
    rng = np.random.default_rng(0)
    for r in rows:
        y, gz = labels(r, label_rel)
        take = np.arange(len(y))
        if len(take) > per_row:
            take = np.sort(rng.choice(len(y), per_row, replace=False))
        x = r.X[take][:, idx].copy()
        if blank_train:
            for f in _prior.TRAIN_FEATURES:
                if f in names:
                    x[:, names.index(f)] = 0.0
        xs.append(x)
        ys.append(y[take])
        ws.append((1.0 + gain_weight * y[take] * np.log1p(np.maximum(gz[take], 0.0))) / len(take))
    x, y, w = np.concatenate(xs), np.concatenate(ys), np.concatenate(ws)
    w = w / w.mean()
    out = {"features": list(names), **logistic(x, y, w, l2)}
    out.update({"l2": l2, "gain_weight": gain_weight, "label_rel": label_rel})
    return out


def p_improve(row: Row, weights: dict) -> np.ndarray:
    """The prior's P(improve) at every feature row (vectorised ``_prior.predict``)."""
    idx = [_prior.FEATURES.index(f) for f in weights["features"]]
    z = (row.X[:, idx] - np.asarray(weights["mean"])) / np.asarray(weights["scale"])
    s = z @ np.asarray(weights["coef"]) + weights["bias"]
    return 1.0 / (1.0 + np.exp(-np.clip(s, -700, 700)))


def check_shortcut(row, curves_of_row, weights: dict, setting, n: int = 12) -> None:
    """The cached-feature shortcut must agree with the real Forecast on a few curves."""
    from epochpilot.stopping import _prior_weights

    saved = _prior_weights.WEIGHTS
    _prior_weights.WEIGHTS = weights
    try:
        p = p_improve(row, weights)
        fast = forecast_stops(row, p, setting.confidence, setting.floor, setting.min_fraction)
        if setting.cap:
            fast = np.minimum(fast, patience_stops(row, setting.cap))
        for j in range(0, len(curves_of_row), max(1, len(curves_of_row) // n)):
            c = curves_of_row[j]
            pol = Forecast(
                VAL,
                c.mode,
                budget=c.budget,
                train_monitor=TRAIN,
                grad_monitor=GRAD,
                confidence=setting.confidence,
                patience_floor=setting.floor,
                min_fraction=setting.min_fraction,
                patience_cap=setting.cap,
                **context(c),
            )
            real = c.budget
            for i in range(c.budget):
                if pol.update(i + 1, feed(c, i)).stop:
                    real = i + 1
                    break
            if real != fast[j]:
                raise RuntimeError(
                    f"shortcut disagrees with Forecast on {c.name}: {fast[j]} vs {real}"
                )
    finally:
        _prior_weights.WEIGHTS = saved

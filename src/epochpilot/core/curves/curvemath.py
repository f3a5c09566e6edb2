"""Small numeric helpers behind curve analysis: smoothing, noise, best index, slopes and number wording.

Pure (numpy only).
"""

from __future__ import annotations

import math

import numpy as np


def _window(n: int) -> int:
    return 1 if n < 6 else 3 if n < 15 else 5 if n < 60 else 7


def _smooth(y: np.ndarray, w: int) -> np.ndarray:
    """Centred moving average over the finite values, window shrinking at the edges; NaN where none."""
    h = w // 2
    out = np.full(len(y), np.nan)
    for i in range(len(y)):
        seg = y[max(0, i - h) : i + h + 1]
        seg = seg[np.isfinite(seg)]
        if seg.size:
            out[i] = seg.mean()
    return out


def _noise(y: np.ndarray) -> float:
    f = y[np.isfinite(y)]
    if f.size < 5:
        return 0.0
    d2 = f[2:] - 2 * f[1:-1] + f[:-2]
    return float(1.4826 * np.median(np.abs(d2 - np.median(d2))) / math.sqrt(6))


def _argbest(v: np.ndarray, idx: np.ndarray | None = None) -> int | None:
    """Index of the minimum of ``v`` (finite values only), earliest among ties within a range-relative tol."""
    if idx is None:
        idx = np.arange(len(v))
    idx = idx[np.isfinite(v[idx])]
    if idx.size == 0:
        return None
    sub = v[idx]
    tol = 1e-9 * max(float(sub.max() - sub.min()), 1e-300)
    return int(idx[np.nonzero(sub <= sub.min() + tol)[0][0]])


def _slope(y: np.ndarray) -> float:
    """Least-squares slope per epoch of the finite values of ``y``."""
    ok = np.isfinite(y)
    return float(np.polyfit(np.nonzero(ok)[0], y[ok], 1)[0]) if ok.sum() >= 2 else 0.0


def _longest_wait(y: np.ndarray, end: int) -> int:
    """Longest run of epochs without a new best of ``y`` (the smoothed curve) up to index ``end``."""
    best, wait, longest = math.inf, 0, 0
    for v in y[: end + 1]:
        if math.isfinite(v) and v < best:
            best, wait = v, 0
        else:
            wait += 1
            longest = max(longest, wait)
    return longest


def _n(k: int, word: str) -> str:
    return f"{k} {word}" if k == 1 else f"{k} {word}s"


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _pct(a: float, b: float) -> str:
    """How much ``b`` differs from ``a``, in percent of |a| (or absolute when a is 0)."""
    if a == 0:
        return f"{abs(b - a):.3g}"
    return f"{abs(b - a) / abs(a) * 100:.1f}%"


# ----------------------------------------------------------------------------------------------- analysis

"""Learning-curve analysis: sweet spot, overfitting onset, phases, diagnosis and advice with numbers.

Pure (standard library + numpy), so it reads any framework's history. Every threshold is relative to the
curve's own noise or range, so the results do not change when a metric is rescaled (``a * x + b``, a > 0).

Definitions (epochs are 1-based, as everywhere in epochpilot):

* The monitored series is turned into a "badness" (``x`` for mode "min", ``-x`` for "max").
* ``smoothed``: centred moving average of the finite values, window ``w`` = 1 (n < 6), 3 (n < 15), 5 (n < 60)
  or 7 epochs, shrinking at the edges.
* ``noise``: robust per-epoch noise, ``1.4826 * MAD(second differences) / sqrt(6)`` (zero for smooth curves).
* ``sweet_spot``: the smoothed optimum locates the best *region*; the sweet spot is the epoch with the best raw
  value inside that region (the smoothing window around it), i.e. a checkpoint you actually have, robust to a
  single lucky epoch. Ties go to the earliest epoch. ``best_epoch`` is the plain raw optimum.
* ``overfit_onset``: the first epoch after the smoothed optimum from which the smoothed metric stays worse than
  the optimum by more than twice the smoothed noise until the end (at least 2 epochs, and ending worse by more
  than ``max(3 * smoothed noise, 1% of the range)``), while the smoothed train metric keeps improving.
  Without a train series the val-only rule is used.
* ``phases``: "fast_descent" runs from epoch 1 until the smoothed improvement rate has fallen below a fifth of
  its peak; "slow_optimization" follows until the onset; "overfitting_risk" runs from the onset to the end.
* ``generalization_gap``: val - train for mode "min", train - val for "max" (positive = val is worse). When
  it is negative at the sweet spot (val better than train), the advice says why that happens: regularisers
  acting in training only (named from ``regularisers`` when given) and a train metric averaged over the epoch.

NaN handling: ``None``/NaN/inf values are non-finite; a non-finite monitored or train value means "diverged".
Keys missing from a row (e.g. validation every other epoch) are skipped, not treated as divergence.

>>> h = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1 / e + (e - 10) ** 2 / 200} for e in range(1, 31)]
>>> r = analyze(h, "val_loss", "min")
>>> r.diagnosis, r.sweet_spot
('overfitting', 11)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from epochpilot.core.curves.curvemath import _argbest, _noise, _smooth, _window
from epochpilot.core.curves.diagnosis import _Ctx, _diagnose

__all__ = ["DIAGNOSES", "PHASES", "CurveReport", "Phase", "analyze"]

DIAGNOSES = ("underfitting", "good_fit", "overfitting", "diverged", "too_noisy_to_tell")
PHASES = ("fast_descent", "slow_optimization", "overfitting_risk")
_NOT_METRICS = ("epoch", "step", "stage")


@dataclass(frozen=True)
class Phase:
    """A named stretch of training, ``start`` to ``end`` inclusive (1-based epochs)."""

    name: str
    start: int
    end: int

    @property
    def length(self) -> int:
        """Number of epochs in the phase."""
        return self.end - self.start + 1


@dataclass(frozen=True)
class CurveReport:
    """What a learning curve says: where the best weights are, when overfitting began, and what to do next.

    Epoch fields are 1-based epoch numbers (None when the curve has no finite value); ``smoothed`` is the
    centred moving average of the monitor (window ``window``), ``noise`` its per-epoch noise estimate. The
    module docstring defines each field precisely.
    """

    monitor: str
    mode: str
    train_monitor: str | None
    epochs: tuple[int, ...]
    sweet_spot: int | None
    best_epoch: int | None
    best_value: float | None
    overfit_onset: int | None
    phases: tuple[Phase, ...]
    generalization_gap: tuple[float | None, ...]
    diagnosis: str
    advice: tuple[str, ...]
    smoothed: tuple[float | None, ...]
    noise: float
    window: int
    suggested_epochs: int | None
    suggested_patience: int | None

    def phase_at(self, epoch: int) -> str | None:
        """Name of the phase containing ``epoch`` (None when no phase covers it)."""
        for p in self.phases:
            if p.start <= epoch <= p.end:
                return p.name
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (tuples become lists, non-finite floats become None)."""
        d = asdict(self)
        d["phases"] = [asdict(p) for p in self.phases]
        for key in ("epochs", "generalization_gap", "advice", "smoothed"):
            d[key] = list(d[key])
        d["noise"] = _jsonable(self.noise)
        d["best_value"] = _jsonable(self.best_value)
        return d


def _jsonable(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


# ----------------------------------------------------------------------------------------------- input


_MISSING = object()


def _columns(history: Any) -> tuple[list[str], int, dict[str, list[Any]]]:
    """Normalise a list of row dicts or a dict of lists into (keys in first-seen order, n, columns)."""
    kind = type(history).__name__
    if isinstance(history, Mapping):
        cols = {str(k): v for k, v in history.items()}
        for k, v in cols.items():
            if isinstance(v, (str, bytes)) or not isinstance(v, Sequence | np.ndarray):
                raise ValueError(
                    f"history[{k!r}] must be a list of per-epoch values, got {type(v).__name__}"
                )
        lengths = {len(v) for v in cols.values()}
        if len(lengths) > 1:
            k = min(cols, key=lambda k: len(cols[k]))
            raise ValueError(f"history[{k!r}] has {len(cols[k])} values but other keys have more: give "
                             f"one value per epoch")  # fmt: skip
        return list(cols), lengths.pop() if lengths else 0, {k: list(v) for k, v in cols.items()}
    if isinstance(history, (str, bytes)) or not isinstance(history, Sequence):
        raise ValueError(
            f"history must be a list of per-epoch dicts or a dict of lists, got {kind}"
        )
    keys: dict[str, None] = {}
    for i, row in enumerate(history):
        if not isinstance(row, Mapping):
            raise ValueError(f"history[{i}] must be a dict of metrics, got {type(row).__name__}")
        keys.update(dict.fromkeys(map(str, row)))
    return list(keys), len(history), {k: [row.get(k, _MISSING) for row in history] for k in keys}


def _series(cols: dict[str, list[Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Float array (NaN where missing or non-finite) and a mask of non-finite (not merely missing) values."""
    vals = np.full(len(cols[key]), np.nan)
    bad = np.zeros(len(cols[key]), dtype=bool)
    for i, v in enumerate(cols[key]):
        if v is _MISSING:
            continue
        if v is None:
            bad[i] = True
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise ValueError(
                f"history[{key!r}] at epoch row {i + 1} is {v!r}, not a number: log floats (null for NaN)"
            ) from None
        if math.isfinite(f):
            vals[i] = f
        else:
            bad[i] = True
    return vals, bad


def _not_in(arg: str, key: str, keys: Sequence[str]) -> ValueError:
    listed = ", ".join(k for k in keys if k not in _NOT_METRICS) or "none"
    return ValueError(f"{arg} {key!r} is not in the history (keys: {listed}); pick one of those")


# ----------------------------------------------------------------------------------------------- numerics


def _default_train(monitor: str, keys: Sequence[str]) -> str | None:
    if monitor.startswith("val_"):
        for cand in ("train_" + monitor[4:], monitor[4:]):
            if cand in keys:
                return cand
    return None


def _onset(s: np.ndarray, sig_s: float, m: int, sweet: int, tr_s: np.ndarray | None) -> int | None:
    n = len(s)
    rng = float(np.nanmax(s) - np.nanmin(s))
    delta = 2 * sig_s
    last = n - 1
    while last > m and not np.isfinite(s[last]):
        last -= 1
    if last - m < 2 or s[last] - s[m] <= max(3 * sig_s, 0.01 * rng):
        return None
    j = last
    while j - 1 > max(m, sweet) and (not np.isfinite(s[j - 1]) or s[j - 1] > s[m] + delta):
        j -= 1
    if last - j + 1 < 2:
        return None
    if tr_s is not None and np.isfinite(tr_s[m]) and np.isfinite(tr_s[last]):
        if not tr_s[last] < tr_s[m]:
            return None
    return j


def _phases(s: np.ndarray, onset: int | None, epochs: Sequence[int]) -> list[Phase]:
    n = len(s)
    pre_end = (onset if onset is not None else n) - 1  # last index before the onset
    out: list[Phase] = []
    fast_end = -1
    if pre_end >= 1:
        seg = s[: pre_end + 1]
        ok = np.isfinite(seg)
        rate = np.full(len(seg), np.nan)
        if ok.sum() >= 2:
            filled = np.interp(np.arange(len(seg)), np.nonzero(ok)[0], seg[ok])
            rate = -np.gradient(filled)
        peak_i = int(np.nanargmax(rate)) if np.isfinite(rate).any() else 0
        peak = float(rate[peak_i]) if np.isfinite(rate[peak_i]) else 0.0
        if peak > 0:
            below = np.nonzero(rate[peak_i:] < 0.2 * peak)[0]
            fast_end = peak_i + int(below[0]) - 1 if below.size else pre_end
            fast_end = max(fast_end, 0)
    if fast_end >= 0:
        out.append(Phase("fast_descent", epochs[0], epochs[fast_end]))
    if fast_end + 1 <= pre_end:
        out.append(Phase("slow_optimization", epochs[fast_end + 1], epochs[pre_end]))
    if onset is not None:
        out.append(Phase("overfitting_risk", epochs[onset], epochs[-1]))
    return out


def analyze(
    history: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
    monitor: str,
    mode: str,
    train_monitor: str | None = None,
    *,
    regularisers: Sequence[str] = (),
) -> CurveReport:
    """Analyse one run's learning curve of ``monitor`` (mode "min" or "max"); see the module docstring.

    ``history`` is a list of per-epoch dicts (history.jsonl rows) or a dict of lists. ``train_monitor``
    defaults to ``train_<x>`` (or Keras' ``<x>``) for a monitor ``val_<x>`` when that key exists.
    ``regularisers`` names what makes training harder than validation in this run (e.g. ``["dropout
    0.1"]``): the advice names them when validation ends up better than training.
    """
    if mode not in ("min", "max"):
        raise ValueError(
            f"mode must be 'min' or 'max', got {mode!r}: say which direction is better"
        )
    keys, n, cols = _columns(history)
    if n == 0:
        raise ValueError("history is empty: log at least one epoch before analysing it")
    if monitor not in cols:
        raise _not_in("monitor", monitor, keys)
    if train_monitor is None:
        train_monitor = _default_train(monitor, keys)
    elif train_monitor not in cols:
        raise _not_in("train_monitor", train_monitor, keys)
    if train_monitor == monitor:
        train_monitor = None

    if "epoch" in cols:
        ep, _ = _series(cols, "epoch")
        if not np.all(np.isfinite(ep)) or np.any(np.diff(ep) <= 0):
            raise ValueError(
                "history 'epoch' values must be present and increasing (1-based epoch numbers)"
            )
        epochs = tuple(int(e) for e in ep)
    else:
        epochs = tuple(range(1, n + 1))

    sign = 1.0 if mode == "min" else -1.0
    raw, bad = _series(cols, monitor)
    y = sign * raw
    tr_raw: np.ndarray | None = None
    tr_bad = np.zeros(n, dtype=bool)
    if train_monitor is not None:
        tr_raw, tr_bad = _series(cols, train_monitor)
    tr_y = None if tr_raw is None else sign * tr_raw

    w = _window(int(np.isfinite(y).sum()))
    s = _smooth(y, w)
    sigma = _noise(y)
    sig_s = sigma / math.sqrt(w)
    tr_s = None if tr_y is None else _smooth(tr_y, w)

    gap: tuple[float | None, ...] = ()
    if tr_raw is not None:
        g = sign * (raw - tr_raw)
        gap = tuple(float(v) if math.isfinite(v) else None for v in g)

    m = _argbest(s)
    sweet = best = None
    if m is not None:
        h = w // 2
        sweet = _argbest(y, np.arange(max(0, m - h), min(n, m + h + 1)))
        best = _argbest(y)
    onset_i = None if m is None or sweet is None else _onset(s, sig_s, m, sweet, tr_s)
    phases = _phases(s, onset_i, epochs) if m is not None else []

    if isinstance(regularisers, str):
        regularisers = (regularisers,)
    ctx = _Ctx(
        monitor, mode, train_monitor, epochs, raw, y, s, sigma, w, tr_raw, tr_y, tuple(regularisers)
    )
    diagnosis, advice, sugg_epochs, sugg_pat = _diagnose(ctx, bad, tr_bad, m, sweet, onset_i, gap)

    return CurveReport(
        monitor=monitor,
        mode=mode,
        train_monitor=train_monitor,
        epochs=epochs,
        sweet_spot=None if sweet is None else epochs[sweet],
        best_epoch=None if best is None else epochs[best],
        best_value=None if best is None else float(raw[best]),
        overfit_onset=None if onset_i is None else epochs[onset_i],
        phases=tuple(phases),
        generalization_gap=gap,
        diagnosis=diagnosis,
        advice=tuple(advice),
        smoothed=tuple(float(sign * v) if math.isfinite(v) else None for v in s),
        noise=float(sigma),
        window=w,
        suggested_epochs=sugg_epochs,
        suggested_patience=sugg_pat,
    )

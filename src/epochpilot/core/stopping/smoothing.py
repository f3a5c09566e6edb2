"""Smoothing of noisy monitored metrics before a stop policy compares them.

Pure: standard library only. The smoother is a frozen description; the running average lives in the
policy's own state (two plain numbers), so it survives ``state_dict`` round-trips.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from epochpilot.core.stopping.base import check_float

__all__ = ["EMA", "as_smoother"]


@dataclass(frozen=True)
class EMA:
    """Exponential moving average: ``avg = alpha * avg + (1 - alpha) * value``.

    ``alpha`` is the weight of the past, in [0, 1), as in TensorBoard's "smoothing" slider: 0 means no
    smoothing, 0.9 means heavy smoothing. With ``bias_correction`` the average starts at 0 and is divided
    by ``1 - alpha**n`` after ``n`` values (as in Adam), so it is an exact weighted mean of the values seen
    and is not pulled towards 0 at the start; without it the average starts at the first value.
    Non-finite values are skipped: they leave the average unchanged and are returned as they are.

    >>> EMA(0.5).smooth([4.0, 2.0, 2.0])
    [4.0, 2.6666666666666665, 2.2857142857142856]
    >>> EMA(0.5, bias_correction=False).smooth([4.0, 2.0, float("nan"), 2.0])
    [4.0, 3.0, nan, 2.5]
    """

    alpha: float
    bias_correction: bool = True

    def __post_init__(self) -> None:
        alpha = check_float("alpha", self.alpha, minimum=0.0)
        if alpha >= 1.0:
            raise ValueError(f"alpha must be < 1 (the weight of the past), got {alpha:g}")
        if not isinstance(self.bias_correction, bool):
            raise TypeError(f"bias_correction must be a bool, got {self.bias_correction!r}")

    def step(self, average: float, count: int, value: float) -> tuple[float, int, float]:
        """Feed one value; return the new running ``(average, count, smoothed value)``.

        ``average`` and ``count`` start at ``0.0`` and ``0``; a non-finite ``value`` changes nothing.
        """
        if not math.isfinite(value):
            return average, count, value
        if count == 0 and not self.bias_correction:
            average = value
        else:
            average = self.alpha * average + (1.0 - self.alpha) * value
        count += 1
        if self.bias_correction:
            return average, count, average / (1.0 - self.alpha**count)
        return average, count, average

    def smooth(self, values: Iterable[float]) -> list[float]:
        """The smoothed series of ``values`` (what a policy with this smoother compares)."""
        average, count, out = 0.0, 0, []
        for value in values:
            average, count, smoothed = self.step(average, count, float(value))
            out.append(smoothed)
        return out


def as_smoother(smoothing: float | EMA | None) -> EMA | None:
    """Turn a policy's ``smoothing`` argument (None, a float alpha, or an EMA) into an EMA or None."""
    if smoothing is None or isinstance(smoothing, EMA):
        return smoothing
    if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)):
        raise TypeError(f"smoothing must be None, a float in [0, 1) or an EMA, got {smoothing!r}")
    if math.isnan(smoothing) or not 0.0 <= smoothing < 1.0:
        raise ValueError(
            f"smoothing must be in [0, 1) (the EMA weight of the past), got {smoothing!r}"
        )
    return EMA(float(smoothing))

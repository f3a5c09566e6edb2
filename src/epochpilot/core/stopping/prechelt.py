"""Prechelt's stopping criteria (L. Prechelt, "Early stopping — but when?", 1998): GL, PQ and UP.

All three watch a validation *error* (mode "min": lower is better, e.g. a loss). GL and PQ take ratios
of errors, so their values must be >= 0. A strip is ``strip`` consecutive updates (epochs); PQ and UP are
evaluated only at the end of a strip (after updates ``strip``, ``2*strip``, ...). Any NaN/inf value stops
at once with reason ``NOT_FINITE``: a non-finite error means the run is broken, and no ratio of it means
anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from epochpilot.core.stopping.base import (
    Decision,
    Policy,
    Reason,
    check_epoch,
    check_float,
    check_int,
    fmt_value,
    get_metric,
)
from epochpilot.core.stopping.wording import epochs, metric_words, not_finite

__all__ = [
    "GeneralizationLoss",
    "ProgressQuotient",
    "UpStrips",
    "generalization_loss",
    "training_progress",
]


def generalization_loss(value: float, best: float) -> float:
    """GL = 100 * (E_va / E_opt - 1): how far, in percent, the error is above the lowest seen."""
    if best == 0.0:
        return 0.0 if value == 0.0 else math.inf
    return 100.0 * (value / best - 1.0)


def training_progress(strip_errors: list[float]) -> float:
    """P_k = 1000 * (sum of the strip's training errors / (k * their minimum) - 1), in per mille."""
    lowest, total = min(strip_errors), sum(strip_errors)
    if lowest == 0.0:
        return 0.0 if total == 0.0 else math.inf
    return 1000.0 * (total / (len(strip_errors) * lowest) - 1.0)


def _times(n: int) -> str:
    """``"once"``, ``"twice"``, ``"3 times in a row"``."""
    return {0: "0 times", 1: "once", 2: "twice in a row"}.get(n, f"{n} times in a row")


def _every(strip: int) -> str:
    """``"every epoch"`` / ``"every 5 epochs"``."""
    return "every epoch" if strip == 1 else f"every {strip} epochs"


def _check_monitor(name: str, monitor: object) -> None:
    if not isinstance(monitor, str) or not monitor:
        raise ValueError(f"{name} must be a non-empty metric name, got {monitor!r}")


class _ValidationError(Policy):
    """Shared part: read a non-negative, finite validation error and track its minimum (E_opt)."""

    monitor: str

    def _init_state(self) -> None:
        self.best_: float | None = None
        self.best_epoch_: int | None = None
        self.count_ = 0

    def _read(self, metrics: Mapping[str, float], key: str, *, ratio: bool) -> float:
        value = get_metric(metrics, key)
        if ratio and value < 0:
            raise ValueError(
                f"{type(self).__name__} needs errors >= 0 (a loss, lower is better); got {key} = {value}"
            )
        return value

    def _track(self, epoch: int, value: float) -> bool:
        self.count_ += 1
        if self.best_ is None or value < self.best_:
            self.best_, self.best_epoch_ = value, epoch
            return True
        return False

    def _best_text(self) -> str:
        if self.best_epoch_ is None:
            return "(no best yet)"
        return f"(best {fmt_value(self.best_)} at epoch {self.best_epoch_})"

    @property
    def best_value_(self) -> float | None:
        """The validation error at the best epoch (what a Decision reports)."""
        return self.best_

    def _not_finite(self, epoch: int, key: str, value: float) -> Decision:
        text = f"{key} is {value} (not finite) at epoch {epoch} {self._best_text()}"
        why = not_finite(metric_words(key), value)
        return self._decision(True, Reason.NOT_FINITE, False, text, epoch=epoch, why=why)

    def _above(self, gl: float) -> str:
        """``"validation loss is 6.25% above its best"``."""
        return f"{metric_words(self.monitor)} is {fmt_value(gl)}% above its best"


class GeneralizationLoss(_ValidationError):
    """GL_alpha: stop as soon as the generalization loss ``GL(t) = 100 * (E_va(t) / E_opt(t) - 1)`` > alpha.

    ``E_opt(t)`` is the lowest validation error up to epoch t; alpha is in percent. NaN/inf stops with
    ``NOT_FINITE``; a negative value raises ValueError.

    >>> gl = GeneralizationLoss(alpha=5.0, monitor="val_loss")
    >>> for epoch, loss in enumerate([1.0, 0.8, 0.82, 0.85], start=1):
    ...     decision = gl.update(epoch, {"val_loss": loss})
    ...     print(decision.message)
    validation loss is 0% above its best, stops above 5% (best 1 at epoch 1): continue
    validation loss is 0% above its best, stops above 5% (best 0.8 at epoch 2): continue
    validation loss is 2.5% above its best, stops above 5% (best 0.8 at epoch 2): continue
    Stopped at epoch 4: validation loss is 6.25% above its best, more than the 5% allowed. Kept epoch 2 (val_loss 0.8).
    >>> print(decision.details)
    GeneralizationLoss(val_loss): GL(val_loss) = 6.25 > alpha 5: val_loss 0.85 is 6.25% above its best (best 0.8 at epoch 2)
    """

    _state_keys = ("best_", "best_epoch_", "count_")

    def __init__(self, alpha: float, monitor: str) -> None:
        check_float("alpha", alpha, minimum=0.0, strict=True)
        _check_monitor("monitor", monitor)
        self.alpha = alpha
        self.monitor = monitor
        self._init_state()

    def update(self, epoch: int, metrics: Mapping[str, float]) -> Decision:
        """Feed epoch ``epoch``'s metrics (1-based); stop when GL > alpha."""
        epoch = check_epoch(epoch)
        value = self._read(metrics, self.monitor, ratio=True)
        if not math.isfinite(value):
            return self._not_finite(epoch, self.monitor, value)
        improved = self._track(epoch, value)
        gl = generalization_loss(value, self.best_)  # type: ignore[arg-type]
        alpha = float(self.alpha)
        if gl > alpha:
            text = (
                f"GL({self.monitor}) = {fmt_value(gl)} > alpha {fmt_value(alpha)}: {self.monitor} "
                f"{fmt_value(value)} is {fmt_value(gl)}% above its best {self._best_text()}"
            )
            why = f"{self._above(gl)}, more than the {fmt_value(alpha)}% allowed"
            return self._decision(
                True, Reason.GENERALIZATION_LOSS, improved, text, epoch=epoch, why=why
            )
        details = (
            f"{self.name}: GL({self.monitor}) = {fmt_value(gl)} <= alpha {fmt_value(alpha)} "
            f"{self._best_text()}"
        )
        text = f"{self._above(gl)}, stops above {fmt_value(alpha)}% {self._best_text()}"
        return self._decision(False, Reason.CONTINUE, improved, text, details=details)


class ProgressQuotient(_ValidationError):
    """PQ_alpha: at the end of each strip of ``strip`` epochs, stop when ``GL(t) / P_k(t)`` > alpha.

    ``P_k(t) = 1000 * (sum of the strip's training errors / (k * their minimum) - 1)`` measures how much
    training still progresses; a high generalization loss is tolerated while training progresses fast.
    When ``P_k`` is 0 (training stalled) any GL > 0 stops. NaN/inf in either metric stops with
    ``NOT_FINITE``; a negative value raises ValueError.

    >>> pq = ProgressQuotient(alpha=0.5, strip=2, monitor="val_loss", train_monitor="loss")
    >>> history = [(1.0, 0.9), (0.8, 0.5), (0.81, 0.49), (0.86, 0.48)]
    >>> for epoch, (val, train) in enumerate(history, start=1):
    ...     decision = pq.update(epoch, {"val_loss": val, "loss": train})
    ...     print(decision.message)
    validation loss is 0% above its best; checked at the end of each 2-epoch strip (1 of 2) (best 1 at epoch 1): continue
    validation loss is 0% above its best while loss moved 40% over the last 2 epochs (best 0.8 at epoch 2): continue
    validation loss is 1.25% above its best; checked at the end of each 2-epoch strip (1 of 2) (best 0.8 at epoch 2): continue
    Stopped at epoch 4: validation loss is 7.5% above its best while loss moved only 1.042% over the last 2 epochs: the model gets worse faster than training progresses. Kept epoch 2 (val_loss 0.8).
    >>> print(decision.details)
    ProgressQuotient(val_loss): PQ(val_loss) = GL 7.5 / P 10.42 = 0.72 > alpha 0.5 (best 0.8 at epoch 2)
    """

    _state_keys = ("best_", "best_epoch_", "count_", "strip_errors_")

    def __init__(self, alpha: float, strip: int = 5, *, monitor: str, train_monitor: str) -> None:
        check_float("alpha", alpha, minimum=0.0, strict=True)
        check_int("strip", strip, minimum=1)
        _check_monitor("monitor", monitor)
        _check_monitor("train_monitor", train_monitor)
        self.alpha = alpha
        self.strip = strip
        self.monitor = monitor
        self.train_monitor = train_monitor
        self._init_state()

    def _init_state(self) -> None:
        super()._init_state()
        #: training errors of the current (unfinished) strip
        self.strip_errors_: list[float] = []

    def update(self, epoch: int, metrics: Mapping[str, float]) -> Decision:
        """Feed epoch ``epoch``'s metrics (1-based); at strip ends, stop when GL / P_k > alpha."""
        epoch = check_epoch(epoch)
        value = self._read(metrics, self.monitor, ratio=True)
        train = self._read(metrics, self.train_monitor, ratio=True)
        if not math.isfinite(value):
            return self._not_finite(epoch, self.monitor, value)
        if not math.isfinite(train):
            return self._not_finite(epoch, self.train_monitor, train)
        improved = self._track(epoch, value)
        gl = generalization_loss(value, self.best_)  # type: ignore[arg-type]
        self.strip_errors_.append(train)
        strip = int(self.strip)
        if len(self.strip_errors_) < strip:
            details = (
                f"{self.name}: PQ({self.monitor}) is checked at strip ends (update "
                f"{len(self.strip_errors_)} of {strip}; GL {fmt_value(gl)}) {self._best_text()}"
            )
            text = (
                f"{self._above(gl)}; checked at the end of each {strip}-epoch strip "
                f"({len(self.strip_errors_)} of {strip}) {self._best_text()}"
            )
            return self._decision(False, Reason.CONTINUE, improved, text, details=details)
        progress = training_progress(self.strip_errors_)
        self.strip_errors_ = []
        if progress == 0.0:
            quotient = math.inf if gl > 0.0 else 0.0
        else:
            quotient = gl / progress
        alpha = float(self.alpha)
        stop = quotient > alpha
        text = (
            f"PQ({self.monitor}) = GL {fmt_value(gl)} / P {fmt_value(progress)} = {fmt_value(quotient)} "
            f"{'>' if stop else '<='} alpha {fmt_value(alpha)} {self._best_text()}"
        )
        moved = (
            f"{metric_words(self.train_monitor)} moved {'only ' if stop else ''}"
            f"{fmt_value(progress / 10)}% over the last {epochs(strip)}"
        )
        if stop:
            why = f"{self._above(gl)} while {moved}: the model gets worse faster than training progresses"
            return self._decision(
                True, Reason.PROGRESS_QUOTIENT, improved, text, epoch=epoch, why=why
            )
        plain = f"{self._above(gl)} while {moved} {self._best_text()}"
        return self._decision(
            False, Reason.CONTINUE, improved, plain, details=f"{self.name}: {text}"
        )


class UpStrips(_ValidationError):
    """UP_s: stop when the validation error, measured at strip ends, rose in ``strips`` successive strips.

    The value at the end of a strip is compared with the value at the end of the previous strip; a strict
    increase extends the run of "up" strips, anything else resets it. NaN/inf stops with ``NOT_FINITE``.

    >>> up = UpStrips(strips=2, strip=2, monitor="val_loss")
    >>> for epoch, loss in enumerate([1.0, 0.8, 0.7, 0.9, 0.6, 1.0], start=1):
    ...     decision = up.update(epoch, {"val_loss": loss})
    >>> print(decision.message)
    Stopped at epoch 6: validation loss rose twice in a row, measured every 2 epochs (0.8 -> 0.9 -> 1). Kept epoch 5 (val_loss 0.6).
    """

    _state_keys = ("best_", "best_epoch_", "count_", "strip_ends_")

    def __init__(self, strips: int, strip: int = 5, *, monitor: str) -> None:
        check_int("strips", strips, minimum=1)
        check_int("strip", strip, minimum=1)
        _check_monitor("monitor", monitor)
        self.strips = strips
        self.strip = strip
        self.monitor = monitor
        self._init_state()

    def _init_state(self) -> None:
        super()._init_state()
        #: values at the ends of the current run of rising strips (the first is the run's start)
        self.strip_ends_: list[float] = []

    def update(self, epoch: int, metrics: Mapping[str, float]) -> Decision:
        """Feed epoch ``epoch``'s metrics (1-based); at strip ends, stop after ``strips`` rises in a row."""
        epoch = check_epoch(epoch)
        value = self._read(metrics, self.monitor, ratio=False)
        if not math.isfinite(value):
            return self._not_finite(epoch, self.monitor, value)
        improved = self._track(epoch, value)
        strip, strips = int(self.strip), int(self.strips)
        words = metric_words(self.monitor)
        if self.count_ % strip != 0:
            text = (
                f"{words} is compared at the end of each {strip}-epoch strip "
                f"({self.count_ % strip} of {strip}) {self._best_text()}"
            )
            return self._decision(False, Reason.CONTINUE, improved, text)
        if self.strip_ends_ and value > self.strip_ends_[-1]:
            self.strip_ends_ = [*self.strip_ends_[-strips:], value]
        else:
            self.strip_ends_ = [value]
        rises = len(self.strip_ends_) - 1
        stop = rises >= strips
        trail = " -> ".join(fmt_value(v) for v in self.strip_ends_)
        if stop:
            text = (
                f"{self.monitor} rose at the end of {rises} successive strips of {strip} epochs "
                f"({trail}) {self._best_text()}"
            )
            why = f"{words} rose {_times(rises)}, measured {_every(strip)} ({trail})"
            return self._decision(True, Reason.UP_STRIPS, improved, text, epoch=epoch, why=why)
        text = (
            f"{words} rose {_times(rises)}, measured {_every(strip)}; it stops after "
            f"{_times(strips)} ({trail}) {self._best_text()}"
        )
        return self._decision(False, Reason.CONTINUE, improved, text)

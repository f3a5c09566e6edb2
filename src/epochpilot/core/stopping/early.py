"""Patience-based early stopping: Keras 3 semantics plus Lightning's guards, relative deltas and smoothing."""

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
    check_mode,
    fmt_value,
    get_metric,
    is_better,
)
from epochpilot.core.stopping.smoothing import EMA, as_smoother
from epochpilot.core.stopping.wording import metric_words, not_finite

__all__ = ["EarlyStopping"]


def _epochs(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"


class EarlyStopping(Policy):
    """Stop when ``monitor`` has not improved for ``patience`` epochs.

    Patience follows Keras 3's ``EarlyStopping``: epochs ``1..start_from_epoch`` are a warm-up that is
    not monitored; an epoch improves when its value beats the best so far by more than ``min_delta``
    (absolute, or a fraction of ``|best|`` when ``min_delta_mode="rel"``); the wait count restarts only
    when the improvement also beats ``baseline`` (if given) by more than ``min_delta``; training stops at
    the first non-improving epoch once ``patience`` monitored epochs have passed without such a restart
    (reason ``PATIENCE``, or ``BASELINE`` when the best never beat the baseline). ``patience=0`` stops at
    the first epoch that does not improve. Patience counts calls to ``update`` (one per validated epoch).

    Guards from Lightning, checked at every epoch including the warm-up: ``stopping_threshold`` stops
    once the value is strictly better than it (goal reached), ``divergence_threshold`` once it is strictly
    worse (the run blew up).

    NaN/inf: with ``check_finite=True`` (default) a non-finite value stops at once with reason
    ``NOT_FINITE``; with ``check_finite=False`` it counts as an epoch without improvement: it never
    becomes the best nor reaches ``stopping_threshold``, though an infinite value on the worse side
    (+inf for "min") does trip ``divergence_threshold``.

    ``smoothing`` (a float alpha in [0, 1), the weight of the past as in TensorBoard's slider, or an
    :class:`EMA`) replaces the monitored value by its
    bias-corrected exponential moving average, over every finite value from epoch 1, in every
    comparison above. ``best_value`` is always the *raw* value at the best epoch, so it is a value that
    really happened (the epoch whose checkpoint you would keep).

    >>> stopper = EarlyStopping("val_loss", mode="min", patience=2)
    >>> for epoch, loss in enumerate([0.9, 0.7, 0.72, float("nan")], start=1):
    ...     print(stopper.update(epoch, {"val_loss": loss}).message)
    val_loss improved to 0.9 (best so far): continue
    val_loss improved to 0.7 (best so far): continue
    val_loss: no improvement in 1 of 2 epochs (best 0.7 at epoch 2): continue
    Stopped at epoch 4: validation loss is NaN (not a number): training has diverged. Kept epoch 2 (val_loss 0.7).

    A stop's ``message`` is that one plain sentence; ``details`` holds the policy's numbers:

    >>> stopper = EarlyStopping("val_loss", mode="min", patience=2)
    >>> decision = stopper.decide([{"val_loss": v} for v in [0.9, 0.7, 0.72, 0.71]])
    >>> print(decision.message)
    Stopped at epoch 4: validation loss has not improved for 2 epochs (patience 2). Kept epoch 2 (val_loss 0.7).
    >>> print(decision.details)
    EarlyStopping(val_loss): val_loss did not improve by more than 0 for 2 epochs (best 0.7 at epoch 2)
    """

    _state_keys = ("wait_", "best_", "best_value_", "best_epoch_", "ema_average_", "ema_count_")

    def __init__(
        self,
        monitor: str,
        mode: str,
        patience: int = 5,
        min_delta: float = 0.0,
        min_delta_mode: str = "abs",
        baseline: float | None = None,
        start_from_epoch: int = 0,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
        check_finite: bool = True,
        smoothing: float | EMA | None = None,
    ) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"monitor must be a non-empty metric name, got {monitor!r}")
        check_mode(mode)
        check_int("patience", patience)
        check_float("min_delta", min_delta, minimum=0.0)
        if min_delta_mode not in ("abs", "rel"):
            raise ValueError(f"min_delta_mode must be 'abs' or 'rel', got {min_delta_mode!r}")
        check_float("baseline", baseline, allow_none=True)
        check_int("start_from_epoch", start_from_epoch)
        check_float("stopping_threshold", stopping_threshold, allow_none=True)
        check_float("divergence_threshold", divergence_threshold, allow_none=True)
        if stopping_threshold is not None and divergence_threshold is not None:
            if not is_better(float(stopping_threshold), float(divergence_threshold), mode):
                raise ValueError(
                    f"stopping_threshold ({stopping_threshold}) must be better than "
                    f"divergence_threshold ({divergence_threshold}) in mode {mode!r}"
                )
        if not isinstance(check_finite, bool):
            raise TypeError(f"check_finite must be a bool, got {check_finite!r}")
        self._smoother = as_smoother(smoothing)
        self.monitor = monitor
        self.mode = mode
        self.patience = patience
        self.min_delta = min_delta
        self.min_delta_mode = min_delta_mode
        self.baseline = baseline
        self.start_from_epoch = start_from_epoch
        self.stopping_threshold = stopping_threshold
        self.divergence_threshold = divergence_threshold
        self.check_finite = check_finite
        self.smoothing = smoothing
        self._init_state()

    def _init_state(self) -> None:
        #: monitored epochs since the last improvement that beat the baseline (Keras' ``wait``)
        self.wait_ = 0
        #: best compared value so far (smoothed when smoothing), None before the first monitored epoch
        self.best_: float | None = None
        #: raw value at the best epoch
        self.best_value_: float | None = None
        self.best_epoch_: int | None = None
        self.ema_average_ = 0.0
        self.ema_count_ = 0

    # -- helpers ---------------------------------------------------------------------------------
    def _better(self, value: float, reference: float | None, delta: bool = True) -> bool:
        return is_better(
            value,
            reference,
            self.mode,
            float(self.min_delta) if delta else 0.0,
            rel=self.min_delta_mode == "rel",
        )

    def _delta_text(self) -> str:
        if self.min_delta_mode == "rel":
            return f"by more than {float(self.min_delta) * 100:g}%"
        return f"by more than {float(self.min_delta):g}"

    def _baseline_text(self) -> str:
        return fmt_value(None if self.baseline is None else float(self.baseline))

    def _best_text(self) -> str:
        if self.best_epoch_ is None:
            return "(no best yet)"
        smoothed = f", smoothed {fmt_value(self.best_)}" if self._smoother is not None else ""
        return f"(best {fmt_value(self.best_value_)} at epoch {self.best_epoch_}{smoothed})"

    # -- the policy ------------------------------------------------------------------------------
    def update(self, epoch: int, metrics: Mapping[str, float]) -> Decision:
        """Feed epoch ``epoch``'s metrics (1-based) and say whether to stop."""
        epoch = check_epoch(epoch)
        raw = get_metric(metrics, self.monitor)
        finite = math.isfinite(raw)
        value = raw
        if self._smoother is not None:
            self.ema_average_, self.ema_count_, value = self._smoother.step(
                self.ema_average_, self.ema_count_, raw
            )
        name = self.monitor if self._smoother is None else f"smoothed {self.monitor}"
        words = metric_words(self.monitor)
        if self._smoother is not None:
            words = f"smoothed {words}"
        if not finite and self.check_finite:
            return self._decision(
                True,
                Reason.NOT_FINITE,
                False,
                f"{self.monitor} is {raw} (not finite) at epoch {epoch} {self._best_text()}",
                epoch=epoch,
                why=not_finite(metric_words(self.monitor), raw),
            )

        warm = epoch <= self.start_from_epoch
        improved = False
        if not warm:
            self.wait_ += 1
            if self._better(value, self.best_):
                improved = True
                self.best_, self.best_value_, self.best_epoch_ = value, raw, epoch
                if self.baseline is None or self._better(value, float(self.baseline)):
                    self.wait_ = 0

        worse_word, better_word = ("above", "below") if self.mode == "min" else ("below", "above")
        if finite and self.stopping_threshold is not None:
            threshold = float(self.stopping_threshold)
            if self._better(value, threshold, delta=False):
                return self._decision(
                    True,
                    Reason.STOPPING_THRESHOLD,
                    improved,
                    f"{name} = {fmt_value(value)} is {better_word} stopping_threshold "
                    f"{fmt_value(threshold)} {self._best_text()}",
                    epoch=epoch,
                    why=f"{words} reached {fmt_value(value)}, {better_word} the stopping_threshold of "
                    f"{fmt_value(threshold)}: good enough",
                )
        if self.divergence_threshold is not None:  # an infinite value on the worse side diverged
            threshold = float(self.divergence_threshold)
            if self._better(threshold, value, delta=False):
                moved = "rose" if self.mode == "min" else "fell"
                return self._decision(
                    True,
                    Reason.DIVERGENCE,
                    improved,
                    f"{name} = {fmt_value(value)} is {worse_word} divergence_threshold "
                    f"{fmt_value(threshold)} {self._best_text()}",
                    epoch=epoch,
                    why=f"{words} {moved} to {fmt_value(value)}, {worse_word} the divergence_threshold "
                    f"of {fmt_value(threshold)}: training has diverged",
                )
        if warm:
            return self._decision(
                False,
                Reason.CONTINUE,
                False,
                f"{self.monitor} = {fmt_value(raw)} at epoch {epoch} is warm-up "
                f"(monitoring starts after epoch {self.start_from_epoch})",
            )
        return self._patience_decision(epoch, raw, value, finite, improved, words)

    def _patience_decision(
        self, epoch: int, raw: float, value: float, finite: bool, improved: bool, words: str
    ) -> Decision:
        """The Keras part: after an improvement continue; else stop once ``wait_ >= patience``."""
        baseline_beaten = self.baseline is None or (
            self.best_ is not None and self._better(self.best_, float(self.baseline))
        )
        progress = f"{self.wait_} of {_epochs(self.patience)}"
        if improved:
            smoothed = f"smoothed {fmt_value(value)}, " if self._smoother is not None else ""
            if baseline_beaten:
                text = f"{self.monitor} improved to {fmt_value(raw)} ({smoothed}best so far)"
            else:
                text = (
                    f"{self.monitor} improved to {fmt_value(raw)} ({smoothed}best so far) but not "
                    f"{self._delta_text()} past baseline {self._baseline_text()} ({progress})"
                )
            return self._decision(False, Reason.CONTINUE, True, text)
        stop = self.wait_ >= self.patience
        delta = f" {self._delta_text()}" if float(self.min_delta) > 0 else ""
        if stop and not baseline_beaten:
            text = (
                f"{self.monitor} did not beat baseline {self._baseline_text()} "
                f"{self._delta_text()} in {_epochs(self.wait_)} {self._best_text()}"
            )
            side = "below" if self.mode == "min" else "above"
            why = (
                f"{words} did not get{delta} {side} the baseline {self._baseline_text()} in "
                f"{_epochs(self.wait_)} (patience {self.patience})"
            )
            return self._decision(True, Reason.BASELINE, False, text, epoch=epoch, why=why)
        if stop:
            text = (
                f"{self.monitor} did not improve {self._delta_text()} for {_epochs(self.wait_)} "
                f"{self._best_text()}"
            )
            why = f"{words} has not improved{delta} for {_epochs(self.wait_)} (patience {self.patience})"
            return self._decision(True, Reason.PATIENCE, False, text, epoch=epoch, why=why)
        if not finite:
            text = f"{self.monitor} is {raw}, counted as no improvement ({progress}) {self._best_text()}"
        elif not baseline_beaten:
            text = (
                f"{self.monitor}: baseline {self._baseline_text()} not beaten in "
                f"{progress} {self._best_text()}"
            )
        else:
            text = f"{self.monitor}: no improvement in {progress} {self._best_text()}"
        return self._decision(False, Reason.CONTINUE, False, text)

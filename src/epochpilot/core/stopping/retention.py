"""A guard against forgetting: stop when a general-ability score drops too far below the base model's."""

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
from epochpilot.core.stopping.wording import metric_words, not_finite

__all__ = ["Retention"]


class Retention(Policy):
    """Stop (reason ``RETENTION``) when ``monitor`` falls more than ``max_drop`` below ``reference``.

    ``reference`` is the base model's score on the same probe (e.g. 1.0 for a similarity-ranking
    correlation with the base model, or the base model's accuracy on general validation data), so the
    guard says "the fine-tuned model may lose at most ``max_drop`` of its general ability". With
    ``mode="min"`` (a general-data loss) "below" means above: it stops once the value exceeds
    ``reference + max_drop``. ``relative=True`` reads ``max_drop`` as a fraction of ``|reference|``.
    ``patience`` tolerates that many consecutive epochs past the limit before stopping.

    Combine it with the task stopper through ``AnyOf(task_stopper, Retention(...))`` (task stopper first,
    so its best epoch is the one kept). ``violating_`` counts consecutive epochs past the limit, so a
    trainer can refuse to keep such an epoch as the best. ``best_value`` is the best score seen.

    NaN/inf: a non-finite score stops at once with reason ``NOT_FINITE``.

    >>> guard = Retention("retention", reference=1.0, max_drop=0.1)
    >>> for epoch, score in enumerate([0.97, 0.93, 0.88], start=1):
    ...     decision = guard.update(epoch, {"retention": score})
    >>> decision.stop, decision.reason.value
    (True, 'retention')
    >>> print(decision.message)
    Stopped at epoch 3: retention fell to 0.88, 0.12 below the reference 1, more than the 0.1 allowed (max_drop). Kept epoch 1 (retention 0.97).
    >>> print(decision.details)
    Retention(retention): retention 0.88 fell 0.12 below the reference 1 (max_drop 0.1) at epoch 3
    """

    _state_keys = ("violating_", "best_value_", "best_epoch_", "last_")

    def __init__(
        self,
        monitor: str,
        reference: float,
        max_drop: float,
        mode: str = "max",
        relative: bool = False,
        patience: int = 0,
    ) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"monitor must be a non-empty metric name, got {monitor!r}")
        check_float("reference", reference)
        check_float("max_drop", max_drop, minimum=0.0)
        check_mode(mode)
        if not isinstance(relative, bool):
            raise TypeError(f"relative must be a bool, got {relative!r}")
        check_int("patience", patience)
        self.monitor = monitor
        self.reference = reference
        self.max_drop = max_drop
        self.mode = mode
        self.relative = relative
        self.patience = patience
        self._init_state()

    def _init_state(self) -> None:
        #: consecutive epochs (up to now) whose score was past the allowed drop
        self.violating_ = 0
        self.best_value_: float | None = None
        self.best_epoch_: int | None = None
        #: the last score seen (None before the first epoch)
        self.last_: float | None = None

    @property
    def limit(self) -> float:
        """The worst score still allowed: ``reference -/+ max_drop`` (scaled by ``|reference|`` if relative)."""
        ref = float(self.reference)
        drop = float(self.max_drop) * (abs(ref) if self.relative else 1.0)
        return ref - drop if self.mode == "max" else ref + drop

    def drop(self, value: float) -> float:
        """How far ``value`` is below the reference (positive = worse than the base model)."""
        ref = float(self.reference)
        return ref - value if self.mode == "max" else value - ref

    def update(self, epoch: int, metrics: Mapping[str, float]) -> Decision:
        """Feed epoch ``epoch``'s metrics (1-based); stop once the score is past the limit long enough."""
        epoch = check_epoch(epoch)
        value = get_metric(metrics, self.monitor)
        self.last_ = value if math.isfinite(value) else None
        if not math.isfinite(value):
            self.violating_ += 1
            return self._decision(
                True,
                Reason.NOT_FINITE,
                False,
                f"{self.monitor} is {value} (not finite) at epoch {epoch}",
                epoch=epoch,
                why=not_finite(metric_words(self.monitor), value),
            )
        improved = is_better(value, self.best_value_, self.mode)
        if improved:
            self.best_value_, self.best_epoch_ = value, epoch
        past = is_better(self.limit, value, self.mode)  # strictly worse than the limit
        self.violating_ = self.violating_ + 1 if past else 0
        worse, better = ("below", "above") if self.mode == "max" else ("above", "below")
        word = worse if self.drop(value) >= 0 else better
        allowed = (
            f"max_drop {fmt_value(float(self.max_drop))}{' relative' if self.relative else ''}"
        )
        text = (
            f"{self.monitor} {fmt_value(value)} {'fell' if past else 'is'} "
            f"{fmt_value(abs(self.drop(value)))} {word} the "
            f"reference {fmt_value(float(self.reference))} ({allowed}) at epoch {epoch}"
        )
        if past and self.violating_ > self.patience:
            moved = "fell" if self.mode == "max" else "rose"
            allowed = (
                f"{fmt_value(float(self.max_drop) * 100)}% of it"
                if self.relative
                else fmt_value(float(self.max_drop))
            )
            why = (
                f"{metric_words(self.monitor)} {moved} to {fmt_value(value)}, "
                f"{fmt_value(abs(self.drop(value)))} {word} the reference "
                f"{fmt_value(float(self.reference))}, more than the {allowed} allowed (max_drop)"
            )
            if self.patience:
                why += f", for {self.violating_} epochs in a row"
            return self._decision(True, Reason.RETENTION, improved, text, epoch=epoch, why=why)
        if past:
            text += f", tolerated {self.violating_} of {self.patience}"
        return self._decision(False, Reason.CONTINUE, improved, text)

"""Epoch plan: a starting budget (max epochs, patience, warmup, schedule) from the size of the data.

The plan is a budget for the stopper, not the answer: validation-based stopping picks the epoch, the plan
makes sure the budget covers it without wasting much. Sizes are *effective* samples (distinct inputs after
deduplication, from :func:`epochpilot.data.audit.report`), and the budget is counted in passes over those: a data set that
repeats each row r times gets 1/r of the epochs.

Pure: standard library and numpy only.

>>> from epochpilot.core.plan import plan
>>> p = plan(1000)
>>> p.max_epochs, p.patience, p.batch_size, p.steps_per_epoch
(275, 28, 64, 16)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from epochpilot.core import budget
from epochpilot.core.schedules import Cosine, Schedule, Warmup
from epochpilot.errors import DataError

__all__ = ["CALIBRATED", "DEFAULT_LR", "SEEDS", "DataProfile", "EpochPlan", "plan"]

MODES = ("full", "lora", "mixed")

#: The seeds' rule of thumb: (upper bound on effective samples, low, high, typical low, typical high).
SEEDS: dict[str, tuple[tuple[float, int, int, int, int], ...]] = {
    "full": ((1_000, 10, 50, 15, 30), (10_000, 5, 20, 8, 15), (math.inf, 1, 10, 2, 5)),
    "lora": ((10_000, 10, 20, 10, 20), (math.inf, 1, 5, 1, 5)),
    "mixed": ((math.inf, 5, 15, 5, 15),),
}

#: Calibrated max epochs for full training at the default lr, as (effective samples, max epochs) anchors,
#: interpolated in log-log space and held flat beyond the ends. 100 / 1,000 / 10,000 are measured by
#: bench/plan_calibration.py (the smallest budgets covering 90% of the measured sweet spots, rounded);
#: 1,000,000 is not measured: it bends the table towards the seeds' upper bound (10) for large data.
CALIBRATED: tuple[tuple[int, int], ...] = ((100, 550), (1_000, 275), (10_000, 110), (1_000_000, 10))

#: Learning rate assumed (Adam-style) when neither ``lr`` nor an lr_find result is given.
DEFAULT_LR = {"full": 1e-3, "lora": 2e-4, "mixed": 1e-3}

#: Calibrated budgets scale by (default lr / lr) ** LR_EXPONENT, clipped to [1/4, 4]: a smaller step size needs
#: more epochs. Measured: sweet spots scale as lr ** -0.73 at a fixed model; 0.5 gave the lowest waste at
#: 90% coverage across models (bench/plan_calibration.py).
LR_EXPONENT = 0.5
_LR_FACTOR_BOUNDS = (0.25, 4.0)

#: Patience = PATIENCE_SHARE * max_epochs, between 2 and PATIENCE_MAX epochs (the calibration runs needed
#: up to 36 / 35 / 13 epochs between improvements at 100 / 1,000 / 10,000 samples, 90th percentile).
PATIENCE_SHARE = 0.1
PATIENCE_MAX = 30
_WARMUP_SHARE = 0.05


@dataclass(frozen=True)
class DataProfile:
    """What the planner needs to know about a data set; build one by hand or from an AuditReport."""

    n_samples: int
    n_effective: int | None = None
    n_classes: int | None = None
    task: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.n_samples, bool) or not isinstance(self.n_samples, (int, np.integer)):
            raise TypeError(f"n_samples must be an int, got {self.n_samples!r}")
        if self.n_samples < 1:
            raise DataError(f"n_samples must be >= 1, got {self.n_samples}: the data is empty")
        if self.n_effective is not None and not 1 <= self.n_effective <= self.n_samples:
            raise ValueError(
                f"n_effective must be in [1, n_samples={self.n_samples}], got {self.n_effective}"
            )
        if self.n_classes is not None and self.n_classes < 2:
            raise DataError(
                f"the target has {self.n_classes} class(es): a classifier needs at least two; "
                "check the target column"
            )

    @property
    def effective(self) -> int:
        """Distinct samples to budget for (``n_effective``, else ``n_samples``)."""
        return self.n_effective if self.n_effective is not None else self.n_samples

    @classmethod
    def from_report(cls, report: Any) -> DataProfile:
        """Profile from an :class:`epochpilot.data.audit.report.AuditReport` (duck-typed: plan stays pure)."""
        n_classes = getattr(report, "n_classes", None)
        return cls(
            n_samples=int(report.n_rows),
            n_effective=int(report.effective_samples),
            n_classes=n_classes,
            task=getattr(report, "task", None),
        )


@dataclass(frozen=True)
class EpochPlan:
    """A starting budget for training; ``rationale`` says where each number came from."""

    max_epochs: int
    patience: int
    warmup_steps: int
    schedule: Schedule
    steps_per_epoch: int
    total_steps: int
    batch_size: int
    lr: float
    lr_source: str
    mode: str
    n_samples: int
    n_effective: int
    table: str
    rationale: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields; the schedule as its repr."""
        out = asdict(self)
        out["schedule"] = repr(self.schedule)
        out["rationale"] = list(self.rationale)
        return out

    def __str__(self) -> str:
        head = (
            f"max_epochs={self.max_epochs} patience={self.patience} batch_size={self.batch_size} "
            f"lr={self.lr:g} warmup_steps={self.warmup_steps} steps_per_epoch={self.steps_per_epoch} "
            f"total_steps={self.total_steps}"
        )
        return head + "\n" + "\n".join(f"- {line}" for line in self.rationale)


def _as_profile(data: Any) -> DataProfile:
    if isinstance(data, DataProfile):
        return data
    if isinstance(data, (int, np.integer)) and not isinstance(data, bool):
        return DataProfile(n_samples=int(data))
    if hasattr(data, "effective_samples") and hasattr(data, "n_rows"):
        return DataProfile.from_report(data)
    raise TypeError(
        f"plan needs a sample count, a DataProfile or an AuditReport, got {type(data).__name__}"
    )


def seed_epochs(n_effective: int, mode: str = "full") -> tuple[int, int, int, int]:
    """The seeds' (low, high, typical low, typical high) epochs for ``n_effective`` samples."""
    for upper, low, high, typ_low, typ_high in SEEDS[mode]:
        if n_effective < upper:
            return low, high, typ_low, typ_high
    raise AssertionError("unreachable: the last row has an infinite bound")  # pragma: no cover


def calibrated_epochs(n_effective: int) -> int:
    """Max epochs from the calibrated anchors, log-log interpolated, flat beyond the ends."""
    sizes = np.log([n for n, _ in CALIBRATED])
    epochs = np.log([e for _, e in CALIBRATED])
    return max(1, int(round(float(np.exp(np.interp(math.log(n_effective), sizes, epochs))))))


def default_batch_size(n_effective: int, mode: str = "full") -> int:
    """32 under 1K samples, 64 under 10K, 128 under 100K, else 256 (LoRA: 16); at most n/4, at least 1."""
    if mode == "lora":
        size = 16
    else:
        size = 32 if n_effective < 1_000 else 64 if n_effective < 10_000 else 128
        size = 256 if n_effective >= 100_000 else size
    return max(1, min(size, n_effective // 4 or 1))


def _lr(lr: Any, mode: str) -> tuple[float, str]:
    if lr is None:
        return DEFAULT_LR[
            mode
        ], f"default for mode={mode!r} (Adam-style); run lr_find to measure one"
    suggestion = getattr(lr, "suggestion", lr)
    try:
        value = float(suggestion)
    except (TypeError, ValueError):
        raise TypeError(f"lr must be a float or an lr_find result, got {lr!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"lr must be a finite number > 0, got {value!r}")
    return value, "lr_find suggestion" if hasattr(lr, "suggestion") else "given"


def _warmup(
    total: int, per_epoch: int, effective_batch: int, lr: float, mode: str
) -> tuple[int, str]:
    """~5% of the updates, doubled for an effective batch >= 512 and for an lr above 3x the mode's default."""
    share, why = _WARMUP_SHARE, ["5% of the updates"]
    if effective_batch >= 512:
        share, why = share * 2, [*why, f"doubled for effective batch {effective_batch} >= 512"]
    if lr > 3 * DEFAULT_LR[mode]:
        share, why = share * 2, [*why, f"doubled for lr {lr:g} > 3x {DEFAULT_LR[mode]:g}"]
    cap = min(2_000, total // 4)
    steps = min(cap, max(1 if total >= 20 else 0, round(share * total)))
    return steps, f"{', '.join(why)}, capped at {cap} (a quarter of the run, at most 2000)"


def plan(
    data_or_profile: Any,
    *,
    mode: str = "full",
    batch_size: int | None = None,
    accumulation: int = 1,
    world_size: int = 1,
    lr: Any = None,
    table: str = "calibrated",
) -> EpochPlan:
    """Plan max epochs, patience, warmup and a warmup+cosine schedule for a data set.

    ``data_or_profile`` is a sample count, a :class:`DataProfile` or an ``AuditReport``. ``lr`` is a float, an
    ``lr_find`` result (its ``suggestion`` is used) or None (a default per mode). ``table="seeds"`` uses the
    seeds' rule of thumb (upper typical value) instead of the calibrated table; LoRA and mixed modes always
    use the seeds' table (not calibrated).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if table not in ("calibrated", "seeds"):
        raise ValueError(f"table must be 'calibrated' or 'seeds', got {table!r}")
    profile = _as_profile(data_or_profile)
    n, n_eff = profile.n_samples, profile.effective
    repeats = n / n_eff
    why: list[str] = []
    if n_eff < n:
        why.append(
            f"{n} rows hold {n_eff} distinct samples (each repeated {repeats:.2g}x on average): "
            "the budget is sized for the distinct ones."
        )
    low, high, typ_low, typ_high = seed_epochs(n_eff, mode)
    rate, source = _lr(lr, mode)
    if table == "calibrated" and mode == "full":
        base = calibrated_epochs(n_eff)
        low_f, high_f = _LR_FACTOR_BOUNDS
        factor = min(high_f, max(low_f, (DEFAULT_LR[mode] / rate) ** LR_EXPONENT))
        passes = max(1, round(base * factor))
        why.append(
            f"Calibrated table: {base} passes for {n_eff} effective samples at lr {DEFAULT_LR[mode]:g} "
            f"(seeds: {low}-{high}, typically {typ_low}-{typ_high}); calibrated on where validation-based "
            "stopping found the sweet spot."
        )
        if factor != 1.0:
            why.append(
                f"lr {rate:g} vs {DEFAULT_LR[mode]:g}: x{factor:.2f} (({DEFAULT_LR[mode]:g}/lr)^{LR_EXPONENT}, "
                f"within [{low_f:g}, {high_f:g}]) = {passes} passes."
            )
        used = "calibrated"
    else:
        passes = typ_high
        why.append(
            f"Seeds' table for mode={mode!r} and {n_eff} effective samples: {low}-{high} epochs, "
            f"typically {typ_low}-{typ_high}; using the upper typical value {typ_high}."
        )
        used = "seeds"
    max_epochs = max(1, math.ceil(passes / repeats))
    if max_epochs != passes:
        why.append(
            f"{passes} passes over distinct samples / {repeats:.2g} repeats = {max_epochs} epochs."
        )
    share = math.ceil(PATIENCE_SHARE * max_epochs)
    patience = max(1, min(max(max_epochs - 1, 1), max(2, min(PATIENCE_MAX, share))))
    why.append(
        f"Patience {patience}: {PATIENCE_SHARE:.0%} of max_epochs, between 2 and {PATIENCE_MAX}; "
        "validation-based stopping picks the epoch, max_epochs only bounds it."
    )
    if batch_size is None:
        batch_size = default_batch_size(n_eff, mode)
        why.append(
            f"Batch size {batch_size}: default for {n_eff} effective samples (mode={mode!r})."
        )
    per_epoch = budget.steps_per_epoch(
        n, batch_size, accumulation=accumulation, world_size=world_size
    )
    total = per_epoch * max_epochs
    why.append(
        budget.describe(n, batch_size, max_epochs, accumulation=accumulation, world_size=world_size)
        + "."
    )
    effective_batch = batch_size * accumulation * world_size
    warmup, warm_why = _warmup(total, per_epoch, effective_batch, rate, mode)
    why.append(f"Warmup {warmup} steps: {warm_why}. Learning rate {rate:g}: {source}.")
    schedule = Warmup(Cosine(rate, max(1, total - warmup), min_lr=rate * 0.01), warmup)
    why.append(
        f"Schedule: linear warmup to {rate:g} over {warmup} steps, then cosine to {rate * 0.01:g} at step {total}."
    )
    return EpochPlan(
        max_epochs=max_epochs,
        patience=patience,
        warmup_steps=warmup,
        schedule=schedule,
        steps_per_epoch=per_epoch,
        total_steps=total,
        batch_size=batch_size,
        lr=rate,
        lr_source=source,
        mode=mode,
        n_samples=n,
        n_effective=n_eff,
        table=used,
        rationale=tuple(why),
    )

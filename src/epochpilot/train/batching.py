"""How the trainer batches: the per-process batch it loads, the accumulation that makes the effective batch,
the micro-batch it runs (``batch_size="auto"`` searches it), the split after an out-of-memory, and the lr
scaling for an effective batch other than the one the lr was chosen for.

The data is always loaded in batches of ``source`` samples per process and ``accumulation`` of them make one
optimizer update, so the samples of every update (and the number of updates, the schedule and the budget)
do not depend on the micro-batch. A batch is run as ``splits`` micro-batches (``torch.tensor_split`` along
the first dimension), each loss weighted by its share of the batch: the update's gradient is the batch
mean's, whatever the split. ``batch_size="auto"`` loads the whole effective batch per process and searches
the split; an out-of-memory doubles it (``on_oom="shrink"``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from epochpilot.errors import ConfigError

__all__ = ["Batching", "check_batch_settings", "lr_factor", "plan_batching", "update_batch"]

log = logging.getLogger("epochpilot")
ON_OOM = ("shrink", "raise")
LR_SCALING = (None, "linear", "sqrt")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_batch_settings(cfg: Any) -> None:
    """Validate ``batch_size``, ``accumulation``, ``effective_batch``, ``on_oom``, ``lr_scaling`` and
    ``reference_batch`` of a TrainConfig: one ConfigError line naming the field and the fix."""
    auto = cfg.batch_size == "auto"
    if not auto and not _positive_int(cfg.batch_size):
        raise ConfigError(
            f"batch_size must be an int >= 1 or 'auto', got {cfg.batch_size!r}: "
            "'auto' (with effective_batch) finds the largest micro-batch that fits"
        )
    if not _positive_int(cfg.accumulation):
        raise ConfigError(
            f"accumulation must be an int >= 1, got {cfg.accumulation!r}: use 1 for no accumulation"
        )
    e = cfg.effective_batch
    if e is not None and not _positive_int(e):
        raise ConfigError(
            f"effective_batch must be an int >= 1 (samples per optimizer update, all processes) or None, "
            f"got {e!r}"
        )
    if auto and e is None:
        raise ConfigError(
            "batch_size='auto' needs effective_batch (samples per optimizer update): e.g. "
            "batch_size='auto', effective_batch=64"
        )
    if auto and cfg.accumulation != 1:
        raise ConfigError(
            f"batch_size='auto' sets the accumulation itself, but accumulation={cfg.accumulation}: drop "
            "accumulation and give effective_batch"
        )
    if not auto and e is not None:
        if e < cfg.batch_size:
            raise ConfigError(
                f"effective_batch={e} is smaller than batch_size={cfg.batch_size}: raise effective_batch or "
                "lower batch_size (or use batch_size='auto')"
            )
        if e % cfg.batch_size:
            raise ConfigError(
                f"effective_batch={e} is not a multiple of batch_size={cfg.batch_size}: pick a batch_size "
                f"that divides it, or batch_size='auto'"
            )
        if cfg.accumulation != 1 and cfg.accumulation * cfg.batch_size != e:
            raise ConfigError(
                f"accumulation={cfg.accumulation} x batch_size={cfg.batch_size} != effective_batch={e}: give "
                "effective_batch or accumulation, not both"
            )
    if cfg.on_oom not in ON_OOM:
        raise ConfigError(
            f"on_oom={cfg.on_oom!r} is unknown: use 'shrink' (halve the micro-batch, keep the effective "
            "batch) or 'raise'"
        )
    if cfg.lr_scaling not in LR_SCALING:
        raise ConfigError(
            f"lr_scaling={cfg.lr_scaling!r} is unknown: use 'linear' (SGD with warmup), 'sqrt' (Adam) or None"
        )
    ref = cfg.reference_batch
    if ref is not None and not _positive_int(ref):
        raise ConfigError(f"reference_batch must be an int >= 1 or None, got {ref!r}")
    if (cfg.lr_scaling is None) != (ref is None):
        raise ConfigError(
            "lr_scaling and reference_batch go together: reference_batch is the effective batch the lr was "
            "chosen for, lr_scaling the rule ('linear' or 'sqrt') that scales it to this run's"
        )


def update_batch(
    batch_size: Any, accumulation: int, effective_batch: int | None
) -> tuple[int, int]:
    """``(batch, accumulation)`` whose product is the samples per optimizer update on one process, for
    counting updates before the run: with ``batch_size="auto"`` the micro-batch is not known yet, but the
    effective batch, and with it every step count, is."""
    if batch_size == "auto":
        return int(effective_batch or 1), 1
    if effective_batch is not None:
        return int(batch_size), int(effective_batch) // int(batch_size)
    return int(batch_size), int(accumulation)


def lr_factor(effective_batch: int, reference_batch: int | None, rule: str | None) -> float:
    """The lr multiplier for ``effective_batch`` when the lr was chosen at ``reference_batch``: ``E / ref``
    (linear, Goyal et al. 2017, for SGD with warmup), ``sqrt(E / ref)`` (Adam-type), 1 without a rule.

    >>> lr_factor(256, 64, "linear"), lr_factor(256, 64, "sqrt"), lr_factor(256, None, None)
    (4.0, 2.0, 1.0)
    """
    if rule is None or reference_batch is None:
        return 1.0
    ratio = effective_batch / reference_batch
    return ratio if rule == "linear" else math.sqrt(ratio)


@dataclass
class Batching:
    """The batching of one run: ``source`` samples loaded per batch per process, ``accumulation`` batches per
    update, each batch run as ``splits`` micro-batches. ``search`` is the BatchChoice record of an
    ``"auto"`` search (None otherwise); ``shrinks`` lists the out-of-memory splits (JSON-safe)."""

    source: int
    accumulation: int
    world_size: int = 1
    chosen: str = "given"
    splits: int = 1
    search: dict[str, Any] | None = None
    shrinks: list[dict[str, Any]] = field(default_factory=list)
    lr_factor: float = 1.0

    @property
    def micro_batch(self) -> int:
        """The largest micro-batch run (a batch split in ``splits`` near-equal parts)."""
        return math.ceil(self.source / self.splits)

    @property
    def effective_batch(self) -> int:
        """Samples per optimizer update over all processes (the last update of an epoch may have fewer)."""
        return self.source * self.accumulation * self.world_size

    def record(self) -> dict[str, Any]:
        """The ``batch`` table of summary.json: what ran, the search behind it and every shrink."""
        out: dict[str, Any] = {
            "micro_batch": self.micro_batch,
            "accumulation": self.accumulation * self.splits,
            "effective_batch": self.effective_batch,
            "world_size": self.world_size,
            "chosen": self.chosen,
            "shrinks": list(self.shrinks),
            "lr_factor": self.lr_factor,
        }
        search = self.search or {}
        out["samples_per_s"] = search.get("samples_per_s")
        out["peak_memory_bytes"] = search.get("peak_memory_bytes")
        return out

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps, so a resumed run splits as the interrupted one did."""
        return {"splits": self.splits, "search": self.search, "shrinks": list(self.shrinks)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (a checkpoint from before batching was recorded: no change)."""
        self.splits = int(state.get("splits", 1))
        self.search = state.get("search", self.search)
        self.shrinks = list(state.get("shrinks", []))

    def agree(self, splits: int, epoch: int, step: int) -> None:
        """Split as another rank had to (its out-of-memory in validation), so every rank runs alike."""
        while self.splits < splits:
            self.splits *= 2
            self.shrinks.append({"epoch": epoch, "step": step, "micro_batch": self.micro_batch})

    def shrink(self, epoch: int, step: int) -> str:
        """Double the splits after an out-of-memory; the log line. ConfigError when a sample does not fit."""
        if self.micro_batch <= 1:
            raise ConfigError(
                "out of memory at a micro-batch of 1 sample: the model does not fit on this device; use a "
                "smaller model, precision='bf16-mixed', or another device"
            )
        old = self.micro_batch
        self.splits *= 2
        self.shrinks.append({"epoch": epoch, "step": step, "micro_batch": self.micro_batch})
        return (
            f"epoch {epoch}, update {step + 1}: out of memory at micro-batch {old}; now "
            f"{self.micro_batch} x {self.accumulation * self.splits} per update (effective batch "
            f"{self.effective_batch} unchanged), redoing the update"
        )


def plan_batching(cfg: Any, world_size: int) -> Batching:
    """The loaded batch per process and the accumulation for ``cfg`` on ``world_size`` processes."""
    e = cfg.effective_batch
    if e is not None and e % world_size:
        raise ConfigError(
            f"effective_batch={e} does not split over {world_size} processes: give a multiple of {world_size}"
        )
    if cfg.batch_size == "auto":
        return Batching(
            source=e // world_size, accumulation=1, world_size=world_size, chosen="auto"
        )
    accumulation = cfg.accumulation
    if e is not None:
        per_rank = e // world_size
        if per_rank % cfg.batch_size:
            raise ConfigError(
                f"effective_batch={e} over {world_size} processes is {per_rank} per process, not a multiple "
                f"of batch_size={cfg.batch_size}: pick a batch_size that divides it"
            )
        accumulation = per_rank // cfg.batch_size
    return Batching(source=cfg.batch_size, accumulation=accumulation, world_size=world_size)


def check_searchable(train_data: Any) -> None:
    """``batch_size="auto"`` loads the batches itself: refuse a DataLoader (it keeps its own batch size) and
    data without a length, in one line each."""
    from collections.abc import Sized

    from torch.utils.data import DataLoader

    from epochpilot.errors import DataError

    if isinstance(train_data, DataLoader):
        raise DataError(
            "batch_size='auto' cannot change a DataLoader's batch size: pass its Dataset (or (X, y) arrays) "
            "and let fit batch it, or give batch_size as an int"
        )
    if not isinstance(train_data, Sized):
        raise DataError(
            f"batch_size='auto' needs data with a length, got {type(train_data).__name__}: pass (X, y) arrays "
            "or a Dataset with __len__, or give batch_size as an int"
        )


def search_micro_batch(
    batching: Batching,
    model: Any,
    train_data: Any,
    loss_fn: Any,
    optimizer: Any,
    device: Any,
    info: Any,
) -> None:
    """``batch_size="auto"``: rank 0 times real steps on copies (``find_batch_size``, goal "throughput", the
    per-process effective batch as the cap) and every rank splits its batches as it found."""
    from epochpilot.train import distributed as D
    from epochpilot.train.batch_size import find_batch_size

    def search() -> dict[str, Any]:
        choice = find_batch_size(
            D.unwrap(model),
            train_data,
            loss_fn,
            optimizer=optimizer,
            device=device,
            effective_batch=batching.source,
            goal="throughput",
        )
        return {
            "batch_size": choice.batch_size,
            "accumulation": choice.accumulation,
            "samples_per_s": choice.samples_per_s,
            "peak_memory_bytes": choice.peak_memory_bytes,
            "device": choice.device,
            "tried": [list(t) for t in choice.tried],
        }

    found = D.decide(search, info)
    batching.splits = found["accumulation"]
    batching.search = found
    log.info(
        "batch_size='auto': micro-batch %d x %d per update x %d processes = effective batch %d (%s samples/s)",
        batching.micro_batch,
        batching.accumulation * batching.splits,
        batching.world_size,
        batching.effective_batch,
        f"{found['samples_per_s']:,.0f}" if found["samples_per_s"] else "n/a",
    )

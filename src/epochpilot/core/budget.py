"""Epoch, step and batch arithmetic: how many optimizer updates a training run really makes.

Pure (standard library only). The counts match what a ``DataLoader`` (plus ``DistributedSampler`` when
``world_size > 1``) and a gradient-accumulation loop that flushes its last partial window at epoch end do; the
off-by-one errors of transformers #37777 and Lightning #19684 are what the tests guard against.

>>> steps_per_epoch(1000, 100)
10
>>> steps_per_epoch(1000, 32, accumulation=4)  # 32 batches -> 8 updates
8
>>> describe(1000, 100, epochs=15)
'1000 samples / batch 100 = 10 iterations per epoch; 15 epochs = 150 updates; each sample is seen 15 times'
"""

from __future__ import annotations

import math

__all__ = [
    "batches_per_epoch",
    "describe",
    "epochs_for_steps",
    "samples_per_rank",
    "steps_per_epoch",
    "total_steps",
]


def _positive_int(name: str, value: object, fix: str) -> int:
    """Return ``value`` if it is an int >= 1, else raise a ValueError naming ``name`` and the fix."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}: {fix}")
    return value


def samples_per_rank(n_samples: int, world_size: int = 1) -> int:
    """Samples each process sees per epoch: ``DistributedSampler`` pads to ``ceil(n / world_size)``."""
    _positive_int("n_samples", n_samples, "give the number of training samples")
    _positive_int("world_size", world_size, "use 1 for a single process")
    return math.ceil(n_samples / world_size)


def batches_per_epoch(
    n_samples: int, batch_size: int, *, world_size: int = 1, drop_last: bool = False
) -> int:
    """Batches one process iterates per epoch (``len(DataLoader)``)."""
    _positive_int("batch_size", batch_size, "use a batch size of at least 1")
    per_rank = samples_per_rank(n_samples, world_size)
    batches = per_rank // batch_size if drop_last else math.ceil(per_rank / batch_size)
    if batches == 0:
        raise ValueError(
            f"batch_size {batch_size} > {per_rank} samples per process with drop_last=True: no batch would run; "
            f"lower batch_size or set drop_last=False"
        )
    return batches


def steps_per_epoch(
    n_samples: int,
    batch_size: int,
    *,
    accumulation: int = 1,
    world_size: int = 1,
    drop_last: bool = False,
) -> int:
    """Optimizer updates per epoch; a final partial accumulation window is flushed at epoch end."""
    _positive_int("accumulation", accumulation, "use 1 for no gradient accumulation")
    batches = batches_per_epoch(n_samples, batch_size, world_size=world_size, drop_last=drop_last)
    return math.ceil(batches / accumulation)


def total_steps(
    n_samples: int,
    batch_size: int,
    epochs: int,
    *,
    accumulation: int = 1,
    world_size: int = 1,
    drop_last: bool = False,
) -> int:
    """Optimizer updates over ``epochs`` epochs: the length a per-update schedule must cover."""
    _positive_int("epochs", epochs, "train for at least one epoch")
    per_epoch = steps_per_epoch(
        n_samples, batch_size, accumulation=accumulation, world_size=world_size, drop_last=drop_last
    )
    return per_epoch * epochs


def epochs_for_steps(
    n_samples: int,
    batch_size: int,
    steps: int,
    *,
    accumulation: int = 1,
    world_size: int = 1,
    drop_last: bool = False,
) -> int:
    """Fewest whole epochs that make at least ``steps`` optimizer updates."""
    _positive_int("steps", steps, "ask for at least one optimizer update")
    per_epoch = steps_per_epoch(
        n_samples, batch_size, accumulation=accumulation, world_size=world_size, drop_last=drop_last
    )
    return math.ceil(steps / per_epoch)


def describe(
    n_samples: int,
    batch_size: int,
    epochs: int | None = None,
    *,
    accumulation: int = 1,
    world_size: int = 1,
    drop_last: bool = False,
) -> str:
    """The budget's arithmetic in words, e.g. for a log line or a report."""
    per_rank = samples_per_rank(n_samples, world_size)
    batches = batches_per_epoch(n_samples, batch_size, world_size=world_size, drop_last=drop_last)
    updates = steps_per_epoch(
        n_samples, batch_size, accumulation=accumulation, world_size=world_size, drop_last=drop_last
    )
    if world_size > 1:
        head = f"{n_samples} samples over {world_size} processes = {per_rank} per process; "
        head += f"{per_rank} / batch {batch_size} = {batches} iterations per epoch"
    else:
        head = f"{n_samples} samples / batch {batch_size} = {batches} iterations per epoch"
    if drop_last and per_rank % batch_size:
        head += f" ({per_rank % batch_size} samples dropped each epoch)"
    parts = [head]
    if accumulation > 1:
        last = batches - (updates - 1) * accumulation
        text = f"accumulating {accumulation} batches = {updates} updates per epoch"
        if last != accumulation:
            text += f" (the last update uses {last} batch{'es' if last != 1 else ''})"
        parts.append(text)
    if epochs is not None:
        _positive_int("epochs", epochs, "train for at least one epoch")
        parts.append(f"{epochs} epochs = {updates * epochs} updates")
        seen = epochs
        parts.append(f"each sample is seen {seen} time{'s' if seen != 1 else ''}")
    return "; ".join(parts)

"""Turn user data into resumable batch sources: the epoch order is a function of (seed, epoch) and an epoch can
start at any batch, so a resumed run sees exactly the batches an uninterrupted one would.

Sources: ``(X, y)`` tensors/arrays are sliced directly (no per-sample collate); a ``Dataset`` goes through a
``DataLoader`` driven by :class:`EpochBatchSampler`; a user ``DataLoader`` is replayed from the torch RNG state
captured when its epoch began, skipping the batches already consumed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from epochpilot.errors import DataError

__all__ = ["Batches", "EpochBatchSampler", "as_tensor", "check_finite", "make_batches"]


def as_tensor(value: Any, what: str) -> torch.Tensor:
    """Array-like -> tensor: float64 becomes float32, other integer kinds become int64 (class labels)."""
    if not isinstance(value, (np.ndarray, torch.Tensor)):
        try:
            value = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"{what} cannot be turned into an array ({_first_line(exc)}): give a numpy array or tensor"
            ) from None
    if value.ndim == 0:
        raise DataError(f"{what} is a single value: give an array with one row per sample")
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            kind = "text" if value.dtype.kind in "US" else "not numbers"
            raise DataError(
                f"{what} has dtype {value.dtype} ({kind}): encode it as numbers first (floats for "
                f"features, integer class labels or float targets for y)"
            )
        value = torch.from_numpy(np.ascontiguousarray(value))
    if value.dtype == torch.float64:
        value = value.float()
    elif value.dtype in (torch.int8, torch.int16, torch.int32, torch.uint8):
        value = value.long()
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_finite(tensors: tuple[torch.Tensor, ...], what: str) -> None:
    """Refuse NaN or infinite values in in-memory data: one DataError line with the count and the fix."""
    for i, t in enumerate(tensors):
        if not (t.is_floating_point() or t.is_complex()):
            continue
        bad = ~torch.isfinite(t)
        if bool(bad.any()):
            count = int(bad.sum())
            rows = int(bad.reshape(len(t), -1).any(dim=1).sum()) if t.ndim > 1 else count
            first = int(bad.reshape(len(t), -1).any(dim=1).nonzero()[0, 0])
            raise DataError(
                f"{what}[{i}] has {count:,} non-finite values (NaN or inf) in {rows:,} of "
                f"{len(t):,} rows (first: row {first}): drop or impute them before training"
            )


def epoch_order(
    n: int, seed: int, epoch: int, shuffle: bool, rank: int = 0, world_size: int = 1
) -> torch.Tensor:
    """Sample indices for one epoch on one rank, padded like ``DistributedSampler`` so all ranks match."""
    if shuffle:
        g = torch.Generator()
        g.manual_seed(seed + epoch)
        order = torch.randperm(n, generator=g)
    else:
        order = torch.arange(n)
    if world_size > 1:
        per_rank = math.ceil(n / world_size)
        total = per_rank * world_size
        if total > n:
            order = torch.cat([order, order[: total - n]])
        order = order[rank:total:world_size]
    return order


def shard(n: int, rank: int, world_size: int) -> torch.Tensor:
    """Indices of an unpadded contiguous-stride shard (for validation: every sample counted once)."""
    return torch.arange(rank, n, world_size)


class Batches:
    """A resumable batch source: ``set_epoch(e)``, ``iter_from(k)`` skips ``k`` batches, ``len()`` batches."""

    n_samples: int = 0

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch whose order the next ``iter_from`` walks."""

    def iter_from(self, start: int) -> Iterator[Any]:  # pragma: no cover - interface
        """Batches of the current epoch, starting at batch ``start`` (0-based)."""
        raise NotImplementedError

    def __len__(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """What must be checkpointed to replay the current epoch."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""


class TensorBatches(Batches):
    """Batches sliced straight out of in-memory tensors."""

    def __init__(
        self,
        tensors: tuple[torch.Tensor, ...],
        batch_size: int,
        *,
        shuffle: bool,
        drop_last: bool,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
    ) -> None:
        self.tensors = tensors
        self.n_samples = len(tensors[0])
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.pad = pad
        self.epoch = 0
        self._order: torch.Tensor | None = None

    def _indices(self) -> torch.Tensor:
        if self._order is None:
            if self.pad:
                self._order = epoch_order(
                    self.n_samples, self.seed, self.epoch, self.shuffle, self.rank, self.world_size
                )
            else:
                self._order = shard(self.n_samples, self.rank, self.world_size)
        return self._order

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch or self.shuffle:
            self._order = None
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self._indices())
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def iter_from(self, start: int) -> Iterator[tuple[torch.Tensor, ...]]:
        order = self._indices()
        bs = self.batch_size
        stop = len(self) * bs
        if not self.shuffle and self.world_size == 1:
            for i in range(start * bs, stop, bs):  # contiguous slices: views, no copy
                yield tuple(t[i : i + bs] for t in self.tensors)
            return
        for i in range(start * bs, stop, bs):
            idx = order[i : i + bs]
            yield tuple(t[idx] for t in self.tensors)


class EpochBatchSampler(Sampler[list[int]]):
    """A batch sampler whose order depends only on (seed, epoch) and which can start mid-epoch."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        shuffle: bool,
        drop_last: bool,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
    ) -> None:
        self.inner = TensorBatches(
            (torch.arange(n),),
            batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            seed=seed,
            rank=rank,
            world_size=world_size,
            pad=pad,
        )
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self) -> Iterator[list[int]]:
        start, self.start = self.start, 0
        for (idx,) in self.inner.iter_from(start):
            yield idx.tolist()


class DatasetBatches(Batches):
    """A ``Dataset`` read through a ``DataLoader`` driven by an :class:`EpochBatchSampler`."""

    def __init__(
        self, dataset: Dataset, batch_size: int, *, num_workers: int = 0, **sampler_kw: Any
    ) -> None:
        self.n_samples = len(dataset)  # type: ignore[arg-type]
        self.sampler = EpochBatchSampler(self.n_samples, batch_size, **sampler_kw)
        self.loader = DataLoader(dataset, batch_sampler=self.sampler, num_workers=num_workers)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def iter_from(self, start: int) -> Iterator[Any]:
        self.sampler.start = start
        if start == 0:
            return iter(self.loader)
        # a fresh iterator draws its base seed from the torch RNG; mid-epoch, that draw already happened
        # before the checkpoint, so it must not happen again
        now = torch.get_rng_state()
        it = iter(self.loader)
        torch.set_rng_state(now)
        return it


class LoaderBatches(Batches):
    """A user ``DataLoader``: its shuffling draws from the torch RNG when iteration starts, so the RNG state at
    epoch start is kept (and checkpointed) and a mid-epoch resume replays the epoch from it, skipping batches."""

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader
        try:
            self.n_samples = len(loader.dataset)  # type: ignore[arg-type]
        except TypeError:
            self.n_samples = 0
        self.epoch_rng: torch.Tensor | None = None

    def set_epoch(self, epoch: int) -> None:
        for obj in (
            getattr(self.loader, "sampler", None),
            getattr(self.loader, "batch_sampler", None),
        ):
            if hasattr(obj, "set_epoch"):
                obj.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def iter_from(self, start: int) -> Iterator[Any]:
        if start == 0:
            self.epoch_rng = torch.get_rng_state()
            return iter(self.loader)
        from epochpilot.train.rng import get_rng, set_rng

        now = (
            get_rng()
        )  # skipping reads items, which may draw from any RNG: put them all back afterwards
        if self.epoch_rng is not None:
            torch.set_rng_state(self.epoch_rng)
        it = iter(self.loader)
        for _ in range(start):
            next(it)
        set_rng(now)
        return it

    def state_dict(self) -> dict[str, Any]:
        return {"epoch_rng": self.epoch_rng}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch_rng = state.get("epoch_rng")


def _self_sharding(loader: DataLoader) -> Any:
    """The loader's ``sampler.set_distributed(rank, world_size)`` (or its batch sampler's), if it has one."""
    for obj in (loader.batch_sampler, loader.sampler):
        method = getattr(obj, "set_distributed", None)
        if callable(method):
            return method
    return None


def make_batches(
    data: Any,
    what: str,
    *,
    batch_size: int,
    shuffle: bool,
    drop_last: bool,
    seed: int,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    train: bool = True,
) -> Batches:
    """Wrap ``data`` (``(X, y)``, ``Dataset`` or ``DataLoader``) as a :class:`Batches`; empty data is a DataError."""
    kw = dict(
        shuffle=shuffle and train,
        drop_last=drop_last and train,
        seed=seed,
        rank=rank,
        world_size=world_size,
        pad=train,
    )
    if isinstance(data, DataLoader):
        shards = _self_sharding(data)
        if shards is not None:  # its sampler shards itself (MixedSampler, staged batches)
            shards(rank, world_size)
        elif world_size > 1:  # re-shard the user's dataset so every rank sees its part
            return DatasetBatches(
                data.dataset, data.batch_size or batch_size, num_workers=data.num_workers, **kw
            )
        batches: Batches = LoaderBatches(data)
    elif isinstance(data, (tuple, list)):
        if len(data) < 2:
            raise DataError(
                f"{what} holds {len(data)} array(s): give (X, y), the inputs then the targets"
            )
        tensors = tuple(as_tensor(t, f"{what}[{i}]") for i, t in enumerate(data))
        lengths = {len(t) for t in tensors}
        if len(lengths) != 1:
            raise DataError(
                f"{what} arrays have different lengths {[len(t) for t in tensors]}: give one row per sample in each"
            )
        check_finite(tensors, what)
        batches = TensorBatches(tensors, batch_size, **kw)
    elif isinstance(data, Dataset) and hasattr(data, "__len__"):
        batches = DatasetBatches(data, batch_size, num_workers=num_workers, **kw)
    else:
        raise DataError(
            f"{what} is a {type(data).__name__}: give (X, y), a torch Dataset with __len__ or a DataLoader"
        )
    if (
        batches.n_samples == 0
        and not isinstance(batches, LoaderBatches)
        or len(batches) == 0
        and batches.n_samples == 0
    ):
        raise DataError(f"{what} is empty: give at least one sample")
    if (
        train
        and batches.n_samples
        and batch_size > batches.n_samples
        and not isinstance(batches, LoaderBatches)
    ):
        raise DataError(
            f"batch_size {batch_size} > {batches.n_samples} training samples: lower batch_size to at most {batches.n_samples}"
        )
    return batches

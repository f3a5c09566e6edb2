"""Mixed data and staged training: ``MixedSampler`` draws from named sources at chosen weights; ``Stages`` runs
several stages (each with its data, epochs or stopper, and schedule) as one run with one history.

Why: fine-tuning on task data alone forgets general ability; replaying general data (e.g. 90/10), weighting the
task data above its share and training in stages (general first, then mixed) are the usual cures, and each must
be deterministic and resumable like the rest of the trainer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler, TensorDataset

from epochpilot.finetune.stages import (
    Stage,
    StagePolicy,
    _StageBatches,
    _StageCallback,
    check_rank,
    shard_order,
)

__all__ = ["MixedSampler", "Stage", "StagePolicy", "Stages", "as_dataset"]


def as_dataset(data: Any, what: str) -> Dataset:
    """``(X, y)`` arrays/tensors -> ``TensorDataset``; a sized ``Dataset`` as is; a ``MixedSampler`` -> its data."""
    if isinstance(data, MixedSampler):
        return data.dataset
    if isinstance(data, (tuple, list)):
        from epochpilot.train.data import as_tensor

        tensors = [as_tensor(t, f"{what}[{i}]") for i, t in enumerate(data)]
        if not tensors or len({len(t) for t in tensors}) != 1:
            raise ValueError(f"{what} must be (X, y) with one row per sample in each")
        return TensorDataset(*tensors)
    if isinstance(data, Dataset) and hasattr(data, "__len__"):
        return data
    raise TypeError(
        f"{what} is a {type(data).__name__}: give (X, y), a torch Dataset with __len__ or a MixedSampler"
    )


class MixedSampler(Sampler[int]):
    """Sample a ``ConcatDataset`` of named sources, each at ``weight`` times its natural share.

    A source with ``n`` samples and weight ``w`` gets ``w * n / sum(w_i * n_i)`` of the ``num_samples`` draws
    per epoch (default: all samples once), rounded so the counts add up exactly; within a source the draws walk
    a fresh permutation (cycled when a source is oversampled). The order is a function of ``(seed, epoch)``
    only, so a run resumed mid-epoch sees the same batches; ``set_epoch`` picks the epoch (the trainer calls it;
    without it each ``iter`` advances one epoch). Feed it to a loader: ``DataLoader(s.dataset, sampler=s)`` or
    ``s.loader(batch_size)``. Under DDP (``set_distributed(rank, world_size)``, which the trainer calls under
    torchrun) each rank iterates a disjoint share of the same epoch draw, as ``DistributedSampler`` does:
    ``indices(epoch)`` is still the whole draw, ``len()`` the rank's share.

    >>> import torch
    >>> general = (torch.zeros(90, 2), torch.zeros(90, dtype=torch.long))
    >>> task = (torch.ones(10, 2), torch.ones(10, dtype=torch.long))
    >>> s = MixedSampler({"general": general, "task": task}, weights={"task": 2.0}, seed=0)
    >>> {k: round(v, 3) for k, v in s.shares.items()}
    {'general': 0.818, 'task': 0.182}
    >>> sum(i >= 90 for i in s.indices(epoch=1))
    18
    """

    def __init__(
        self,
        datasets: Mapping[str, Any],
        weights: Mapping[str, float] | None = None,
        *,
        num_samples: int | None = None,
        seed: int = 0,
    ) -> None:
        if not isinstance(datasets, Mapping) or not datasets:
            raise ValueError("datasets must be a non-empty dict {name: dataset}")
        self.names = [str(name) for name in datasets]
        self.sources = [as_dataset(data, f"datasets[{name!r}]") for name, data in datasets.items()]
        self.lengths = [len(d) for d in self.sources]  # type: ignore[arg-type]
        for name, n in zip(self.names, self.lengths):
            if n == 0:
                raise ValueError(f"datasets[{name!r}] is empty: give it at least one sample")
        weights = dict(weights or {})
        unknown = sorted(set(map(str, weights)) - set(self.names))
        if unknown:
            raise ValueError(f"weights name unknown sources {unknown}: use names from {self.names}")
        self.weights = {name: float(weights.get(name, 1.0)) for name in self.names}
        for name, w in self.weights.items():
            if not math.isfinite(w) or w < 0:
                raise ValueError(f"weights[{name!r}] must be a finite number >= 0, got {w}")
        mass = [self.weights[name] * n for name, n in zip(self.names, self.lengths)]
        if sum(mass) <= 0:
            raise ValueError(
                f"weights must sum to a positive number, got {self.weights}: give some source a weight > 0"
            )
        self.shares = {name: m / sum(mass) for name, m in zip(self.names, mass)}
        total = sum(self.lengths)
        if num_samples is None:
            num_samples = total
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
        self.num_samples = num_samples
        self.seed = int(seed)
        self.rank, self.world_size = 0, 1
        self.epoch = 0
        self._epoch_set = False
        self.dataset = ConcatDataset(self.sources)
        self.offsets = [0]
        for n in self.lengths[:-1]:
            self.offsets.append(self.offsets[-1] + n)

    def counts(self) -> dict[str, int]:
        """Draws per source per epoch (largest-remainder rounding of the shares, so they sum to num_samples)."""
        exact = [self.shares[name] * self.num_samples for name in self.names]
        counts = [math.floor(x) for x in exact]
        order = sorted(range(len(exact)), key=lambda i: (counts[i] - exact[i], i))
        for i in order[: self.num_samples - sum(counts)]:
            counts[i] += 1
        return dict(zip(self.names, counts))

    def indices(self, epoch: int) -> list[int]:
        """The epoch's indices into ``self.dataset`` (deterministic in ``(seed, epoch)``)."""
        g = torch.Generator()
        g.manual_seed(self.seed * 1_000_003 + int(epoch))
        parts = []
        for offset, n, count in zip(self.offsets, self.lengths, self.counts().values()):
            perms = [torch.randperm(n, generator=g) for _ in range(math.ceil(count / n))]
            if perms:
                parts.append(torch.cat(perms)[:count] + offset)
        merged = torch.cat(parts)
        return merged[torch.randperm(len(merged), generator=g)].tolist()

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch``'s order at the next ``iter`` (the trainer calls this before every epoch)."""
        self.epoch = int(epoch)
        self._epoch_set = True

    def set_distributed(self, rank: int, world_size: int) -> None:
        """Iterate rank ``rank``'s share of each epoch's draw (of ``world_size`` ranks); ``(0, 1)`` = all."""
        self.rank, self.world_size = check_rank(rank, world_size)

    def __iter__(self) -> Iterator[int]:
        if not self._epoch_set:
            self.epoch += 1
        self._epoch_set = False
        order = torch.tensor(self.indices(self.epoch), dtype=torch.long)
        return iter(shard_order(order, self.rank, self.world_size).tolist())

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.world_size)

    def loader(self, batch_size: int, **kwargs: Any) -> DataLoader:
        """A ``DataLoader`` over the mixed data driven by this sampler."""
        return DataLoader(self.dataset, batch_size=batch_size, sampler=self, **kwargs)

    def source_of(self, index: int) -> str:
        """The name of the source that ``self.dataset[index]`` comes from."""
        for name, offset, n in zip(self.names, self.offsets, self.lengths):
            if offset <= index < offset + n:
                return name
        raise IndexError(f"index {index} is outside the {sum(self.lengths)} mixed samples")

    def state_dict(self) -> dict[str, Any]:
        """The position (epoch) and settings, JSON-safe."""
        return {"epoch": self.epoch, "seed": self.seed, "weights": dict(self.weights)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output (the weights must match this sampler's)."""
        if set(state) != {"epoch", "seed", "weights"}:
            raise ValueError(
                "state must have the keys 'epoch', 'seed', 'weights' (from state_dict())"
            )
        if dict(state["weights"]) != self.weights:
            raise ValueError(
                f"state weights {state['weights']} differ from this sampler's {self.weights}"
            )
        self.epoch, self.seed = int(state["epoch"]), int(state["seed"])

    def __repr__(self) -> str:
        return f"MixedSampler({dict(zip(self.names, self.lengths))}, weights={self.weights}, seed={self.seed})"


class Stages:
    """Several training stages run as one fit: one run directory, one history with a ``stage`` column.

    Under torchrun (DDP) every rank reads its share of the running stage's epoch draw and follows rank 0's
    stage: rank 0's stoppers decide when a stage ends and when the run stops.

    >>> import torch
    >>> X, y = torch.randn(40, 3), torch.randint(0, 2, (40,))
    >>> result = Stages([Stage((X[:20], y[:20]), epochs=2, name="general"),
    ...                  Stage((X, y), epochs=1, name="mixed")]).fit(
    ...     torch.nn.Linear(3, 2), (X, y), batch_size=8, seed=0)
    >>> [row["stage"] for row in result.history]
    ['general', 'general', 'mixed']
    """

    def __init__(self, stages: Sequence[Stage]) -> None:
        stages = list(stages)
        if not stages:
            raise ValueError("Stages needs at least one Stage")
        for i, stage in enumerate(stages):
            if not isinstance(stage, Stage):
                raise TypeError(f"stages[{i}] must be a Stage, got {type(stage).__name__}")
        names = [stage.name or f"stage{i + 1}" for i, stage in enumerate(stages)]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be distinct, got {names}")
        self.stages = stages
        self.datasets = [as_dataset(s.data, f"stages[{i}].data") for i, s in enumerate(stages)]
        self.lengths = [len(d) for d in self.datasets]  # type: ignore[arg-type]
        self.offsets = [sum(self.lengths[:i]) for i in range(len(stages))]

    def fit(
        self,
        model: torch.nn.Module,
        val_data: Any = None,
        *,
        max_stage_epochs: int = 100,
        probes: Mapping[str, Callable[[], float]] | None = None,
        **config: Any,
    ) -> Any:
        """Train ``model`` through every stage with ``Trainer(**config)``; returns its ``FitResult``.

        ``config`` takes TrainConfig fields except ``stopper``/``schedule``/``max_epochs`` (the stages say
        those); ``max_stage_epochs`` caps a stage that has a stopper but no ``epochs``; ``probes`` adds
        scores (e.g. ``retention``) to each row before the stoppers see it.
        """
        from epochpilot.finetune.probe import Probed
        from epochpilot.train import Trainer

        for key in ("stopper", "schedule", "max_epochs", "shuffle"):
            if key in config:
                raise ValueError(
                    f"Stages.fit: {key}= is set by the stages; give it per Stage instead"
                )
        policy = StagePolicy(self.stages, max_stage_epochs)
        batch_size, seed = int(config.get("batch_size", 32)), config.get("seed")
        sampler = _StageBatches(self, policy, batch_size, 0 if seed is None else int(seed))
        loader = DataLoader(ConcatDataset(self.datasets), batch_sampler=sampler)
        callbacks = (_StageCallback(policy), *config.pop("callbacks", ()))
        stopper = Probed(policy, probes or {})
        total = sum(policy.cap(i) for i in range(len(self.stages)))
        trainer = Trainer(stopper=stopper, max_epochs=total, callbacks=callbacks, **config)
        return trainer.fit(model, loader, val_data)

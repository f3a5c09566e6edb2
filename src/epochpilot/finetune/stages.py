"""Staged training internals: the ``Stage`` record, the policy that walks the stages, the batch sampler that
serves the running stage's data and the callback that adds the ``stage`` column and per-stage schedules.
``epochpilot.finetune.mixed.Stages`` puts them together."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Sampler

from epochpilot.core.stopping.base import STATE_VERSION, Decision, Policy, Reason, check_epoch
from epochpilot.train.events import Callback, TrainState

__all__ = ["Stage", "StagePolicy", "shard_order"]


def shard_order(order: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank ``rank``'s share of one epoch's ``order``, like ``DistributedSampler``: padded by repeating the
    first entries to a multiple of ``world_size``, then every ``world_size``-th from position ``rank``, so the
    ranks get disjoint positions of the same draw and equal counts (equal counts keep DDP's collectives in step).
    """
    if world_size <= 1:
        return order
    per_rank = math.ceil(len(order) / world_size)
    total = per_rank * world_size
    while len(order) < total:  # more ranks than samples: repeat as often as needed
        order = torch.cat([order, order[: total - len(order)]])
    return order[rank:total:world_size]


def check_rank(rank: int, world_size: int) -> tuple[int, int]:
    """``(rank, world_size)`` as ints, or a ValueError naming the bad one."""
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an int >= 1, got {world_size!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an int in [0, {world_size}), got {rank!r}")
    return rank, world_size


@dataclass(frozen=True)
class Stage:
    """One stage of a staged run: its training data, and ``epochs`` (a cap) and/or a ``stopper``.

    ``data`` is ``(X, y)``, a Dataset or a :class:`MixedSampler`; ``schedule`` (step -> lr, counted from the
    stage's first update) sets the learning rate during the stage (default: the optimizer's base lr).
    """

    data: Any
    epochs: int | None = None
    stopper: Any = None
    schedule: Callable[[int], float] | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if self.epochs is None and self.stopper is None:
            raise ValueError(
                "a Stage needs epochs or a stopper (or both): e.g. Stage(data, epochs=3) "
                "or Stage(data, stopper=EarlyStopping(...))"
            )
        if self.epochs is not None and (
            isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1
        ):
            raise ValueError(f"Stage epochs must be an int >= 1 or None, got {self.epochs!r}")
        if self.stopper is not None and not isinstance(self.stopper, Policy):
            raise TypeError(
                f"Stage stopper must be a stop Policy, got {type(self.stopper).__name__}"
            )
        if self.schedule is not None and not callable(self.schedule):
            raise TypeError("Stage schedule must be an epochpilot schedule (step -> lr)")


class StagePolicy(Policy):
    """Runs each stage's stopper on the stage's own epochs (1-based within the stage) and moves to the next
    stage when it fires or the stage's epochs are used; only the last stage's improvements mark the best epoch
    (the model you keep is a final-stage model). Stops with the last stage's reason, or ``MAX_EPOCHS``."""

    def __init__(self, stages: Sequence[Stage], max_stage_epochs: int = 100) -> None:
        self.stages = tuple(stages)
        self.max_stage_epochs = max_stage_epochs
        self._init_state()

    def _init_state(self) -> None:
        self.stage_ = 0
        self.start_epoch_ = 1
        self.start_step_ = 0
        for stage in self.stages:
            if stage.stopper is not None:
                stage.stopper.reset()

    def reset(self) -> None:
        """Back to the first stage; every stage's stopper reset."""
        self._init_state()

    @property
    def stoppers(self) -> list[Policy]:
        """The stages' stoppers (for callers that look for guards inside)."""
        return [s.stopper for s in self.stages if s.stopper is not None]

    @property
    def monitor(self) -> str | None:
        """The last stage's monitored metric (the one that chooses the kept epoch), when it has one."""
        last = self.stages[-1].stopper
        return getattr(last, "monitor", None) or getattr(
            getattr(last, "policies", [None])[0], "monitor", None
        )

    @property
    def mode(self) -> str:
        """The last stage's mode ("min" when unknown)."""
        last = self.stages[-1].stopper
        return getattr(last, "mode", None) or getattr(
            getattr(last, "policies", [None])[0], "mode", "min"
        )

    def cap(self, index: int) -> int:
        """The epoch budget of stage ``index``."""
        return self.stages[index].epochs or self.max_stage_epochs

    def stage_name(self, index: int) -> str:
        """A stage's name (``stage1``, ... when not given)."""
        return self.stages[index].name or f"stage{index + 1}"

    def update(self, epoch: int, metrics: Mapping[str, float]) -> Decision:
        """Feed the running stage's stopper; advance or stop when the stage is over."""
        epoch = check_epoch(epoch)
        index = self.stage_
        stage = self.stages[index]
        local = epoch - self.start_epoch_ + 1
        name = self.stage_name(index)
        last = index == len(self.stages) - 1
        inner = stage.stopper.update(local, metrics) if stage.stopper is not None else None
        best = None
        if inner is not None and inner.best_epoch is not None:
            best = inner.best_epoch + self.start_epoch_ - 1
        fired = inner is not None and inner.stop
        over = fired or local >= self.cap(index)
        why = inner.message if fired else f"ran its {local} epochs"
        improved = bool(inner is not None and inner.improved and last)
        common = dict(best_epoch=best if last else None, policy=self.name)
        value = inner.best_value if (inner is not None and last) else None
        if over and not last:
            self.stage_ += 1
            self.start_epoch_ = epoch + 1
            self.start_step_ = int(metrics.get("step", 0))
            message = f"stage {name!r} ended ({why}): next stage {self.stage_name(index + 1)!r}"
            return Decision(
                False, Reason.CONTINUE, False, best_value=None, message=message, **common
            )
        if over:
            reason = inner.reason if fired and inner is not None else Reason.MAX_EPOCHS
            return Decision(
                True,
                reason,
                improved,
                best_value=value,
                message=f"stage {name!r} (its epoch {local}): {why}",
                **common,
            )
        text = inner.message if inner is not None else f"epoch {local} of {self.cap(index)}"
        return Decision(
            False,
            Reason.CONTINUE,
            improved,
            best_value=value,
            message=f"stage {name!r} (its epoch {local}): {text}",
            **common,
        )

    def state_dict(self) -> dict[str, Any]:
        """Stage position plus every stage stopper's state (None for stages without one)."""
        inner = {
            "stage_": self.stage_,
            "start_epoch_": self.start_epoch_,
            "start_step_": self.start_step_,
            "stoppers": [
                s.stopper.state_dict() if s.stopper is not None else None for s in self.stages
            ],
        }
        return {"policy": type(self).__name__, "version": STATE_VERSION, "state": inner}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        inner = self._unwrap_state(state)
        if set(inner) != {"stage_", "start_epoch_", "start_step_", "stoppers"} or len(
            inner["stoppers"]
        ) != len(self.stages):
            raise ValueError(f"state does not match these {len(self.stages)} stages")
        for stage, sub in zip(self.stages, inner["stoppers"]):
            if stage.stopper is not None:
                stage.stopper.load_state_dict(sub)
        self.stage_ = int(inner["stage_"])
        self.start_epoch_ = int(inner["start_epoch_"])
        self.start_step_ = int(inner["start_step_"])


class _StageBatches(Sampler[list[int]]):
    """Batches of the running stage's data (indices into the concatenation of every stage's data); under DDP
    each rank takes its :func:`shard_order` share of the stage's epoch order."""

    def __init__(self, stages: Any, policy: StagePolicy, batch_size: int, seed: int) -> None:
        self.stages, self.policy = stages, policy
        self.batch_size, self.seed = batch_size, seed
        self.epoch = 1
        self.rank, self.world_size = 0, 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_distributed(self, rank: int, world_size: int) -> None:
        """Serve rank ``rank``'s share of each epoch (the trainer calls this under torchrun)."""
        self.rank, self.world_size = check_rank(rank, world_size)

    def _indices(self) -> torch.Tensor:
        index = self.policy.stage_
        data = self.stages.stages[index].data
        offset = self.stages.offsets[index]
        if hasattr(data, "indices"):  # a MixedSampler
            order = torch.tensor(data.indices(self.epoch), dtype=torch.long)
        else:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.stages.lengths[index], generator=g)
        return shard_order(order, self.rank, self.world_size) + offset

    def __len__(self) -> int:
        return math.ceil(len(self._indices()) / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = self._indices()
        for i in range(0, len(order), self.batch_size):
            yield order[i : i + self.batch_size].tolist()


class _StageCallback(Callback):
    """Adds the ``stage`` column to each row and sets the learning rate from the running stage's schedule."""

    state_key = "stages"

    def __init__(self, policy: StagePolicy) -> None:
        self.policy = policy
        self.base: list[float] | None = None
        self.current = ""

    def _apply(self, state: TrainState) -> None:
        groups = state.optimizer.param_groups
        if self.base is None:
            self.base = [float(g.get("initial_lr", g["lr"])) for g in groups]
        schedule = self.policy.stages[self.policy.stage_].schedule
        if schedule is None:
            lrs = [b * state.lr_scale for b in self.base]
        else:
            lr = float(schedule(state.step - self.policy.start_step_)) * state.lr_scale
            lrs = [lr * b / (self.base[0] or 1.0) for b in self.base]
        for group, lr in zip(groups, lrs):
            group["lr"] = lr

    def on_fit_start(self, state: TrainState) -> None:
        self._apply(state)

    def on_epoch_start(self, state: TrainState) -> None:
        if state.world_size > 1:  # all ranks follow rank 0's stage, so all serve the same data
            from epochpilot.train import distributed as D

            info = D.DistInfo(rank=state.rank, world_size=state.world_size)
            self.policy.load_state_dict(D.broadcast(self.policy.state_dict(), info))
        self.current = self.policy.stage_name(self.policy.stage_)
        self._apply(state)

    def on_step_end(self, state: TrainState) -> None:
        if self.policy.stages[self.policy.stage_].schedule is not None:
            self._apply(state)

    def on_validation_end(self, state: TrainState) -> None:
        state.row["stage"] = self.current

    def state_dict(self) -> dict[str, Any]:
        return {"base": self.base}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base = state["base"]

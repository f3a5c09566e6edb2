"""Distributed data parallel under ``torchrun``: detect the environment, initialise the process group (gloo on
CPU, nccl on CUDA), wrap the model, sum metrics across ranks and take decisions once on rank 0.

Outside torchrun every helper is a cheap no-op, so the loop has one code path.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo",
    "all_sum",
    "any_rank",
    "average_grads",
    "barrier",
    "broadcast",
    "gather",
    "max_int",
    "setup",
    "unwrap",
    "wrap",
]


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job; ``world_size == 1`` outside torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def active(self) -> bool:
        """True when several processes train together."""
        return self.world_size > 1


def setup(device: str) -> tuple[DistInfo, torch.device]:
    """Join the torchrun job if there is one (``WORLD_SIZE`` > 1) and resolve ``device`` ("auto" included)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    info = DistInfo()
    if world > 1:
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", local)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        here = False
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
            here = True
        info = DistInfo(dist.get_rank(), dist.get_world_size(), local, here)
    elif dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return info, dev


def teardown(info: DistInfo) -> None:
    """Leave the process group if :func:`setup` created it."""
    if info.initialised_here and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, info: DistInfo, device: torch.device) -> torch.nn.Module:
    """Wrap in DistributedDataParallel when distributed; the model itself otherwise."""
    if not info.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The user's module inside a DDP wrapper."""
    return getattr(model, "module", model)


def all_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over ranks (in place) when distributed."""
    if info.active:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def broadcast(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank (decisions are taken once, then shared)."""
    if not info.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def decide(decision: Callable[[], Any], info: DistInfo, default: Any = None) -> Any:
    """``decision()`` run on rank 0 and its answer on every rank (other ranks: ``default`` until it
    arrives); an error it raises is raised on every rank, so none waits for an answer that never comes."""
    outcome: tuple[str, Any] = ("ok", default)
    if info.rank == 0:
        try:
            outcome = ("ok", decision())
        except Exception as exc:
            if not info.active:
                raise
            outcome = ("error", exc)
    kind, answer = broadcast(outcome, info)
    if kind == "error":
        raise answer
    return answer


def gather(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not info.active:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    """Wait for every rank."""
    if info.active:
        dist.barrier()


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank when ``flag`` is True on any (one small all-reduce)."""
    if not info.active:
        return flag
    box = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(box, op=dist.ReduceOp.MAX)
    return bool(box.item() > 0)


def average_grads(module: torch.nn.Module, info: DistInfo) -> None:
    """What DDP's reducer does after a backward, done by hand: every gradient averaged over the ranks
    (a parameter without one gets zeros, as with DDP's ``find_unused_parameters``), then rank 0's buffers on every rank."""
    if not info.active:
        return
    for p in module.parameters():
        if p.requires_grad:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(info.world_size)
    for b in module.buffers():
        dist.broadcast(b, src=0)


def max_int(value: int, info: DistInfo, device: torch.device) -> int:
    """The largest ``value`` over the ranks (``value`` itself outside torchrun)."""
    if not info.active:
        return value
    box = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(box, op=dist.ReduceOp.MAX)
    return int(box.item())

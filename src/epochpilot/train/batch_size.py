"""Batch-size search: the largest batch that trains without running out of memory, or the fastest one.

Like Lightning's ``scale_batch_size(mode="binsearch")``: batches grow by doubling from ``min_batch`` until one
runs out of memory (or hits the cap: the dataset size, ``max_batch``, ``effective_batch``), then a binary
search between the last batch that fit and the first that did not finds the largest one exactly. Each try
runs real forward + backward + optimizer steps (one warm-up, then timed steps for samples/s) on copies of the
model and optimizer, so the caller's model, optimizer and RNG states are unchanged afterwards.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable, Sized
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from epochpilot.core.batch import fit_to_effective, search_largest
from epochpilot.errors import ConfigError, DataError
from epochpilot.train.splitting import free_memory
from epochpilot.train.splitting import is_oom as _is_oom

__all__ = ["BatchChoice", "Trial", "find_batch_size", "fit_to_effective", "search_largest"]

_GOALS = ("memory", "throughput")
_TIMED_STEPS = 3
_MIN_TIMED_S = 0.05
_MAX_TIMED_STEPS = 50
_now: Callable[[], float] = time.perf_counter  # the clock; tests swap in a fake one


class Trial(NamedTuple):
    """One try: the batch, "ok" / "oom" / "error", seconds it took, measured samples/s (None unless ok)."""

    batch: int
    outcome: str
    seconds: float
    samples_per_s: float | None


@dataclass(frozen=True)
class BatchChoice:
    """The chosen batch, the accumulation that reaches ``effective_batch``, and every batch tried."""

    batch_size: int
    accumulation: int
    effective_batch: int
    peak_memory_bytes: int | None
    samples_per_s: float | None
    tried: tuple[Trial, ...] = ()
    device: str = "cpu"
    goal: str = "memory"

    def __str__(self) -> str:
        peak = (
            "n/a"
            if self.peak_memory_bytes is None
            else f"{self.peak_memory_bytes / 2**20:,.1f} MiB"
        )
        speed = "n/a" if self.samples_per_s is None else f"{self.samples_per_s:,.0f}"
        lines = [
            f"batch_size={self.batch_size} x accumulation={self.accumulation} "
            f"= effective batch {self.effective_batch} (goal={self.goal}, device={self.device})",
            f"peak memory {peak}, {speed} samples/s",
            f"{'batch':>7}  {'outcome':<7}  {'seconds':>8}  {'samples/s':>10}",
        ]
        for t in self.tried:
            sps = "-" if t.samples_per_s is None else f"{t.samples_per_s:,.0f}"
            lines.append(f"{t.batch:>7}  {t.outcome:<7}  {t.seconds:>8.3f}  {sps:>10}")
        return "\n".join(lines)


def _check(name: str, value: Any, low: int) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
        raise ConfigError(f"{name} must be an int >= {low} or None, got {value!r}")


def _as_tensor(value: Any, what: str) -> torch.Tensor:
    """Array-like -> tensor as the trainer converts it: float64 -> float32, small integer kinds -> int64."""
    try:
        t = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise DataError(
            f"{what} cannot be turned into a tensor ({exc}): give a numpy array or tensor"
        ) from None
    if t.ndim == 0:
        raise DataError(f"{what} is a single value: give an array with one row per sample")
    if t.dtype == torch.float64:
        return t.float()
    if t.dtype in (torch.int8, torch.int16, torch.int32, torch.uint8):
        return t.long()
    return t


def _batch_maker(train_data: Any) -> tuple[Callable[[int], tuple[Any, Any]], int]:
    """``(make(b) -> (inputs, targets) of the first b samples, n)``; refuses data without a length."""
    from torch.utils.data import DataLoader, IterableDataset, default_collate

    collate = default_collate
    if isinstance(train_data, DataLoader) and not isinstance(train_data.dataset, IterableDataset):
        train_data, collate = train_data.dataset, train_data.collate_fn
    if isinstance(train_data, (tuple, list)) and len(train_data) == 2:
        X, y = _as_tensor(train_data[0], "X"), _as_tensor(train_data[1], "y")
        if len(X) != len(y):
            raise DataError(f"X has {len(X)} rows but y has {len(y)}: give one target per sample")
        return (lambda b: (X[:b], y[:b])), len(X)
    if isinstance(train_data, Sized) and hasattr(train_data, "__getitem__"):

        def make(b: int) -> tuple[Any, Any]:
            batch = collate([train_data[i] for i in range(b)])
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise DataError(
                    "each dataset item must be (inputs, target): batch_size='auto' needs both"
                )
            return batch[0], batch[1]

        return make, len(train_data)
    raise DataError(
        f"batch_size='auto' needs data with a length, got {type(train_data).__name__}: pass (X, y) arrays or a "
        "Dataset with __len__, or give an explicit batch_size"
    )


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (tuple, list)):
        return type(value)(_to(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    return value


def _optimizer_factory(
    model: torch.nn.Module, work: torch.nn.Module, optimizer: torch.optim.Optimizer | None
) -> Callable[[], torch.optim.Optimizer]:
    """Fresh copies of ``optimizer`` (class, per-group hyperparameters and state) acting on ``work``."""
    if optimizer is None:
        return lambda: torch.optim.Adam(work.parameters(), lr=1e-3)
    pairs = list(zip(model.parameters(), work.parameters(), strict=True))
    known = {id(p) for p, _ in pairs}
    if any(id(p) not in known for g in optimizer.param_groups for p in g["params"]):
        raise ConfigError(
            "optimizer holds parameters that are not the model's: build it from model.parameters()"
        )

    def make() -> torch.optim.Optimizer:
        # deepcopy with the caller's parameters pre-mapped to the copy's: state is copied, params are not
        opt = copy.deepcopy(optimizer, memo={id(p): q for p, q in pairs})
        for q, state in opt.state.items():
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.dim() > 0:
                    state[key] = value.to(q.device)
        return opt

    return make


def _steps(
    work: torch.nn.Module,
    start: dict[str, torch.Tensor],
    new_optimizer: Callable[[], torch.optim.Optimizer],
    batch: tuple[Any, Any],
    loss_fn: Callable[..., torch.Tensor],
    device: torch.device,
) -> tuple[int, float]:
    """A warm-up step, then timed steps (at least ``_TIMED_STEPS`` and ``_MIN_TIMED_S`` seconds, at most
    ``_MAX_TIMED_STEPS``, so tiny batches are not timed on a millisecond); ``(timed steps, seconds)``."""
    work.load_state_dict(start)
    opt = new_optimizer()
    inputs, targets = _to(batch, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda _d: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0, steps = 0.0, -1
    try:
        while steps < _TIMED_STEPS or (steps < _MAX_TIMED_STEPS and _now() - t0 < _MIN_TIMED_S):
            opt.zero_grad(set_to_none=True)
            loss_fn(work(inputs), targets).backward()
            opt.step()
            sync(device)
            steps += 1
            if steps == 0:
                t0 = _now()
        return steps, _now() - t0
    finally:
        work.zero_grad(set_to_none=True)


def find_batch_size(
    model: torch.nn.Module,
    train_data: Any,
    loss_fn: Callable[..., torch.Tensor],
    *,
    optimizer: torch.optim.Optimizer | None = None,
    device: str | torch.device | None = None,
    max_batch: int | None = None,
    headroom: float = 0.1,
    goal: str = "memory",
    effective_batch: int | None = None,
    min_batch: int = 1,
    time_budget_s: float | None = None,
) -> BatchChoice:
    """Find the batch size to train with by running real training steps on copies; see the module docstring.

    ``goal="memory"``: the largest batch that fits. ``goal="throughput"``: of the batches tried that fit, the
    one with the most measured samples/s (on a CPU a bigger batch is often not faster). ``effective_batch``:
    the batch is the largest fitting divisor of it, so ``batch_size * accumulation == effective_batch`` exactly.
    ``headroom``: on CUDA a try whose peak allocated memory exceeds ``(1 - headroom)`` of the device's total
    counts as out of memory; elsewhere memory is not measured (``peak_memory_bytes`` is None) and headroom
    has no effect. ``time_budget_s`` ends the search early with the best batch found so far.

    The optimizer is deep-copied onto the model's copy for each try (class, group hyperparameters and state;
    without one, Adam). On CUDA the copies sit beside the caller's model, so the peak is conservative by one
    model and its optimizer state. An exception other than out of memory is raised as is when no batch has fit
    yet (a bug in the model, loss or data); after one has fit it marks the batch as not fitting ("error").

    >>> import torch
    >>> X, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    >>> model = torch.nn.Linear(4, 3)
    >>> find_batch_size(model, (X, y), torch.nn.functional.cross_entropy, max_batch=16).batch_size
    16
    """
    if goal not in _GOALS:
        raise ConfigError(
            f"goal must be one of {_GOALS}, got {goal!r}: 'memory' (largest) or 'throughput'"
        )
    _check("min_batch", min_batch, 1)
    _check("max_batch", max_batch, 1)
    _check("effective_batch", effective_batch, 1)
    if (
        isinstance(headroom, bool)
        or not isinstance(headroom, (int, float))
        or not 0 <= headroom < 1
    ):
        raise ConfigError(
            f"headroom must be in [0, 1), got {headroom!r}: 0.1 keeps a tenth of GPU memory free"
        )
    if effective_batch is not None and effective_batch < min_batch:
        raise ConfigError(
            f"effective_batch={effective_batch} is smaller than min_batch={min_batch}: raise effective_batch "
            "or lower min_batch"
        )
    if max_batch is not None and max_batch < min_batch:
        raise ConfigError(
            f"max_batch={max_batch} is smaller than min_batch={min_batch}: raise max_batch"
        )
    if time_budget_s is not None and not time_budget_s > 0:
        raise ConfigError(f"time_budget_s must be > 0 or None, got {time_budget_s!r}")
    make_batch, n = _batch_maker(train_data)
    if n < min_batch:
        raise DataError(
            f"the data has {n} samples, fewer than min_batch={min_batch}: lower min_batch"
        )
    cap = min(c for c in (n, max_batch, effective_batch) if c is not None)
    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    limit = None
    if device.type == "cuda":
        limit = (1 - headroom) * torch.cuda.get_device_properties(device).total_memory

    rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    cuda_rng = (
        torch.cuda.get_rng_state_all()
        if device.type == "cuda" or (torch.cuda.is_available() and torch.cuda.is_initialized())
        else None
    )
    work = copy.deepcopy(model).to(device).train()
    new_optimizer = _optimizer_factory(model, work, optimizer)
    start_state = {k: v.detach().clone() for k, v in work.state_dict().items()}
    tried: list[Trial] = []
    peaks: dict[int, int | None] = {}
    started = _now()

    def attempt(b: int) -> bool:
        begin = _now()
        failure: str | None = None
        try:
            steps, elapsed = _steps(
                work, start_state, new_optimizer, make_batch(b), loss_fn, device
            )
        except Exception as exc:
            if not _is_oom(exc) and not any(t.outcome == "ok" for t in tried):
                raise  # a bug in the model, loss or data, not a batch too big
            failure = "oom" if _is_oom(exc) else "error"
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
        if failure is None and limit is not None and peak is not None and peak > limit:
            failure = "oom"
        seconds = _now() - begin
        free_memory(device, collect=failure is not None)
        if failure is not None:
            tried.append(Trial(b, failure, seconds, None))
            return False
        peaks[b] = peak
        tried.append(Trial(b, "ok", seconds, b * steps / max(elapsed, 1e-12)))
        return True

    def out_of_time() -> bool:
        return time_budget_s is not None and _now() - started > time_budget_s

    try:
        largest = search_largest(attempt, min_batch, cap, out_of_time)
        if largest is None:
            lower = ", lower min_batch" if min_batch > 1 else ""
            raise ConfigError(
                f"the model does not fit in memory at min_batch={min_batch} on {device}: use a smaller model"
                f"{lower}, precision='bf16-mixed', free device memory or train on another device"
            )
        ok = [t for t in tried if t.outcome == "ok"]
        if goal == "throughput":
            usable = [t for t in ok if effective_batch is None or effective_batch % t.batch == 0]
            if usable:
                best = max(usable, key=lambda t: (t.samples_per_s or 0.0, t.batch))
                largest = best.batch
        batch, accumulation = fit_to_effective(largest, effective_batch, min_batch)
        if batch not in peaks and not attempt(batch):  # a divisor not tried yet: measure it
            raise ConfigError(
                f"batch {batch} (a divisor of effective_batch={effective_batch}) failed although a larger batch "
                "fit: pick an effective_batch that is a power of two times min_batch"
            )
    finally:
        work.zero_grad(set_to_none=True)
        free_memory(device, collect=device.type != "cpu")
        random.setstate(rng[0])
        np.random.set_state(rng[1])
        torch.set_rng_state(rng[2])
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
    speed = next(t.samples_per_s for t in reversed(tried) if t.batch == batch and t.outcome == "ok")
    return BatchChoice(
        batch_size=batch,
        accumulation=accumulation,
        effective_batch=batch * accumulation,
        peak_memory_bytes=peaks[batch],
        samples_per_s=speed,
        tried=tuple(tried),
        device=str(device),
        goal=goal,
    )

"""Tiny data and models for the trainer tests (CPU, one thread, milliseconds per epoch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from epochpilot.core.stopping.base import Decision, Policy, Reason
from epochpilot.train.events import Callback


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def blobs() -> tuple[np.ndarray, np.ndarray]:
    """96 float64 points in 3 classes with int32 labels (the trainer must convert both)."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 96).astype(np.int32)
    X = rng.normal(size=(96, 4)) + y[:, None] * 1.5
    return X, y


def mlp(seed: int = 0, n_in: int = 4, n_out: int = 3) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(n_in, 8), torch.nn.ReLU(), torch.nn.Linear(8, n_out))


class Scripted(Policy):
    """A stop policy that answers from a script: ``{epoch: Decision kwargs}``; improves whenever val_loss does."""

    _state_keys = ("seen", "best")

    def __init__(self, script: dict[int, dict] | None = None, monitor: str = "val_loss") -> None:
        self.script = script or {}
        self.monitor = monitor
        self.mode = "min"
        self._init_state()

    def _init_state(self) -> None:
        self.seen: list[int] = []
        self.best: list[float] = []

    def update(self, epoch: int, metrics) -> Decision:
        self.seen.append(epoch)
        value = float(metrics[self.monitor])
        improved = not self.best or value < self.best[0]
        if improved:
            self.best = [value, epoch]
        extra = self.script.get(epoch, {})
        return Decision(
            stop=extra.get("stop", False),
            reason=extra.get("reason", Reason.CONTINUE),
            improved=improved,
            best_epoch=int(self.best[1]),
            best_value=self.best[0],
            message=extra.get("message", ""),
            extend_by=extra.get("extend_by", 0),
        )


class LrTrace(Callback):
    """The lr after each update, i.e. the lr the next update uses (the schedule callback has set it)."""

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_step_end(self, state):
        self.lrs.append(state.optimizer.param_groups[0]["lr"])


class Improves(Policy):
    """Improves exactly at the given epochs; stops (patience) at ``stop_at`` and every epoch after."""

    _state_keys = ("best",)

    def __init__(self, improve: tuple[int, ...], stop_at: int) -> None:
        self.monitor, self.mode = "val_loss", "min"
        self.improve, self.stop_at = improve, stop_at
        self._init_state()

    def _init_state(self) -> None:
        self.best: list[float] = []

    def update(self, epoch, metrics) -> Decision:
        improved = epoch in self.improve
        if improved:
            self.best = [float(metrics["val_loss"]), epoch]
        stop = epoch >= self.stop_at
        return Decision(
            stop=stop,
            reason=Reason.PATIENCE if stop else Reason.CONTINUE,
            improved=improved,
            best_epoch=int(self.best[1]) if self.best else None,
            best_value=self.best[0] if self.best else None,
            message="val_loss stopped improving" if stop else "",
        )


@pytest.fixture
def make_mlp():
    """Factory for the small MLP."""
    return mlp


@pytest.fixture
def scripted():
    """The scripted stop-policy class."""
    return Scripted

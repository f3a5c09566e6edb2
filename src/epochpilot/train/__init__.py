"""The torch side of epochpilot: a thin training loop whose features are callbacks on a few named events."""

from __future__ import annotations

from epochpilot.train.callbacks import (
    BestTracker,
    CheckpointTimer,
    ScheduleCallback,
    StopperCallback,
)
from epochpilot.train.checkpoint import list_checkpoints, load_checkpoint
from epochpilot.train.config import TrainConfig
from epochpilot.train.events import EVENTS, Callback, Request, TrainState
from epochpilot.train.metrics import accuracy
from epochpilot.train.signals import TrainingTerminated
from epochpilot.train.trainer import FitResult, Trainer, fit

__all__ = [
    "EVENTS",
    "BestTracker",
    "Callback",
    "CheckpointTimer",
    "FitResult",
    "Request",
    "ScheduleCallback",
    "StopperCallback",
    "TrainConfig",
    "TrainState",
    "Trainer",
    "TrainingTerminated",
    "accuracy",
    "fit",
    "list_checkpoints",
    "load_checkpoint",
]

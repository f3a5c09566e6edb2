"""Two steps of ``Trainer.fit`` kept apart from it: the callbacks a fit runs with (schedule, stopper, records,
checkpoints, progress), and the loop restored from the checkpoint it resumes from."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

from epochpilot.errors import CheckpointError, ConfigError
from epochpilot.train.callbacks import (
    BestTracker,
    CheckpointTimer,
    ScheduleCallback,
    StopperCallback,
)
from epochpilot.train.checkpoint import CheckpointDir, load_checkpoint
from epochpilot.train.checkpoint_check import best_weights
from epochpilot.train.config import TrainConfig, parse_every
from epochpilot.train.progress import ProgressBar, want_progress
from epochpilot.train.record import HistoryWriter, TensorBoardLogger

__all__ = ["build_callbacks", "restore"]

log = logging.getLogger("epochpilot")


def build_callbacks(
    cfg: TrainConfig,
    *,
    rank: int,
    run_dir: Path | None,
    schedule: Any,
    factory: Any,
    total: int,
    stopper: Any,
    monitor: str,
    mode: str,
) -> tuple[list[Any], HistoryWriter | None, CheckpointDir | None]:
    """``(callbacks, history writer, checkpoint dir)`` for a fit (the writer and the checkpoints only with a
    ``run_dir``, the writer on rank 0); callbacks sharing a ``state_key`` are a ConfigError."""
    callbacks: list[Any] = []
    if schedule is not None:
        callbacks.append(ScheduleCallback(schedule, factory, total))
    callbacks.append(
        StopperCallback(stopper) if stopper is not False else BestTracker(monitor, mode)
    )
    callbacks.extend(cfg.callbacks)
    writer = None
    ckpts = None
    if run_dir is not None and rank == 0:
        writer = HistoryWriter(run_dir)
        callbacks.append(writer)
        if cfg.tensorboard:
            callbacks.append(TensorBoardLogger(run_dir / "tb"))
    if run_dir is not None:
        every = parse_every(cfg.checkpoint_every)
        ckpts = CheckpointDir(
            run_dir / "checkpoints",
            cfg.keep_last,
            background=rank == 0,
            sync=cfg.checkpoint_fsync,
        )
        if every is not None:
            callbacks.append(CheckpointTimer(*every))
    if want_progress(cfg.progress) and rank == 0:
        callbacks.append(ProgressBar())
    keys = [cb.state_key for cb in callbacks]
    dupes = {k for k in keys if keys.count(k) > 1}
    if dupes:
        raise ConfigError(
            f"callbacks share the state_key {sorted(dupes)}: give each a distinct state_key"
        )
    return callbacks, writer, ckpts


def restore(loop: Any, resume_from: Path, config_hash: str | tuple[str, ...]) -> Path:
    """Restore ``loop`` from checkpoint ``resume_from`` (or, when that one is unusable and was chosen
    automatically, the newest usable one before it: see ``Loop._resume_parts``); returns the checkpoint
    actually used and logs where training resumes. A checkpoint whose config hash is none of
    ``config_hash`` (the run's, and the same settings' hash in the older format) is warned about."""
    parts = load_checkpoint(resume_from)
    if parts["optimizer"] is None or parts["state"] is None:
        raise CheckpointError(
            f"{resume_from} holds weights only: resume from an epoch- or step- checkpoint"
        )
    loop._restore(parts, best=best_weights(Path(resume_from), parts)[0])
    used = Path(getattr(loop, "resumed_from", None) or resume_from)
    meta = parts["meta"]
    if used != Path(resume_from):  # a fallback: its own meta (it loaded, so it is valid JSON)
        with contextlib.suppress(OSError, ValueError):
            meta = json.loads((used / "meta.json").read_text(encoding="utf-8"))
    hashes = (config_hash,) if isinstance(config_hash, str) else tuple(config_hash)
    if meta.get("config_hash") not in hashes:
        log.warning("checkpoint %s was written by a different config", used)
    st = loop.state
    log.info(
        "resumed from %s at epoch %d, batch %d, update %d",
        used,
        st.epochs_done + 1,
        st.batch,
        st.step,
    )
    return used

"""The run directory: refuse to damage an existing run, decide what to resume from, save ``config.toml``."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomllib

from epochpilot.errors import CheckpointError, ConfigError
from epochpilot.train.checkpoint import CheckpointDir
from epochpilot.train.config import TrainConfig, to_toml

__all__ = ["prepare_run_dir", "write_config"]

log = logging.getLogger("epochpilot")
OURS = ("config.toml", "history.jsonl", "history.csv", "summary.json", "checkpoints", "tb")


def _check_writable(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".epochpilot-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"run_dir {str(run_dir)!r} is not writable ({type(exc).__name__}: {exc.strerror or exc}): "
            f"choose a directory you can write to"
        ) from None


def _old_config(run_dir: Path) -> dict[str, Any] | None:
    file = run_dir / "config.toml"
    if not file.is_file():
        return None
    try:
        return tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Names of hashed fields whose values differ between two saved configs."""
    new = tomllib.loads(to_toml(new))  # compare like with like: None is "none" in TOML
    keys = []
    for table in ("train", "model", "data"):
        a, b = old.get(table, {}), new.get(table, {})
        keys += [f"{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    from epochpilot.train.config import _NOT_HASHED

    return [k for k in keys if k not in _NOT_HASHED] or ["(unknown fields)"]


def prepare_run_dir(
    cfg: TrainConfig, tables: Mapping[str, Mapping[str, Any]], config_hash: str
) -> Path | None:
    """Check ``run_dir`` and return the checkpoint to resume from (None: start fresh).

    An existing run is refused unless ``resume`` or ``overwrite`` says what to do with it; a refusal touches
    no file. ``resume="auto"`` continues only a run of the same config (same hash).
    """
    resume = cfg.resume
    explicit = isinstance(resume, (str, Path)) and resume != "auto"
    if cfg.run_dir is None:
        return Path(resume) if explicit else None
    run_dir = Path(cfg.run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run_dir {str(run_dir)!r} is a file: give a directory path")
    _check_writable(run_dir)
    ckpts = CheckpointDir(run_dir / "checkpoints", cfg.keep_last)
    old = _old_config(run_dir)
    has_run = old is not None or any((run_dir / name).exists() for name in OURS)
    same = old is not None and old.get("run", {}).get("config_hash") == config_hash
    if explicit:
        return Path(resume)
    if not has_run:
        if resume is True:
            raise ConfigError(
                f"resume=True but run_dir {str(run_dir)!r} holds no run: use resume='auto' or False"
            )
        return None
    if cfg.overwrite:
        for name in OURS:
            path = run_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        log.info("overwrite=True: removed the previous run in %s", run_dir)
        return None
    what = "a run" if same else "a run of a different config"
    diff = "" if same or old is None else f" (differs in {', '.join(_differences(old, tables))})"
    if resume is False:
        raise ConfigError(
            f"run_dir {str(run_dir)!r} already holds {what}{diff}: pass resume='auto' to continue it, "
            f"overwrite=True to replace it, or another run_dir"
        )
    if resume == "auto" and not same:
        raise ConfigError(
            f"run_dir {str(run_dir)!r} holds a run of a different config{diff}: resume=True continues it anyway, "
            f"overwrite=True replaces it, or use another run_dir"
        )
    try:
        latest = ckpts.latest()
    except CheckpointError:
        raise
    if latest is None:
        if resume is True:
            raise ConfigError(
                f"resume=True but run_dir {str(run_dir)!r} has no checkpoint: use resume='auto'"
            )
        log.info("run_dir %s has no checkpoint yet: starting from scratch", run_dir)
        return None
    if not same:
        log.warning("resuming %s with a changed config%s", latest, diff)
    return latest


def write_config(run_dir: Path, tables: Mapping[str, Mapping[str, Any]]) -> None:
    """Save the resolved config as ``run_dir/config.toml``."""
    from epochpilot.train.record import atomic_write_text

    atomic_write_text(Path(run_dir) / "config.toml", to_toml(tables))

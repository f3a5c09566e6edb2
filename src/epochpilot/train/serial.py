"""Turning training state into bytes on disk: strict JSON, in-memory ``torch.save``, one-call file writes with
optional fsync, and CPU snapshots of state that a background writer can own."""

from __future__ import annotations

import copy
import io
import json
import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["fsync_dir", "json_bytes", "sanitize", "serialize", "snapshot", "write_bytes"]


def fsync_dir(path: Path) -> None:
    """fsync a directory, so a rename inside it is durable (skipped where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def write_bytes(path: Path, data: bytes, sync: bool) -> None:
    """One write of the whole file (the GIL is released while the OS copies it), fsynced when ``sync``."""
    with open(path, "wb") as fh:
        fh.write(data)
        if sync:
            fh.flush()
            os.fsync(fh.fileno())


def serialize(obj: Any) -> bytes:
    """``torch.save`` into memory: one buffer instead of the zip writer's many small file writes."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def json_bytes(data: Any) -> bytes:
    """Strict, compact JSON (the C encoder; an indent would fall back to the pure-Python one); non-finite
    floats become null, and only when there are any is the whole structure copied to replace them."""
    try:
        text = json.dumps(data, allow_nan=False, default=_json_default)
    except ValueError:
        text = json.dumps(sanitize(data), allow_nan=False, default=_json_default)
    return text.encode("utf-8")


def _json_default(value: Any) -> Any:
    if isinstance(value, float):  # pragma: no cover - json handles floats itself
        return value
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def sanitize(obj: Any) -> Any:
    """Non-finite floats -> None, recursively, for strict JSON."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [sanitize(v) for v in obj]
    return obj


def snapshot(obj: Any) -> Any:
    """A deep copy in which every tensor is detached and cloned to CPU (safe to write from another thread)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [snapshot(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(snapshot(v) for v in obj)
    return copy.deepcopy(obj)

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

__all__ = [
    "JSONList",
    "fsync_dir",
    "json_bytes",
    "json_text",
    "sanitize",
    "serialize",
    "snapshot",
    "write_bytes",
]


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


class JSONList(list):
    """A list whose JSON text is known already (``text``): :func:`json_bytes` splices it in, so a history
    that grows by a row per epoch is not encoded again, whole, at every checkpoint."""

    def __init__(self, items: list[Any], text: str) -> None:
        super().__init__(items)
        self.text = text

    @classmethod
    def of(cls, items: list[Any], texts: list[str]) -> JSONList:
        """``items`` with ``texts``, the JSON text of each."""
        return cls(items, "[" + ",".join(texts) + "]")


def json_text(data: Any) -> str:
    """Strict, compact JSON text (the C encoder; an indent would fall back to the pure-Python one); non-finite
    floats become null, and only when there are any is the whole structure copied to replace them."""
    try:
        return json.dumps(data, allow_nan=False, default=_json_default)
    except ValueError:
        return json.dumps(sanitize(data), allow_nan=False, default=_json_default)


def json_bytes(data: Any) -> bytes:
    """:func:`json_text` as UTF-8; the :class:`JSONList` values of a dict are spliced in as they are."""
    known = {}
    if isinstance(data, dict):
        known = {k: v.text for k, v in data.items() if isinstance(v, JSONList)}
    if not known:
        return json_text(data).encode("utf-8")
    text = json_text({k: v for k, v in data.items() if k not in known})
    spliced = ",".join(f"{json.dumps(str(k))}:{v}" for k, v in known.items())
    return (text[:-1] + ("," if text != "{}" else "") + spliced + "}").encode("utf-8")


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


def to_host(t: torch.Tensor, pinned: bool = False) -> torch.Tensor:
    """A detached CPU copy of ``t``. ``pinned`` and ``t`` on CUDA: copied without waiting into pinned memory
    (the caller records an event and synchronizes it before reading the copy, see :func:`ready_event`)."""
    t = t.detach()
    if pinned and t.is_cuda:
        out = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        return out.copy_(t, non_blocking=True)
    return t.to("cpu", copy=True)


def ready_event(device: torch.device) -> Any:
    """A CUDA event recorded now on ``device``'s stream (its ``synchronize()`` waits for the copies queued
    before it), or None off CUDA, where copies are done when they return."""
    if device.type != "cuda":
        return None
    event = torch.cuda.Event()
    event.record()
    return event


def snapshot(obj: Any, pinned: bool = False) -> Any:
    """A deep copy in which every tensor is detached and cloned to CPU (safe to write from another thread);
    ``pinned``: CUDA tensors are copied without waiting (see :func:`to_host`)."""
    if isinstance(obj, torch.Tensor):
        return to_host(obj, pinned)
    if isinstance(obj, dict):
        return {k: snapshot(v, pinned) for k, v in obj.items()}
    if isinstance(obj, list):
        return [snapshot(v, pinned) for v in obj]
    if isinstance(obj, tuple):
        return tuple(snapshot(v, pinned) for v in obj)
    return copy.deepcopy(obj)

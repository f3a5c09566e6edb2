"""Checkpoints: one directory per save, written into a temporary directory and renamed into place, so a kill at
any moment leaves every earlier checkpoint intact; loading never unpickles arbitrary objects.

Layout of ``checkpoints/<name>/``: ``meta.json`` (format and library versions, counters, history, config hash),
``model.pt``, ``optimizer.pt`` and ``state.pt`` (everything else: callback states, RNG states, data position,
epoch accumulators), each written with ``torch.save`` of plain tensors/containers and read back with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import threading
import time
import uuid
import zipfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from epochpilot.errors import CheckpointError
from epochpilot.train.serial import fsync_dir as _fsync_dir
from epochpilot.train.serial import json_bytes as _json_bytes
from epochpilot.train.serial import serialize as _serialize
from epochpilot.train.serial import write_bytes as _write_bytes

__all__ = [
    "FORMAT_VERSION",
    "CheckpointDir",
    "list_checkpoints",
    "load_checkpoint",
    "read_meta",
    "save_checkpoint",
]

log = logging.getLogger("epochpilot")

#: bumped when the checkpoint layout changes.
FORMAT_VERSION = 1
FILES = ("model.pt", "optimizer.pt", "state.pt")
_TMP = ".tmp-"
_OLD = ".old-"


def save_checkpoint(
    root: Path,
    name: str,
    *,
    model: dict | bytes | None,
    optimizer: dict | bytes | None,
    state: dict | bytes | None,
    meta: dict,
    sync: bool = True,
    link_model: Path | None = None,
) -> Path:
    """Write checkpoint ``root/name`` atomically and return its path; an existing one of that name is replaced.

    ``optimizer=None``/``state=None`` leave those files out (a weights-only checkpoint such as ``best``);
    ``link_model`` hard-links an existing ``model.pt`` instead of writing the weights again. A part given as
    bytes is written as it is (the caller ran ``serial.serialize``).
    """
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"{_TMP}{name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        contents = ["model.pt"]
        if link_model is not None:
            try:
                os.link(link_model, tmp / "model.pt")
            except OSError:
                shutil.copyfile(link_model, tmp / "model.pt")
        parts = [("model.pt", model)] if link_model is None else []
        parts += [
            (f, obj)
            for f, obj in (("optimizer.pt", optimizer), ("state.pt", state))
            if obj is not None
        ]
        contents += [f for f, _ in parts if f != "model.pt"]
        for fname, obj in parts:  # bytes: serialized by the caller already
            _write_bytes(tmp / fname, obj if isinstance(obj, bytes) else _serialize(obj), sync)
        meta = dict(meta, format_version=FORMAT_VERSION, name=name, contents=contents)
        _write_bytes(tmp / "meta.json", _json_bytes(meta), sync)
        if sync:
            _fsync_dir(tmp)
        final = root / name
        if final.exists():
            old = root / f"{_OLD}{name}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)  # a kill here is repaired by recover(): old comes back
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        if sync:
            _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def recover(root: Path) -> None:
    """Undo what a kill during a save left: restore a displaced ``.old-NAME`` and delete temporary dirs."""
    if not root.is_dir():
        return
    for path in root.iterdir():
        if path.name.startswith(_OLD):
            final = root / path.name[len(_OLD) :]
            if final.exists():
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.replace(path, final)
        elif path.name.startswith(_TMP):
            shutil.rmtree(path, ignore_errors=True)


def read_meta(path: Path) -> dict[str, Any]:
    """Read and check ``meta.json`` of checkpoint ``path``; problems raise CheckpointError naming the file."""
    file = Path(path) / "meta.json"
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(
            f"{file} is missing: {path} is not an epochpilot checkpoint"
        ) from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"{file} is unreadable or truncated ({exc}); delete that checkpoint"
        ) from None
    if not isinstance(meta, dict) or "format_version" not in meta:
        raise CheckpointError(f"{file} is not epochpilot checkpoint metadata (no format_version)")
    if meta["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{file} has format {meta['format_version']}, newer than this epochpilot reads ({FORMAT_VERSION}): upgrade"
        )
    return meta


def _load(file: Path, map_location: Any) -> Any:
    if not file.is_file():
        raise CheckpointError(f"{file} is missing: the checkpoint is incomplete")
    with open(file, "rb") as fh:
        magic = fh.read(4)
    if magic != b"PK\x03\x04":
        raise CheckpointError(
            f"{file} is truncated or not a torch checkpoint (not a torch zip archive); delete that checkpoint"
        )
    try:
        return torch.load(file, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if "unsupported" in ln.lower()]
        first = lines[0] if lines else "objects outside the weights-only allow-list"
        raise CheckpointError(
            f"{file} was refused: it holds objects other than tensors and plain containers, which could run code "
            f"when loaded ({first}); only load checkpoints you trust, and never with weights_only=False"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{file} is truncated or not a torch checkpoint ({first}); delete that checkpoint"
        ) from None


def load_checkpoint(path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint directory: ``{"meta", "model", "optimizer", "state"}`` (tensors only, safe)."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a checkpoint directory")
    if map_location == "cpu":
        handed = _take_handoff(path)
        if handed is not None:
            return handed
    meta = read_meta(path)
    out: dict[str, Any] = {"meta": meta, "path": path, "optimizer": None, "state": None}
    contents = meta.get("contents", FILES)
    if (
        not isinstance(contents, list)
        or not set(contents) <= set(FILES)
        or "model.pt" not in contents
    ):
        raise CheckpointError(f"{path / 'meta.json'} lists unexpected contents {contents!r}")
    for fname in contents:
        out[fname[:-3]] = _load(path / fname, map_location)
    return out


#: The checkpoint that ``latest_checkpoint()`` verified by loading it, kept for the one ``load_checkpoint``
#: that follows (the resume), so a resume reads each file once; dropped if any file changed in between.
_handoff: dict[Path, tuple[Any, dict[str, Any]]] = {}
_handoff_lock = threading.Lock()


def _stamp(path: Path) -> Any:
    try:
        return sorted(
            (f.name, st.st_size, st.st_mtime_ns, st.st_ino)
            for f in path.iterdir()
            for st in [f.stat()]
        )
    except OSError:
        return None


def _give_handoff(path: Path, parts: dict[str, Any]) -> None:
    with _handoff_lock:
        _handoff.clear()
        _handoff[Path(path)] = (_stamp(Path(path)), parts)


def _take_handoff(path: Path) -> dict[str, Any] | None:
    with _handoff_lock:
        entry = _handoff.pop(Path(path), None)
    if entry is None or entry[0] is None or entry[0] != _stamp(Path(path)):
        return None
    return entry[1]


class CheckpointDir:
    """The ``checkpoints/`` folder of a run: ordered listing, rotation (``keep_last`` newest plus ``best``).

    With ``background=True`` saves are written by one worker thread, in order, so training does not wait on
    serialisation and disk; the caller hands over CPU snapshots (see ``serial.snapshot``). One checkpoint is in
    flight at most (``MAX_PENDING``): a save that arrives while the previous one is still being written waits
    for it, so memory holds at most the snapshot being written and the one just taken, and the run is never
    more than one checkpoint ahead of the disk. A kill before a write completes leaves the earlier checkpoints
    valid, so resume stays exact (the SIGKILL matrix kills training while a write is in flight). ``wait()``
    blocks until all are written and re-raises a failed write. ``sync=True`` fsyncs every file and directory
    before the rename, so a checkpoint also survives a power loss, not only a killed process.
    """

    #: saves queued or being written at once; a further ``save`` blocks until the oldest is on disk
    MAX_PENDING = 1

    def __init__(
        self, root: Path, keep_last: int, background: bool = False, sync: bool = False
    ) -> None:
        self.root = Path(root)
        self.keep_last = keep_last
        self.sync = sync
        self._pool = (
            ThreadPoolExecutor(1, thread_name_prefix="epochpilot-ckpt") if background else None
        )
        self._pending: list[Future] = []
        self._known: list[str] | None = None
        #: (checkpoint name, meta) whose weights are the best so far, not yet copied to ``best/``
        self._holder: tuple[str, dict[str, Any]] | None = None
        #: seconds spent writing, per save (for the overhead benchmark)
        self.timings: list[float] = []

    def _save_now(
        self,
        name: str,
        after: Callable[[], None] | None,
        parts: dict[str, Any],
        holds_best: bool = False,
        ready: Any = None,
    ) -> Path:
        t0 = time.perf_counter()
        if ready is not None:
            ready.synchronize()  # the snapshot's device-to-host copies (non-blocking, pinned) have landed
        if self._holder is not None and self._holder[0] == name:
            self._release_best()  # about to replace the checkpoint that holds the best weights
        path = save_checkpoint(self.root, name, sync=self.sync, **parts)
        if name == "best":
            self._holder = None  # best/ is newer than any held checkpoint
        else:
            if holds_best:
                self._holder = (name, parts["meta"])
            if self._known is None:  # list once; afterwards this process knows what it wrote
                good, bad = scan_checkpoints(self.root)  # damaged ones (unknown position) go first
                self._known = [p.name for p in [*(b for b, _ in bad), *good] if p.name != name]
            if name in self._known:
                self._known.remove(name)
            self._known.append(name)
            while len(self._known) > self.keep_last:
                old = self._known.pop(0)
                if self._holder is not None and self._holder[0] == old:
                    self._release_best()
                shutil.rmtree(self.root / old, ignore_errors=True)
        if after is not None:
            after()
        self.timings.append(time.perf_counter() - t0)
        return path

    def _release_best(self) -> None:
        """Write ``best/`` as a hard link to the held checkpoint's weights, before that checkpoint goes."""
        name, meta = self._holder  # type: ignore[misc]
        self._holder = None
        save_checkpoint(
            self.root,
            "best",
            model=None,
            optimizer=None,
            state=None,
            meta=meta,
            sync=self.sync,
            link_model=self.root / name / "model.pt",
        )

    def save(
        self,
        name: str,
        after: Callable[[], None] | None = None,
        holds_best: bool = False,
        ready: Any = None,
        **parts: Any,
    ) -> None:
        """Save one checkpoint (then run ``after``), and delete the oldest beyond ``keep_last`` (never ``best``).

        ``holds_best=True``: this checkpoint's weights are the best so far. ``best/`` is then written lazily,
        as a hard link, only when this checkpoint is about to be rotated out or replaced, or at ``close()``:
        one directory write instead of one per improving epoch. Until then the best weights live in this
        checkpoint (resume looks there first). ``ready``: an event with ``synchronize()`` (a
        ``torch.cuda.Event`` recorded after non-blocking copies into pinned memory) that the writer waits on
        before reading ``parts``, so the training thread never waits for the copies.
        """
        if self._pool is None:
            self._save_now(name, after, parts, holds_best, ready)
            return
        self._pending = [f for f in self._pending if not f.done() or f.exception() is not None]
        for f in self._pending:
            if f.done():
                f.result()  # re-raise an earlier failure
        while len(self._pending) >= self.MAX_PENDING:
            self._pending.pop(0).result()  # back-pressure: the disk is behind
        self._pending.append(
            self._pool.submit(self._save_now, name, after, parts, holds_best, ready)
        )

    def wait(self) -> None:
        """Block until every queued save is on disk; re-raise the first failure."""
        pending, self._pending = self._pending, []
        for f in pending:
            f.result()

    def close(self) -> None:
        """Wait for the queued saves, bring ``best/`` up to date and stop the worker."""
        try:
            self.wait()
            if self._holder is not None:
                self._release_best()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None


def _position(path: Path) -> tuple[int, int]:
    meta = read_meta(path)
    counters = meta.get("counters", {})
    return (int(counters.get("epochs_done", 0)), int(counters.get("batch", 0)))


def scan_checkpoints(root: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """``(readable, damaged)``: the checkpoints under ``root`` (not ``best``, not temporaries) whose meta gives
    their training position, oldest first, and those whose meta cannot be read, each with why."""
    root = Path(root)
    if not root.is_dir():
        return [], []
    recover(root)
    found = [
        p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "best"
    ]
    good: list[tuple[tuple[int, int], Path]] = []
    bad: list[tuple[Path, str]] = []
    for p in sorted(found):
        try:
            good.append((_position(p), p))
        except CheckpointError as exc:
            bad.append((p, str(exc)))
        except (TypeError, ValueError, AttributeError):
            bad.append((p, f"{p / 'meta.json'} has no valid training position (counters)"))
    return [p for _, p in sorted(good, key=lambda x: (x[0], x[1].name))], bad


def list_checkpoints(root: Path) -> list[Path]:
    """Checkpoints under ``root`` except ``best``, temporaries and those whose meta cannot be read (see
    :func:`scan_checkpoints`), oldest training position first."""
    return scan_checkpoints(root)[0]

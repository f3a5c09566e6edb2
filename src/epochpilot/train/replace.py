"""Replacing a run directory without ever losing it (``--overwrite``, ``overwrite=True``).

The old run is moved aside in one rename, to the hidden sibling ``.<name>.epochpilot-old-<pid>``; the new run is
written in its place. The old copy is deleted only once the new run is durable (its first complete checkpoint,
or the command finished); on any failure before that (an exception, Ctrl-C, SIGTERM) the new files go and the
old run comes back. Files in the old folder that epochpilot did not write are moved into the new run, never
deleted. A copy left aside by a killed process is found by :func:`recover` on the next command for that folder:
restored when the new run never became durable, else removed, with a warning either way.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import re
import shutil
import threading
from pathlib import Path

from epochpilot.errors import ConfigError

__all__ = ["OWN", "Replacement", "durable", "is_own", "pending", "recover", "settle"]

log = logging.getLogger("epochpilot")

ASIDE = ".epochpilot-old-"
DISCARD = ".epochpilot-new-"
#: What epochpilot writes at the top of a run directory (names or patterns); anything else is the user's.
OWN = (
    ".epochpilot",
    "config.toml",
    "job.toml",
    "history.jsonl",
    "history.csv",
    "checks.jsonl",
    "summary.json",
    "checkpoints",
    "tb",
    "plots",
    "report.html",
    "model.json",
    "model.pt",
    "preprocessor.json",
    "finetune.json",
    "selection.json",
    "best.json",
    "study.db",
    "study.db-*",
    "trials",
    "refit",
    "fold-*",
    ".*.tmp",
    ".epochpilot-*",
)
_LOCK = threading.RLock()
_PENDING: dict[Path, Replacement] = {}


def is_own(name: str) -> bool:
    """True for a name epochpilot writes at the top of a run directory (see :data:`OWN`)."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in OWN)


def _key(path: str | Path) -> Path:
    return Path(os.path.abspath(path))


def durable(run_dir: str | Path) -> bool:
    """True once the run in ``run_dir`` holds a complete checkpoint: its own, or one of a fold, trial or
    refit below it (a checkpoint directory appears, complete, in one rename)."""
    root = Path(run_dir)
    for pattern in (
        "checkpoints/*/meta.json",
        "*/checkpoints/*/meta.json",
        "*/*/checkpoints/*/meta.json",
    ):
        for found in root.glob(pattern):
            if not any(part.startswith(".") for part in found.relative_to(root).parts):
                return True
    return False


class Replacement:
    """An old run moved aside while a new one is written in its place; :meth:`settle` ends it."""

    def __init__(self, run_dir: Path, aside: Path) -> None:
        self.run_dir, self.aside = run_dir, aside
        self.done = False

    @classmethod
    def begin(cls, run_dir: str | Path, field: str) -> Replacement:
        """Move the run in ``run_dir`` aside and create an empty ``run_dir``; registered until settled."""
        path = _key(run_dir)
        with _LOCK:
            if path in _PENDING:
                return _PENDING[path]
        here = _key(Path.cwd())
        if path == here or path in here.parents:
            raise ConfigError(
                f"{field} {str(run_dir)!r} is the working folder (or holds it), which cannot be replaced: "
                f"run the command from another folder or choose another {field}"
            )
        recover(path, field)
        aside = path.parent / f".{path.name}{ASIDE}{os.getpid()}"
        if aside.exists():
            raise ConfigError(
                f"{field} {str(run_dir)!r}: an earlier copy of it is still kept in {str(aside)!r}: "
                f"move it back or delete it yourself, then run the command again"
            )
        try:
            os.rename(path, aside)
        except OSError as exc:
            raise ConfigError(
                f"{field} {str(run_dir)!r}: cannot move the previous run aside to replace it "
                f"({exc.strerror or exc}): make {str(path.parent)!r} writable, or remove the old run yourself"
            ) from None
        try:
            path.mkdir()
        except BaseException:
            os.rename(aside, path)
            raise
        log.debug("moved the previous run of %s aside to %s", path, aside)
        self = cls(path, aside)
        with _LOCK:
            _PENDING[path] = self
        return self

    def settle(self, ok: bool) -> None:
        """Keep the new run when ``ok`` or when it is durable (the old copy goes), else bring the old one back."""
        if ok or durable(self.run_dir):
            self.commit()
        else:
            self.rollback()

    def _end(self) -> bool:
        with _LOCK:
            if self.done:
                return False
            self.done = True
            if _PENDING.get(self.run_dir) is self:
                del _PENDING[self.run_dir]
            return True

    def commit(self) -> None:
        """Delete the old copy, after moving the files epochpilot did not write into the new run."""
        if not self._end():
            return
        _keep_foreign(self.aside, self.run_dir)
        shutil.rmtree(self.aside, ignore_errors=True)
        log.debug("removed the previous run of %s (replaced)", self.run_dir)

    def rollback(self) -> None:
        """Remove the new run and put the old one back in its place."""
        if not self._end():
            return
        if _restore(self.aside, self.run_dir):
            log.info(
                "the new run stopped before its first checkpoint: %s holds the previous run again",
                self.run_dir,
            )


def _keep_foreign(aside: Path, run_dir: Path) -> None:
    """Move what the user put in the old run (names epochpilot does not write) into the new one."""
    with contextlib.suppress(OSError):
        for entry in aside.iterdir():
            target = run_dir / entry.name
            if not is_own(entry.name) and not target.exists():
                with contextlib.suppress(OSError):
                    os.rename(entry, target)


def _restore(aside: Path, run_dir: Path) -> bool:
    """``run_dir`` (whatever is there) goes to a discard folder, ``aside`` comes back; False if it could not."""
    discard = run_dir.parent / f".{run_dir.name}{DISCARD}{os.getpid()}"
    try:
        if discard.exists():
            shutil.rmtree(discard)
        if run_dir.exists():
            os.rename(run_dir, discard)
        os.rename(aside, run_dir)
    except OSError as exc:
        log.warning(
            "could not put the previous run back in %s (%s): it is kept in %s; move it back yourself",
            run_dir,
            exc.strerror or exc,
            aside,
        )
        return False
    shutil.rmtree(discard, ignore_errors=True)
    return True


def pending(run_dir: str | Path) -> Replacement | None:
    """The unsettled replacement of exactly ``run_dir`` begun in this process, if any."""
    with _LOCK:
        return _PENDING.get(_key(run_dir))


def settle(run_dir: str | Path, ok: bool, *, covering: bool = False) -> None:
    """Settle the replacement of ``run_dir`` (see :meth:`Replacement.settle`). ``covering=True`` (with
    ``ok``) also commits those of the folders above it: a fold or trial that finished makes its cv or tune
    run durable."""
    path = _key(run_dir)
    with _LOCK:
        found = [
            r for p, r in _PENDING.items() if p == path or (covering and ok and p in path.parents)
        ]
    for replacement in found:
        replacement.settle(ok)


def _alive(pid: int) -> bool:
    """True when process ``pid`` runs and looks like Python (a reused pid of another program does not count)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        return b"python" in cmdline.read_bytes() or b"epochpilot" in cmdline.read_bytes()
    except OSError:
        return True


def recover(run_dir: str | Path, field: str = "run_dir") -> None:
    """Settle what a killed command left beside ``run_dir``: an old run aside comes back when the new run never
    wrote a checkpoint, and is removed (files epochpilot did not write are kept) when it did; a warning says
    which. A copy held by a running process is a ConfigError naming it."""
    path = _key(run_dir)
    parent = path.parent
    if not parent.is_dir():
        return
    pattern = re.compile(
        re.escape(f".{path.name}") + f"({re.escape(ASIDE)}|{re.escape(DISCARD)})" + r"(\d+)$"
    )
    found = []
    with contextlib.suppress(OSError):
        for entry in parent.iterdir():
            match = pattern.match(entry.name)
            if match:
                found.append((match.group(1) == DISCARD, int(match.group(2)), entry))
    with _LOCK:
        mine = path in _PENDING
    for is_discard, pid, entry in sorted(found):  # the old runs first, the discarded new ones after
        if (mine and pid == os.getpid()) or not entry.exists():
            continue
        if _alive(pid):
            raise ConfigError(
                f"{field} {str(run_dir)!r} is being replaced by process {pid} (its previous run is kept in "
                f"{str(entry)!r}): wait for that command, or if it no longer runs, move that folder back yourself"
            )
        if is_discard:
            shutil.rmtree(entry, ignore_errors=True)
        elif path.exists() and durable(path):
            Replacement(path, entry).commit()
            log.warning(
                "removed %s, the previous run of %s: the command that replaced it (process %d) stopped after "
                "the new run's first checkpoint",
                entry,
                path,
                pid,
            )
        elif _restore(entry, path):
            log.warning(
                "restored the previous run of %s from %s: the command that was replacing it (process %d) "
                "stopped before the new run's first checkpoint",
                path,
                entry,
                pid,
            )

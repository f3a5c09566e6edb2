"""Ctrl-C (SIGINT) and SIGTERM during ``fit``: finish the current update, write a final checkpoint, stop.

While ``fit`` runs in the main thread of a single process, both signals only set a flag; the loop answers it
at the next optimizer-update boundary (or epoch boundary) by saving a checkpoint there, so that resuming
continues exactly as if nothing had happened, and ``fit`` then logs one line that says how to resume and
raises: for SIGINT a plain ``KeyboardInterrupt`` (so an uncaught one ends a script as Ctrl-C always does,
exit status 130), for SIGTERM :class:`TrainingTerminated`, a ``SystemExit`` with code 143 (an uncaught one
ends the process with 143, without a traceback). Both carry ``checkpoint`` (the checkpoint to resume from,
None without a ``run_dir``), ``run_dir`` and ``exit_code`` (130 / 143). A second signal stops at once,
without waiting for the checkpoint. The previous handlers come back when ``fit`` returns. Under DDP
(torchrun) the handlers are not installed.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = [
    "Interruptible",
    "StopSignals",
    "TrainingTerminated",
    "active",
    "exit_code",
    "interruption",
]

_NAMES = {signal.SIGINT: "SIGINT (Ctrl-C)", signal.SIGTERM: "SIGTERM"}
_LOCAL = threading.local()


class TrainingTerminated(SystemExit):
    """Training stopped by SIGTERM after a final checkpoint: a ``SystemExit`` with code 143, so an uncaught
    one ends the process as a terminated process would; ``checkpoint`` is the checkpoint to resume from
    (None without a ``run_dir``), ``run_dir`` the run."""

    exit_code = 143

    def __init__(
        self, message: str = "", checkpoint: Path | None = None, run_dir: Path | None = None
    ) -> None:
        super().__init__(143)
        self.message, self.checkpoint, self.run_dir = message, checkpoint, run_dir

    def __str__(self) -> str:
        return self.message


def interruption(
    signum: int,
    *,
    run_dir: Path | None,
    checkpoint: Path | None,
    where: str,
    at_once: bool = False,
) -> BaseException:
    """The exception (with its one-line message) for a fit stopped by ``signum`` at ``where``: a
    ``KeyboardInterrupt`` for SIGINT, a :class:`TrainingTerminated` for SIGTERM."""
    name = _NAMES.get(signum, f"signal {signum}")
    if run_dir is None:
        text = (
            f"training stopped by {name} {where}: there is no run_dir, so nothing was saved to resume from "
            f"(give run_dir= to make runs resumable); the model holds the best weights so far"
        )
    else:
        if at_once:
            saved = f"stopped at once by a second signal; the last checkpoint in {run_dir}/checkpoints is kept"
        else:
            saved = f"checkpoint {checkpoint} saved"
        how = (
            f"epochpilot resume {run_dir}"
            if (Path(run_dir) / "job.toml").is_file()
            else f"fit(..., run_dir={str(run_dir)!r}, resume=True)"
        )
        text = f"training stopped by {name} {where}: {saved}; resume with: {how}"
    if signum == signal.SIGTERM:
        return TrainingTerminated(text, checkpoint, run_dir)
    exc = KeyboardInterrupt(text)  # the exact type: Python's own Ctrl-C exit status when uncaught
    exc.message, exc.checkpoint, exc.run_dir, exc.exit_code = text, checkpoint, run_dir, 130  # type: ignore[attr-defined]
    return exc


def exit_code(exc: BaseException) -> int | None:
    """130 / 143 for an exception raised by a fit that a signal stopped, None for any other."""
    code = getattr(exc, "exit_code", None)
    return code if isinstance(exc, (KeyboardInterrupt, TrainingTerminated)) else None


class StopSignals:
    """A context that turns SIGINT/SIGTERM into a stop request (``signum`` becomes non-zero).

    ``run_dir`` and ``where()`` only shape the message of the immediate stop on a second signal. Installs
    nothing outside the main thread, when ``enabled`` is False, or over a handler set outside Python.
    """

    def __init__(self, run_dir: Path | None = None, enabled: bool = True) -> None:
        self.signum = 0
        self.run_dir = run_dir
        self.enabled = enabled
        self.where: Any = lambda: ""
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.signum:  # a second signal: stop now
            raise interruption(
                signum, run_dir=self.run_dir, checkpoint=None, where=self.where(), at_once=True
            )
        self.signum = signum

    def __enter__(self) -> StopSignals:
        self._outer = getattr(_LOCAL, "current", None)
        _LOCAL.current = self
        if not self.enabled or threading.current_thread() is not threading.main_thread():
            return self
        for signum in (signal.SIGINT, signal.SIGTERM):
            old = signal.getsignal(signum)
            if old is None:  # set from C: it could not be put back
                continue
            try:
                signal.signal(signum, self._handler)
            except (ValueError, OSError):  # pragma: no cover - embedded interpreters
                continue
            self._old[signum] = old
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, old in self._old.items():
            signal.signal(signum, old)
        self._old = {}
        _LOCAL.current = self._outer


def active() -> StopSignals:
    """The :class:`StopSignals` of the fit running in this thread (one that never fires outside a fit)."""
    current = getattr(_LOCAL, "current", None)
    return current if current is not None else StopSignals(enabled=False)


class Interruptible:
    """How the loop answers a stop signal (mixed into ``Loop``; the attributes come from it)."""

    def _position(self) -> str:
        st = self.state  # type: ignore[attr-defined]
        if st.batch:
            return f"in epoch {st.epoch} after update {st.step}"
        return f"after epoch {st.epochs_done} (update {st.step})"

    def _interrupt(self, mid_epoch: bool) -> None:
        """Answer SIGINT/SIGTERM at an update boundary: checkpoint here (unless one was just asked for at this
        very point), then raise the interruption; resuming from that checkpoint is exact."""
        loop: Any = self
        st = loop.state
        checkpoint = run_dir = None
        if loop.ckpts is not None:
            if loop._saved_at != (st.step, st.batch):
                loop.save(mid_epoch=mid_epoch)
            name = f"step-{st.step:07d}" if mid_epoch else f"epoch-{st.epochs_done:04d}"
            checkpoint, run_dir = loop.ckpts.root / name, loop.ckpts.root.parent
        raise interruption(
            loop.signals.signum, run_dir=run_dir, checkpoint=checkpoint, where=self._position()
        )

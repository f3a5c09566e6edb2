"""What ``fit`` guarantees around its run directory, whatever ends it.

- SIGINT/SIGTERM become a final checkpoint and one line on how to resume (see :mod:`epochpilot.train.signals`).
- A run replaced with ``overwrite=True`` (by ``fit`` or by the command that calls it) is kept aside until the new
  run is durable: the old copy goes after the first checkpoint or a finished fit, and comes back on a failure
  before that (see :mod:`epochpilot.train.replace`).
- A full disk, a quota or a folder turned read-only while writing the run is one :class:`ConfigError` line
  naming ``run_dir`` and the fix, not a traceback; every file already there stays whole (they are all written
  to a temporary name and renamed).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from epochpilot._files import path_error
from epochpilot.train.replace import settle
from epochpilot.train.signals import StopSignals, TrainingTerminated, exit_code
from epochpilot.train.wording import words

__all__ = ["disk_error", "fit_guard"]

log = logging.getLogger("epochpilot")

#: errors of the disk itself, whatever file was written (a write() on a full disk names no file)
_DISK = (errno.ENOSPC, errno.EDQUOT)
#: errors of the run directory's folder, when the failing file is in it
_FOLDER = (errno.EROFS, errno.EACCES, errno.EPERM)


def disk_error(exc: OSError, run_dir: str | Path, field: str | None = None) -> Exception | None:
    """The one-line error for an ``OSError`` raised while writing ``run_dir`` (None: not a write problem);
    ``field`` names the folder's argument (default: as the caller can type it, see ``train.wording``)."""
    field = field or words().field
    name = exc.filename if isinstance(exc.filename, (str, bytes, os.PathLike)) else None
    inside = False
    if name is not None:
        with contextlib.suppress(ValueError, TypeError, OSError):
            root = Path(os.path.abspath(run_dir))
            inside = root in Path(os.path.abspath(os.fsdecode(name))).parents
    if exc.errno in _DISK or (exc.errno in _FOLDER and inside):
        return path_error(exc, run_dir, field)
    return None


@contextlib.contextmanager
def fit_guard(run_dir: str | Path | None, distributed: bool = False) -> Iterator[StopSignals]:
    """Run a fit under the guarantees above; yields the :class:`StopSignals` the loop answers."""
    signals = StopSignals(Path(run_dir) if run_dir is not None else None, enabled=not distributed)
    try:
        with signals:
            yield signals
    except (KeyboardInterrupt, TrainingTerminated) as exc:
        if run_dir is not None:
            settle(run_dir, ok=False)
        if exit_code(exc) is not None:  # stopped by a signal: the one line on how to resume
            log.warning("%s", exc)
        raise
    except OSError as exc:
        if run_dir is None:
            raise
        settle(run_dir, ok=False)
        error = disk_error(exc, run_dir)
        if error is None:
            raise
        raise error from None
    except BaseException:
        if run_dir is not None:
            settle(run_dir, ok=False)
        raise
    if run_dir is not None:
        settle(run_dir, ok=True, covering=True)

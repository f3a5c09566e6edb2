"""Writing the kept model in the framework's own format into the run directory: through a temporary file or
folder beside the target, then a rename, so a kill or a full disk leaves the old model whole.

Pure: standard library only (the framework's writer is passed in).
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["check_save_model", "replace", "save_atomically", "temporary"]


def check_save_model(save_model: Any, run_dir: Path | None) -> bool:
    """``save_model`` resolved: None means "when there is a run_dir"; True without a run_dir raises."""
    if save_model is None:
        return run_dir is not None
    if not isinstance(save_model, bool):
        raise TypeError(
            f"save_model must be True, False or None (when run_dir is given), got {save_model!r}"
        )
    if save_model and run_dir is None:
        raise ValueError(
            "save_model=True needs run_dir: the kept model is written into the run directory"
        )
    return save_model


def temporary(final: Path) -> Path:
    """The temporary name beside ``final`` (same suffix, which some writers check: ``.keras``)."""
    return final.with_name(f".{final.stem}.tmp-{os.getpid()}{final.suffix}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def replace(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` over ``final``; a folder already at ``final`` is moved aside first, then removed."""
    if final.is_dir() and not final.is_symlink():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        _remove(old)
        final.rename(old)
        try:
            tmp.rename(final)
        except OSError:
            old.rename(final)  # put the old model back
            raise
        _remove(old)
    else:
        os.replace(tmp, final)


def save_atomically(final: Path, write: Callable[[Path], None], framework: str) -> Path | None:
    """``write(tmp)`` then rename over ``final``; returns ``final``, or None after a warning if writing
    failed (the kept model is still in memory: a failed save must not lose the run's other records)."""
    tmp = temporary(final)
    try:
        write(tmp)
        replace(tmp, final)
    except Exception as exc:  # noqa: BLE001 - any writer error becomes one warning line
        _remove(tmp)
        warnings.warn(
            f"epochpilot ({framework}): the kept model was not saved to {final} "
            f"({type(exc).__name__}: {exc}); it is still in memory. Pass save_model=False to skip saving.",
            UserWarning,
            stacklevel=3,
        )
        return None
    return final

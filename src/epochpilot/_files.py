"""Writing output files so that a kill or a full disk never leaves a damaged file: write a temporary file in
the same folder, then rename it over the target (atomic on POSIX); the old file stays whole until then.

Also turns the ``OSError`` of an unusable output path into one :class:`ConfigError` line that names the
flag or setting the user wrote (``--out``, ``run_dir``), the path and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from epochpilot.errors import ConfigError

__all__ = [
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_path",
    "path_error",
]


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Read once at import (os.umask sets while it reads, so it is not called again from threads).
_UMASK = _read_umask()

_FIXES = {
    errno.ENOENT: "create the folder first or choose an existing one",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EACCES: "choose a folder you can write to",
    errno.EPERM: "choose a folder you can write to",
    errno.EROFS: "the file system is read-only: choose a folder on a writable one",
    errno.ENAMETOOLONG: "use a shorter file name",
    errno.ENOSPC: "free some disk space or choose another disk",
    errno.EDQUOT: "free some disk space or choose another disk",
    errno.EISDIR: "it is a folder: give a file name",
}


def path_error(exc: OSError, path: str | Path, field: str) -> ConfigError:
    """One line for an unusable output path: which field, which path, what went wrong, what to do."""
    reason = exc.strerror or type(exc).__name__
    fix = _FIXES.get(exc.errno or -1, "choose another path")
    return ConfigError(f"{field} {_short(str(path))!r}: cannot write there ({reason}): {fix}")


def _short(text: str, keep: int = 60) -> str:
    """A path cut in the middle when it is longer than a line can hold."""
    return text if len(text) <= 2 * keep + 3 else f"{text[:keep]}...{text[-keep:]}"


def check_output_path(path: str | Path, field: str) -> Path:
    """Check, before any work is done, that a file can be created at ``path`` (its folder exists and is
    writable, the name is not too long); nothing is left behind. Returns the path."""
    path = Path(path)
    try:
        is_dir, folder_exists = path.is_dir(), path.parent.exists()
    except OSError as exc:  # e.g. ENAMETOOLONG from stat itself
        raise path_error(exc, path, field) from None
    if is_dir:
        raise path_error(OSError(errno.EISDIR, "Is a directory"), path, field)
    folder = path.parent
    if not folder_exists:
        raise path_error(OSError(errno.ENOENT, "the folder does not exist"), path, field)
    if not folder.is_dir():
        raise path_error(OSError(errno.ENOTDIR, "Not a directory"), path, field)
    try:
        max_name = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # pragma: no cover - platforms without pathconf
        max_name = 255
    if len(os.fsencode(path.name)) > max_name:
        raise path_error(OSError(errno.ENAMETOOLONG, "File name too long"), path, field)
    try:
        fd, probe = tempfile.mkstemp(prefix=".epochpilot-probe-", dir=folder)
    except OSError as exc:
        raise path_error(exc, path, field) from None
    os.close(fd)
    os.unlink(probe)
    return path


@contextlib.contextmanager
def atomic_open(
    path: str | Path,
    mode: str = "w",
    *,
    field: str | None = None,
    sync: bool = False,
    **kwargs: Any,
) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on a clean exit it replaces ``path`` in one rename, on any
    error it is removed and ``path`` is left as it was. With ``field``, an ``OSError`` becomes a
    :class:`ConfigError` naming it."""
    path = Path(path)
    if "w" not in mode:
        raise ValueError(f"atomic_open writes whole files: mode must contain 'w', got {mode!r}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:200]}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        if field is None:
            raise
        raise path_error(exc, path, field) from None
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        with contextlib.suppress(
            OSError
        ):  # keep the old file's permissions, or the umask's default
            os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if field is not None and isinstance(exc, OSError):
            raise path_error(exc, path, field) from None
        raise


def atomic_write_bytes(path: str | Path, data: bytes, *, field: str | None = None) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`); returns the path."""
    with atomic_open(path, "wb", field=field) as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(
    path: str | Path, text: str, *, field: str | None = None, encoding: str = "utf-8"
) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open`); returns the path."""
    with atomic_open(path, "w", field=field, encoding=encoding) as fh:
        fh.write(text)
    return Path(path)


def read_json_file(path: str | Path, error: type[Exception], fix: str) -> Any:
    """The JSON in ``path``; unreadable, non-UTF-8 or invalid JSON is one ``error`` line naming the file,
    what is wrong and ``fix``."""
    import json

    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise error(f"{path} is not UTF-8 JSON text: {fix}") from None
    except json.JSONDecodeError as exc:
        raise error(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}): {fix}"
        ) from None
    except OSError as exc:
        raise error(f"{path} cannot be read ({exc.strerror or exc}): {fix}") from None


def read_toml_file(path: str | Path, error: type[Exception], fix: str) -> dict[str, Any]:
    """The TOML tables in ``path``; unreadable, non-UTF-8 or invalid TOML is one ``error`` line naming the
    file, what is wrong and ``fix``."""
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise error(f"{path} is not UTF-8 TOML text: {fix}") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path} is not valid TOML ({exc}): {fix}") from None
    except OSError as exc:
        raise error(f"{path} cannot be read ({exc.strerror or exc}): {fix}") from None

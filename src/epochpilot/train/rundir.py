"""The run directory: what counts as one, refuse to damage an existing run (or a folder of other files),
decide what to resume from, replace a run safely, save ``config.toml``.

A folder is an epochpilot run directory when it holds the marker file ``.epochpilot`` (written when a command
or ``fit`` first claims the folder) or, for runs written before the marker existed, a file only epochpilot
writes (``config.toml`` with a ``[run] config_hash``, ``summary.json`` or ``history.jsonl`` written by
epochpilot, a checkpoint, a tune study or a cv selection). A ``job.toml`` alone does not count: it is also
the name of the user's own job files. Refusals name the way out as the user can type it where they read it
(see :mod:`epochpilot.train.wording`). :func:`check_run_dir` is the one test
every command and ``fit`` apply before writing.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import tomllib

from epochpilot._files import atomic_open, atomic_write_text, path_error
from epochpilot.errors import ConfigError, short_list
from epochpilot.train.checkpoint_check import latest_checkpoint
from epochpilot.train.config import TrainConfig, to_toml
from epochpilot.train.confighash import config_format, saved_differences
from epochpilot.train.guard import disk_error
from epochpilot.train.replace import Replacement, recover, settle
from epochpilot.train.wording import words

__all__ = [
    "MARKER",
    "check_for_command",
    "check_run_dir",
    "check_space",
    "claim_run_dir",
    "claimed_run_dir",
    "is_run_dir",
    "mark_run_dir",
    "prepare_run_dir",
    "saved_config",
    "write_config",
]

log = logging.getLogger("epochpilot")
OURS = ("config.toml", "history.jsonl", "history.csv", "summary.json", "checkpoints", "tb")
#: The marker file that makes a folder an epochpilot run directory.
MARKER = ".epochpilot"
#: Files the operating system or a file manager leaves in any folder: they never make one "not empty".
LITTER = frozenset({".DS_Store", "Thumbs.db", "desktop.ini", ".directory"})


def _toml(path: Path) -> dict[str, Any] | None:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None


def _json_first(path: Path) -> Any:
    """The JSON value of ``path`` (its first line for a ``.jsonl``), None when unreadable."""
    try:
        if not path.is_file():
            return None
        with open(path, encoding="utf-8") as fh:
            text = fh.readline() if path.suffix == ".jsonl" else fh.read(1_000_000)
        return json.loads(text)
    except (OSError, ValueError):
        return None


def _written_by_us(path: Path) -> bool:
    """A run written before the marker existed: a file whose name and content only epochpilot writes (not
    ``job.toml``: a user's job file has the same name and tables)."""
    config = _toml(path / "config.toml")
    if isinstance(config, dict) and "config_hash" in config.get("run", {}):
        return True
    summary = _json_first(path / "summary.json")
    if isinstance(summary, dict) and ({"epochpilot_version", "stop_reason"} & set(summary)):
        return True
    row = _json_first(path / "history.jsonl")
    if isinstance(row, dict) and "epoch" in row:
        return True
    selection = _json_first(path / "selection.json")
    if isinstance(selection, dict) and "per_fold_best" in selection:
        return True
    if (path / "study.db").is_file() and (path / "trials").is_dir():
        return True
    if (path / "fold-1").is_dir() and _written_by_us(path / "fold-1"):  # a cross-validation
        return True
    ckpts = path / "checkpoints"
    return ckpts.is_dir() and any(
        (p / "meta.json").is_file() for p in ckpts.iterdir() if not p.name.startswith(".")
    )


def is_run_dir(path: str | Path) -> bool:
    """True when ``path`` is a folder epochpilot wrote a run in (see the module docstring)."""
    path = Path(path)
    try:
        return path.is_dir() and ((path / MARKER).is_file() or _written_by_us(path))
    except OSError:
        return False


def check_run_dir(path: str | Path, field: str = "run_dir") -> str:
    """Classify ``path`` before anything is written: ``"missing"``, ``"empty"`` or ``"run"``.

    A file, or a folder that holds files and is not an epochpilot run directory, is refused with a one-line
    :class:`ConfigError` naming ``field``: a command never writes into, or deletes, files it did not create.
    """
    path = Path(path)
    if not path.exists():
        return "missing"
    if not path.is_dir():
        raise ConfigError(f"{field} {str(path)!r} is a file: give a folder path")
    try:
        names = sorted(p.name for p in path.iterdir() if p.name not in LITTER)
    except OSError as exc:
        raise path_error(exc, path, field) from None
    if not names:
        return "empty"
    if is_run_dir(path):
        return "run"
    raise ConfigError(
        f"{field} {str(path)!r} is not empty and is not an epochpilot run directory (it holds "
        f"{short_list(names, 3)}): epochpilot never writes into or deletes files it did not create; "
        f"choose a new or empty folder"
    )


def mark_run_dir(path: str | Path) -> None:
    """Create ``path`` if needed and write the marker that makes it a run directory (kept if present)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    marker = path / MARKER
    if not marker.exists():
        from epochpilot import __version__

        atomic_write_text(
            marker,
            f"This folder is an epochpilot run directory (epochpilot {__version__}).\n",
        )


def _check_writable(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".epochpilot-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"{words().field} {str(run_dir)!r} is not writable ({type(exc).__name__}: {exc.strerror or exc}): "
            f"choose a directory you can write to"
        ) from None


def saved_config(run_dir: str | Path) -> tuple[dict[str, Any] | None, str | None]:
    """The run's saved ``config.toml`` and, when it cannot be compared with a new config, why (a phrase to
    follow the file's name); ``(None, None)`` when there is no such file."""
    file = Path(run_dir) / "config.toml"
    if not file.is_file():
        return None, None
    try:
        old = tomllib.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        return {}, "is not UTF-8 text"
    except tomllib.TOMLDecodeError as exc:
        return {}, f"is not valid TOML ({exc})"
    except OSError as exc:
        return {}, f"cannot be read ({exc.strerror or exc})"
    run = old.get("run")
    if not isinstance(run, dict) or not isinstance(run.get("config_hash"), str):
        return old, "has no [run] config_hash (cut short or edited)"
    return old, None


def prepare_run_dir(
    cfg: TrainConfig,
    tables: Mapping[str, Mapping[str, Any]],
    config_hash: str,
    legacy: tuple[Mapping[str, Mapping[str, Any]], str] | None = None,
) -> tuple[Path | None, str]:
    """Check ``run_dir``; return the checkpoint to resume from (None: start fresh) and the config hash the
    run directory goes on with.

    A folder of other files is refused (see :func:`check_run_dir`); an existing run is refused unless
    ``resume`` or ``overwrite`` says what to do with it; a refusal touches no file. ``resume="auto"`` continues
    only a run of the same config (same hash). A run written before ``config_format = 2`` is compared through
    ``legacy``: the tables and hash of the settings as given (what it recorded), and goes on with that hash.
    ``overwrite=True`` moves the old run aside (see :mod:`epochpilot.train.replace`): it is deleted once the
    new run has its first checkpoint, and comes back if the fit fails before that.
    """
    resume = cfg.resume
    explicit = isinstance(resume, (str, Path)) and resume != "auto"
    if cfg.run_dir is None:
        return (Path(resume) if explicit else None), config_hash
    run_dir = Path(cfg.run_dir)
    w = words()
    recover(run_dir, w.field)
    kind = check_run_dir(run_dir, w.field)
    old, damaged = saved_config(run_dir) if kind == "run" else (None, None)
    has_run = old is not None or (kind == "run" and any((run_dir / name).exists() for name in OURS))
    new_hash = config_hash  # what a fresh start writes
    if old is not None and damaged is None and config_format(old) < 2 and legacy is not None:
        tables, config_hash = legacy  # an older run: compared, and continued, as it was recorded
    same = damaged is None and old is not None and old["run"]["config_hash"] == config_hash
    if explicit:
        _claim(run_dir)
        return Path(resume), config_hash
    if not has_run:
        if resume is True:
            raise ConfigError(
                f"resume=True but run_dir {str(run_dir)!r} holds no run to continue: pass "
                f"resume='auto' or False to start one"
            )
        _claim(run_dir)
        return None, new_hash
    if cfg.overwrite:
        _check_writable(run_dir)
        Replacement.begin(run_dir, w.field)
        _claim(run_dir)
        log.info(
            "%s: the previous run in %s is kept aside until this one writes its first checkpoint",
            "overwrite=True" if w.python else "--overwrite",
            run_dir,
        )
        return None, new_hash
    where = f"{w.field} {str(run_dir)!r}"
    diff = (
        ""
        if same or damaged or old is None
        else f" (differs in {', '.join(saved_differences(old, tables))})"
    )
    if resume is False:
        # each way out must work as written: resume='auto' refuses a changed or damaged config
        if same:
            what, ways = "a run", w.ways(run_dir, w.resume, w.overwrite, w.other)
        elif damaged:
            what = f"a run whose {run_dir / 'config.toml'} {damaged}"
            ways = w.ways(run_dir, "restore the file", w.anyway, w.overwrite, w.other)
        elif old is None:
            what = "a run without a config.toml to compare this config with"
            ways = w.ways(run_dir, w.anyway, w.overwrite, w.other)
        else:
            what = "a run of a different config"
            ways = w.ways(run_dir, w.anyway, w.overwrite, w.other)
        raise ConfigError(f"{where} already holds {what}{diff}: {ways}")
    if resume == "auto" and (damaged or old is None):
        why = f"whose {run_dir / 'config.toml'} {damaged}" if damaged else "without a config.toml"
        fixes = ("restore the file",) if damaged else ()
        ways = w.ways(run_dir, *fixes, w.anyway, w.overwrite, w.other)
        raise ConfigError(
            f"{where} holds a run {why}, so its config cannot be compared with this one: {ways}"
        )
    if resume == "auto" and not same:
        ways = w.ways(run_dir, w.anyway, w.overwrite, w.other)
        raise ConfigError(f"{where} holds a run of a different config{diff}: {ways}")
    latest = latest_checkpoint(run_dir / "checkpoints")
    if latest is None:
        if resume is True:
            fix = (
                "pass resume='auto' to start it" if same else w.ways(run_dir, w.overwrite, w.other)
            )
            raise ConfigError(
                f"resume=True but run_dir {str(run_dir)!r} has no checkpoint to continue from: {fix}"
            )
        log.info("run_dir %s has no checkpoint yet: starting from scratch", run_dir)
    elif damaged:
        log.warning("resuming %s without comparing configs: config.toml %s", latest, damaged)
    elif not same:
        log.warning("resuming %s with a changed config%s", latest, diff)
    _claim(run_dir)
    return latest, (config_hash if latest is not None else new_hash)


def _size(path: Path) -> int:
    """Bytes in the files at ``path`` (below it for a folder); what cannot be read counts 0."""
    if path.is_file():
        with contextlib.suppress(OSError):
            return path.stat().st_size
        return 0
    return sum(_size(p) for p in path.iterdir()) if path.is_dir() else 0


def check_space(run_dir: str | Path, field: str | None = None) -> None:
    """Refuse, before anything is written, to continue the run in ``run_dir`` on a disk without room for
    what continuing writes: a checkpoint as large as its largest one, and its other files rewritten (each
    goes to a temporary name before the old one is replaced). One line naming ``field``."""
    import shutil

    run_dir = Path(run_dir)
    field = field or words().field
    try:
        ckpts = [p for p in (run_dir / "checkpoints").iterdir() if p.is_dir()]
    except OSError:
        ckpts = []
    try:
        files = [p for p in run_dir.iterdir() if p.name not in ("checkpoints", "tb")]
        free = shutil.disk_usage(run_dir).free
    except OSError as exc:
        raise path_error(exc, run_dir, field) from None
    need = max(map(_size, ckpts), default=0) + sum(map(_size, files)) + 64 * 1024
    if free < need:
        raise ConfigError(
            f"{field} {str(run_dir)!r}: its disk has {free / 1024:,.0f} KiB free; continuing this run writes "
            f"about {need / 1024:,.0f} KiB (a checkpoint and its files rewritten): free some disk space, or "
            f"move the run to a disk with room"
        )


def _claim(run_dir: Path) -> None:
    """The run directory exists, is writable and carries the marker."""
    _check_writable(run_dir)
    try:
        mark_run_dir(run_dir)
    except OSError as exc:
        raise path_error(exc, run_dir, words().field) from None


def write_config(run_dir: Path, tables: Mapping[str, Mapping[str, Any]]) -> None:
    """Save the resolved config as ``run_dir/config.toml``."""
    with atomic_open(Path(run_dir) / "config.toml", "w", sync=True, encoding="utf-8") as fh:
        fh.write(to_toml(tables))


# -- the commands' run directories (train, cv, tune, demo, finetune, continue) --------------------------
def check_for_command(
    path: str | Path, *, overwrite: bool, resume: bool, field: str | None = None
) -> str:
    """Refuse, before any work, a run directory this command may not write (a file, a folder of files
    epochpilot did not write, an existing run without ``--resume``/``--overwrite``); bring back what a killed
    command left aside. Returns ``"missing"``, ``"empty"`` or ``"run"``; writes nothing else. ``field``
    (default: the running command's, see :mod:`epochpilot.train.wording`) names the folder's argument."""
    w = words()
    field = field or w.field
    if overwrite and resume:
        raise ConfigError("--overwrite and --resume contradict each other: keep one")
    recover(path, field)
    kind = check_run_dir(path, field)
    if kind == "run" and not (overwrite or resume):
        ways = w.ways(path, w.resume, w.overwrite, w.other)
        raise FileExistsError(f"{field} {str(path)!r} already holds a run: {ways}")
    return kind


def claim_run_dir(
    path: str | Path, *, overwrite: bool, resume: bool, field: str | None = None
) -> None:
    """Claim ``path`` for a command's run, once its input is validated: :func:`check_for_command`, then (with
    ``overwrite``) move the old run aside, create the folder and mark it as a run directory.

    The old run is deleted once the new run is durable (its first checkpoint, or a finished fit), and comes
    back if it fails before that; use :func:`claimed_run_dir` to cover failures outside ``fit`` too.
    """
    field = field or words().field
    kind = check_for_command(path, overwrite=overwrite, resume=resume, field=field)
    if overwrite and kind == "run":
        Replacement.begin(path, field)
    try:
        mark_run_dir(path)
    except OSError as exc:
        settle(path, ok=False)  # the old run comes back
        raise path_error(exc, path, field) from None


@contextlib.contextmanager
def claimed_run_dir(
    path: str | Path, *, overwrite: bool, resume: bool, field: str | None = None
) -> Iterator[Path]:
    """:func:`claim_run_dir` for the commands' writing part: a failure inside (an exception, Ctrl-C)
    before the new run is durable brings the old run back; a clean exit keeps the new one. A full disk or
    a read-only folder while writing is one line naming ``field``."""
    field = field or words().field
    claim_run_dir(path, overwrite=overwrite, resume=resume, field=field)
    try:
        yield Path(path)
    except OSError as exc:
        settle(path, ok=False)
        error = disk_error(exc, path, field)
        if error is None:
            raise
        raise error from None
    except BaseException:
        settle(path, ok=False)
        raise
    settle(path, ok=True)

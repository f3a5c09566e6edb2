"""Read a run directory (config.toml, history.jsonl, summary.json, optional lr.csv) for the report.

Tolerant of what another framework's adapter leaves out: only ``history.jsonl`` is required.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

from epochpilot.core.curves.analysis import analyze
from epochpilot.report.branches import analysed_rows
from epochpilot.report.regularisers import regularisers
from epochpilot.report.rundata import ReportError, RunData

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["ReportError", "RunData", "load_run", "metric_pairs"]

log = logging.getLogger("epochpilot")

#: history keys that are not learning curves
_NOT_CURVES = {
    "epoch",
    "step",
    "lr",
    "grad_norm",
    "epoch_time_s",
    "samples_per_s",
    "stage",
    "branch",
    "trunk_epoch",
}


def metric_pairs(keys: list[str]) -> list[tuple[str, str | None, str | None]]:
    """(base, train key, val key) for every curve in ``keys``; "loss" first. Knows Keras' ``x``/``val_x``."""
    out: dict[str, list[str | None]] = {}
    for k in keys:
        if k in _NOT_CURVES:
            continue
        if k.startswith("val_"):
            out.setdefault(k[4:], [None, None])[1] = k
        elif k.startswith("train_"):
            out.setdefault(k[6:], [None, None])[0] = k
        elif f"val_{k}" in keys and f"train_{k}" not in keys:
            out.setdefault(k, [None, None])[0] = k
    pairs = [(b, t, v) for b, (t, v) in out.items()]
    return sorted(pairs, key=lambda p: p[0] != "loss")


def _read_text(path: Path) -> str:
    """The file as UTF-8 text; a file that cannot be read or decoded is a ReportError naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ReportError(
            f"{path} is not UTF-8 text (a binary or damaged file): restore it from the run or delete it"
        ) from None
    except OSError as exc:
        raise ReportError(
            f"{path} cannot be read ({exc.strerror}): check its permissions"
        ) from None


def _read_history(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    rows, notes = [], []
    lines = _read_text(path).splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if n == len(lines):  # a run killed mid-write leaves a truncated last line
                notes.append(f"history.jsonl line {n} is truncated and was skipped")
                continue
            raise ReportError(
                f"{path} line {n} is not valid JSON ({e.msg}): fix or delete that line"
            ) from None
        if not isinstance(row, dict):
            raise ReportError(f"{path} line {n} is not a JSON object: write one object per epoch")
        epoch = row.get("epoch", n)
        if isinstance(epoch, float) and epoch.is_integer():  # 3.0 from a framework that logs floats
            epoch = row["epoch"] = int(epoch)
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise ReportError(
                f"{path} line {n}: 'epoch' must be a whole number, got {epoch!r}: fix or delete that line"
            )
        rows.append(row)
    if not rows:
        raise ReportError(f"{path} has no epochs: train at least one epoch before writing a report")
    return rows, notes


#: summary.json keys the report reads, with the types it can use (a value of another type is ignored).
_SUMMARY_TYPES: dict[str, tuple[type, ...]] = {
    "best_epoch": (int,),
    "stopped_epoch": (int,),
    "epochs_run": (int,),
    "max_epochs": (int,),
    "total_steps": (int,),
    "best_value": (int, float),
    "elapsed_s": (int, float),
    "monitor": (str,),
    "mode": (str,),
    "stop_reason": (str,),
    "epochpilot_version": (str,),
    "plan": (dict,),
    "epochs_trained": (int, float),
    "kept_from": (str,),
    "cooldown": (str,),
    "branches": (list,),
    "task": (str,),
    "val_metrics": (dict,),
    "test_metrics": (dict,),
    "target_scale": (dict,),
}

#: the fields of one ``summary["branches"]`` entry with the types the report can use (None allowed unless
#: the field is required: "branch" and "fork_epoch")
_BRANCH_TYPES: dict[str, tuple[type, ...]] = {
    "branch": (int,),
    "fork_epoch": (int,),
    "fork_step": (int,),
    "steps": (int,),
    "first_epoch": (int,),
    "last_epoch": (int,),
    "best_value": (int, float),
    "best_epoch": (int,),
    "final": (bool,),
}


def _read_summary(path: Path, notes: list[str]) -> dict[str, Any]:
    """summary.json as a dict; an unreadable file or a value of the wrong type is skipped with a note and a
    warning naming the file (the report is still written from history.jsonl)."""
    try:
        summary = json.loads(_read_text(path))
    except (ReportError, json.JSONDecodeError) as e:
        why = f"{e.msg}, line {e.lineno}" if isinstance(e, json.JSONDecodeError) else str(e)
        _note(notes, f"{path} is not valid JSON ({why}); ignored")
        return {}
    if not isinstance(summary, dict):
        _note(notes, f"{path} is not a JSON object; ignored")
        return {}
    for key, kinds in _SUMMARY_TYPES.items():
        value = summary.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kinds)):
            _note(notes, f"{path}: {key!r} has the wrong type ({value!r}); ignored")
            del summary[key]
    if "branches" in summary:
        summary["branches"] = _check_branches(summary["branches"], path, notes)
    return summary


def _check_branches(entries: Any, path: Path, notes: list[str]) -> list[dict[str, Any]]:
    """The well-formed ``branches`` entries; each malformed one is dropped with a note naming it."""
    if not isinstance(entries, list):  # null
        return []
    kept: list[dict[str, Any]] = []
    for i, entry in enumerate(entries):
        why = None
        if not isinstance(entry, dict):
            why = "is not a JSON object"
        else:
            for key, kinds in _BRANCH_TYPES.items():
                value = entry.get(key)
                if value is None and key not in ("branch", "fork_epoch"):
                    continue
                wrong = isinstance(value, bool) and bool not in kinds
                if wrong or not isinstance(value, kinds):
                    why = f"has {key!r} = {value!r}" if key in entry else f"has no {key!r}"
                    break
            else:
                if entry["branch"] < 1:
                    why = f"has 'branch' = {entry['branch']!r} (branches count from 1)"
                elif any(e["branch"] == entry["branch"] for e in kept):
                    why = f"repeats branch {entry['branch']}"
        if why is not None:
            _note(notes, f"{path}: branches[{i}] {why}; that branch is left out of the report")
        else:
            kept.append(entry)
    return kept


def _note(notes: list[str], text: str) -> None:
    """A note on the report page, also logged as one warning line."""
    notes.append(text)
    log.warning("warning: %s", text)


def _last_per_epoch(rows: list[dict[str, Any]], notes: list[str]) -> list[dict[str, Any]]:
    """A resumed run may re-log epochs: keep the last row of each epoch, in epoch order."""
    epochs = [r.get("epoch") for r in rows]
    if not all(isinstance(e, int) for e in epochs) or len(set(epochs)) == len(epochs):
        return rows
    last = {r["epoch"]: r for r in rows}
    notes.append(
        "history.jsonl logs some epochs more than once (resumed?); the last row of each is used"
    )
    return [last[e] for e in sorted(last)]


def _read_lr_csv(path: Path, notes: list[str]) -> tuple[list[float], list[float]] | None:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = [(float(r["step"]), float(r["lr"])) for r in csv.DictReader(f)]
    except (KeyError, ValueError, TypeError, OSError):  # UnicodeDecodeError is a ValueError
        notes.append(
            "lr.csv has no numeric 'step' and 'lr' columns; the per-epoch lr is shown instead"
        )
        return None
    return ([s for s, _ in rows], [v for _, v in rows]) if rows else None


def _choose_monitor(run: RunData) -> tuple[str | None, str | None]:
    """The summary's monitor/mode; without them, the val loss (else train loss), which is minimised."""
    monitor, mode = run.summary.get("monitor"), run.summary.get("mode")
    keys = run.keys
    if isinstance(monitor, str) and monitor in keys and mode in ("min", "max"):
        return monitor, mode
    for cand in ("val_loss", "train_loss", "loss"):
        if cand in keys and run.has(cand):
            if monitor:
                run.notes.append(
                    f"summary monitor {monitor!r}/{mode!r} unusable; analysed {cand} (min)"
                )
            return cand, "min"
    return None, None


def load_run(run_dir: str | Path) -> RunData:
    """Read ``run_dir``; raise ReportError naming the file and the fix when it cannot be reported on."""
    if not str(run_dir).strip():
        raise ReportError("a run directory was given as an empty path: pass the run's directory")
    path = Path(run_dir)
    if not path.is_dir():
        raise ReportError(
            f"run directory {path} does not exist: pass the directory a training run wrote "
            f"(the one holding history.jsonl)"
        )
    hist_path = path / "history.jsonl"
    if not hist_path.is_file():
        raise ReportError(
            f"{str(path)!r} is not a run directory ({hist_path} not found): pass a run directory written "
            "by epochpilot (or an adapter), which holds history.jsonl with one JSON object per epoch"
        )
    history, notes = _read_history(hist_path)
    history = _last_per_epoch(history, notes)
    run = RunData(path=path, history=history, summary={}, notes=notes)
    sp = path / "summary.json"
    if sp.is_file():
        run.summary = _read_summary(sp, run.notes)
    else:
        run.notes.append(
            "no summary.json (the run may still be going); figures come from history.jsonl"
        )
    cp = path / "config.toml"
    if cp.is_file():
        try:
            run.config_text = _read_text(cp)
            run.config = tomllib.loads(run.config_text)
        except ReportError as e:
            _note(run.notes, f"{e}; ignored")
        except tomllib.TOMLDecodeError as e:
            _note(run.notes, f"{cp} does not parse ({e}); shown as text")
    if (path / "lr.csv").is_file():
        run.lr_steps = _read_lr_csv(path / "lr.csv", run.notes)
    run.regularisers = regularisers(path, run.config)
    run.monitor, run.mode = _choose_monitor(run)
    if run.monitor is not None:
        rows = analysed_rows(run)
        if rows is not None:
            ended = any(r.get("branch") for r in rows)
            run.notes.append(
                "the curve analysis reads the trunk"
                + (" and the cooldown that ended the run" if ended else "")
                + "; the other cooldown branches are drawn in the branches plot"
            )
        try:
            run.analysis = analyze(
                run.history if rows is None else rows,
                run.monitor,
                run.mode,
                regularisers=run.regularisers,
            )
        except ValueError as e:  # a history the analysis cannot read still gets its plots
            run.notes.append(f"curve analysis skipped: {e}")
    return run

"""The config hash of a run (``[run] config_hash`` in ``config.toml``, format 2: ``config_format = 2``) and
the names of the settings two configs differ in.

The hash is computed from the tables as ``config.toml`` holds them (:func:`hash_data`), so it can be
recomputed from the file: every setting that changes what is trained, the records of the optimizer as built,
the stopper and the schedule resolved (see :mod:`epochpilot.train.resolved`) included. How a setting was
given is left out (``stopper=None`` and ``"auto"`` build the same policy, a factory and a name the same
optimizer), and so is what follows the budget (the stopper's ``budget``, a schedule's step counts when it is
rebuilt for the run's length), as ``max_epochs`` is: a run can be continued for longer. Runs written before
format 2 keep their hash (``TrainConfig.config_hash``, from the settings as given) and are compared that
way (see :func:`epochpilot.train.rundir.prepare_run_dir`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import tomllib

from epochpilot.train.config import _NOT_HASHED, _UNHASHED_DEFAULTS
from epochpilot.train.resolved import COMPONENTS
from epochpilot.train.tomlwrite import to_toml

__all__ = ["config_format", "differences", "hash_data", "records_hash", "saved_differences"]

#: schedule fields counted in updates: left out of the hash when the schedule is rebuilt for the budget
_STEP_FIELDS = frozenset(
    {
        "total_steps",
        "steps",
        "warmup_steps",
        "step_size",
        "decay_steps",
        "milestones",
        "cooldown_start",
        "cooldown_steps",
        "until",
    }
)
#: stopper parameters that follow the budget (the trainer sets them), left out of the hash
_BUDGET_PARAMS = frozenset({"budget", "schedule"})


def _drop(node: Any, keys: frozenset[str]) -> Any:
    """``node`` without ``keys`` at any depth, numbers as floats (torch's default ``0`` and a ``0.0``
    given are the same setting)."""
    if isinstance(node, Mapping):
        return {k: _drop(v, keys) for k, v in node.items() if k not in keys}
    if isinstance(node, list):
        return [_drop(v, keys) for v in node]
    if isinstance(node, int) and not isinstance(node, bool):
        return float(node)
    return node


def _as_written(tables: Mapping[str, Any]) -> dict[str, Any]:
    """``tables`` as config.toml holds them (None as "none", tuples as lists); a value TOML cannot hold
    back (never seen: kept as a safety net) falls back to its JSON form, so a record never fails a fit."""
    try:
        return tomllib.loads(to_toml(tables))
    except (tomllib.TOMLDecodeError, ValueError, TypeError):
        return json.loads(json.dumps(tables, default=str))


def hash_data(tables: Mapping[str, Any]) -> dict[str, Any]:
    """What the format-2 hash covers, from the tables as ``config.toml`` holds them: the ``[train]``
    settings that change what is trained (``lr``/``weight_decay`` through the optimizer and schedule
    records), the optimizer, stopper and schedule records less how they were given and what follows the
    budget, the model, and the number of training samples."""
    t = _as_written(tables)
    derived = set(COMPONENTS) | {"lr", "weight_decay"}
    train = {k: v for k, v in t.get("train", {}).items() if k not in _NOT_HASHED | derived}
    for key, default in _UNHASHED_DEFAULTS.items():
        if train.get(key) == ("none" if default is None else default):
            train.pop(key)
    sched = t.get("schedule", {})
    schedule_drop = {"given", "peak_lr", "warmup", "follows_budget", "run_updates"}
    if sched.get("follows_budget"):
        schedule_drop |= _STEP_FIELDS
    return {
        "train": _drop(train, frozenset()),
        "model": t.get("model", {}),
        "data": {"n_train": t.get("data", {}).get("n_train")},
        "optimizer": _drop(t.get("optimizer", {}), frozenset({"given"})),
        "stopper": _drop(t.get("stopper", {}), frozenset({"given"}) | _BUDGET_PARAMS),
        "schedule": _drop(sched, frozenset(schedule_drop)),
    }


def records_hash(tables: Mapping[str, Any]) -> str:
    """The format-2 config hash of ``tables`` (16 hex digits): same settings, same hash."""
    data = json.dumps(hash_data(tables), sort_keys=True, default=str)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): node}


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The hashed settings that differ between two format-2 configs, named as the user wrote them: ``lr``
    (through the optimizer or schedule), ``optimizer`` / ``stopper`` / ``schedule`` when another class ran,
    else the record's own key (``stopper.patience``, ``optimizer.momentum``), ``n_train``, ``class``..."""
    a, b = hash_data(old), hash_data(new)
    found: list[str] = []
    for table in ("train", "model", "data"):
        fa, fb = _flat(a[table]), _flat(b[table])
        found += [k for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]
    for comp in COMPONENTS:
        fa, fb = _flat(a[comp]), _flat(b[comp])
        diff = [k for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]
        if "class" in diff:
            found.append(comp)
            continue
        for key in diff:
            leaf = key.rsplit(".", 1)[-1]
            name = leaf if leaf in ("lr", "weight_decay") else f"{comp}.{key}"
            if name not in found:
                found.append(name)
    return found


def config_format(config: Mapping[str, Any]) -> int:
    """The format of a saved config: 2 when its ``[run]`` says so, else 1 (the settings as given)."""
    run = config.get("run")
    version = run.get("config_format", 1) if isinstance(run, Mapping) else 1
    return version if isinstance(version, int) and not isinstance(version, bool) else 1


def saved_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Names of the hashed settings that differ between a saved config ``old`` and the tables ``new`` of
    its format (format 1: the settings as given; 2: the records of what ran, :func:`differences`)."""
    if config_format(old) >= 2:
        return differences(old, new) or ["(unknown fields)"]
    new = tomllib.loads(to_toml(new))  # compare like with like: None is "none" in TOML
    keys = []
    for table in ("train", "model", "data"):
        a, b = old.get(table, {}), new.get(table, {})
        keys += [f"{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return [k for k in keys if k not in _NOT_HASHED and not _added_default(k, old, new)] or [
        "(unknown fields)"
    ]


def _added_default(key: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """True for a ``[train]`` field added after ``old`` was written that ``new`` holds at its default (left
    out of the hash, so it is no difference)."""
    if key not in _UNHASHED_DEFAULTS or key in old.get("train", {}):
        return False
    default = _UNHASHED_DEFAULTS[key]
    return new.get("train", {}).get(key) in (default, "none" if default is None else default)

"""The study behind ``epochpilot.select.tune.run``: the settings it ran with, ``resume`` / ``overwrite``, and the study
``tune()`` returns.

A study records the settings its trials ran with in its user attribute ``epochpilot_settings``: the direction,
the search space, the objective (a function's name; for a job, every setting that changes what a trial trains,
such as ``[train] max_epochs`` or ``[train] monitor``), the pruner and the sampler (with its seed). A second
``tune()`` into a study that holds trials is checked against them:

- ``resume=False`` (the default) refuses it: the message says whether the settings are the same (``resume='auto'``
  continues it) or which ones differ;
- ``resume='auto'`` continues a study of the same settings, and refuses one of other settings, naming the first
  differences;
- ``resume=True`` continues it even with another pruner, sampler, seed, objective or job setting (one warning
  line names them);
- ``overwrite=True`` deletes the study and starts it over.

A study cannot be continued with another direction, search space or ``cv`` (k-fold), whatever ``resume`` says (Optuna fixes the
direction; trials drawn from another space would be ranked with these). A study created outside epochpilot
(``optuna create-study``) that holds only waiting trials is adopted as it is.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import optuna

from epochpilot.errors import ConfigError
from epochpilot.select.tune.make import PRUNERS, SAMPLERS, make_pruner, make_sampler
from epochpilot.select.tune.space import Param, real_params, space_key

__all__ = [
    "PRUNERS",
    "SAMPLERS",
    "SETTINGS_ATTR",
    "SPACE_ATTR",
    "TunedStudy",
    "make_pruner",
    "make_sampler",
    "open_study",
    "study_settings",
]

log = logging.getLogger("epochpilot")

SETTINGS_ATTR = "epochpilot_settings"
SPACE_ATTR = "epochpilot_space"
#: settings no ``resume`` can change (see the module docstring)
FIXED = ("direction", "space", "cv")
#: job settings that change how a trial is shown or saved, not what it trains
_NOT_TRAINED = frozenset({"device", "progress", "tensorboard", "checkpoint_every", "keep_last"})
_SHORT = {
    "EpochpilotPruner": "epochpilot",
    "MedianPruner": "median",
    "HyperbandPruner": "hyperband",
    "NopPruner": "none",
    "TPESampler": "tpe",
    "RandomSampler": "random",
}
_SCALARS = (type(None), bool, int, float, str)


# -- the settings a study records ----------------------------------------------------------------------------


def _init_args(obj: Any) -> dict[str, Any]:
    """The scalar constructor arguments an object kept (as ``name`` or ``_name``): Optuna's pruners and
    samplers and the epochpilot pruner all keep theirs."""
    try:
        parameters = inspect.signature(type(obj).__init__).parameters
    except (TypeError, ValueError):
        return {}
    attrs = getattr(obj, "__dict__", {})
    out: dict[str, Any] = {}
    for name, p in parameters.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        for key in (name, f"_{name}"):
            if key in attrs:
                if isinstance(attrs[key], _SCALARS):
                    out[name] = attrs[key]
                break
    return out


def component(obj: Any, seed: int | None = None) -> dict[str, Any]:
    """A pruner or sampler as JSON-safe data: its short name, its scalar arguments and the seed (None:
    unknown, as for a sampler instance)."""
    name = type(obj).__name__
    return {"name": _SHORT.get(name, name), "args": _init_args(obj), "seed": seed}


def objective_name(objective: Any) -> str:
    """How a function objective is named in the study (its qualified name, the module left out so that a
    script and the module it imports agree)."""
    if isinstance(objective, functools.partial):
        args = [repr(a) for a in objective.args if isinstance(a, _SCALARS)]
        args += [
            f"{k}={v!r}" for k, v in sorted(objective.keywords.items()) if isinstance(v, _SCALARS)
        ]
        return f"{objective_name(objective.func)}({', '.join(args)})"
    name = getattr(objective, "__qualname__", None)
    return str(name if isinstance(name, str) else type(objective).__qualname__)


def job_settings(spec: Any, params: Mapping[str, Param] | None) -> dict[str, Any]:
    """The job's settings that change what a trial trains, as ``{"[train] max_epochs": 30, ...}``; the
    searched ones (they differ per trial) and the [run] table are left out."""
    tuned = set(params or ())
    out: dict[str, Any] = {}
    tables = spec.to_tables()
    for section in ("data", "model", "train"):
        for key, value in tables[section].items():
            if section == "train" and (key in _NOT_TRAINED or key in tuned):
                continue
            if section == "model" and f"model.{key}" in tuned:
                continue
            out[f"[{section}] {key}"] = value
    return json.loads(json.dumps(out, default=str))


def study_settings(
    *,
    direction: str,
    params: Mapping[str, Param] | None,
    objective: Any,
    spec: Any,
    pruner: optuna.pruners.BasePruner,
    sampler: optuna.samplers.BaseSampler,
    seed: int | None,
) -> dict[str, Any]:
    """The settings a study records (JSON-safe); ``spec`` is the job of a config-driven study, else None;
    ``seed`` is the sampler's when tune() built it from a name (None: unknown)."""
    settings: dict[str, Any] = {
        "direction": direction,
        "space": json.loads(space_key(params)) if params is not None else None,
        "objective": "job" if spec is not None else objective_name(objective),
        "pruner": component(pruner),
        "sampler": component(sampler, seed),
    }
    if spec is not None:
        settings["job"] = job_settings(spec, params)
    return settings


def _show(value: Any) -> str:
    if isinstance(value, list):
        return repr(tuple(value))
    return repr(value) if isinstance(value, str) else str(value)


def _some(parts: Sequence[str], n: int = 3) -> str:
    more = len(parts) - n
    return "; ".join(parts[:n]) + (f"; and {more} more" if more > 0 else "")


def _space_diff(old: Any, new: Any) -> str:
    if old is None or new is None:
        return f"a different search space ({'none' if old is None else 'one'}, not {'none' if new is None else 'one'})"
    parts = []
    for name in sorted(set(old) | set(new)):
        if name not in new:
            parts.append(f"{name} {_show(old[name])}, not searched now")
        elif name not in old:
            parts.append(f"no {name}, not {_show(new[name])}")
        elif old[name] != new[name]:
            parts.append(f"{name} {_show(old[name])}, not {_show(new[name])}")
    return f"a different search space ({_some(parts)})"


def _job_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    parts = []
    for key in list(old) + [k for k in new if k not in old]:
        a, b = old.get(key, "unset"), new.get(key, "unset")
        if a != b:
            parts.append(f"{key} {_show(a)}, not {_show(b)}")
    return _some(parts)


def _component_diff(what: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    if old.get("name") != new.get("name"):
        return f"{what} {old.get('name')}, not {new.get('name')}"
    a, b = old.get("args") or {}, new.get("args") or {}
    parts = [f"{k}={_show(a[k])}, not {_show(b[k])}" for k in a if k in b and a[k] != b[k]]
    text = f"{what} {old.get('name')} with {_some(parts)}" if parts else ""
    seeds = old.get("seed"), new.get("seed")
    if None not in seeds and seeds[0] != seeds[1]:
        text = f"{text}; " if text else ""
        text += f"{what} seed {seeds[0]}, not {seeds[1]}"
    return text


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(setting, "what it was, not what it is now") for each setting that differs; a setting the old
    study did not record (made before epochpilot recorded it) counts as the same."""
    out = []
    if "job" in old and "cv" not in old:  # a job study from before cv was recorded ran without it
        old = {**old, "cv": None}
    for key in ("direction", "space", "cv", "objective", "job", "pruner", "sampler"):
        if key not in old or key not in new or old[key] == new[key]:
            continue
        a, b = old[key], new[key]
        if key == "space":
            text = _space_diff(a, b)
        elif key == "job":
            text = _job_diff(a or {}, b or {})
        elif key in ("pruner", "sampler"):
            text = _component_diff(key, a or {}, b or {})
        elif key == "cv":  # k-fold values and validation-split values cannot be ranked together
            text = f"{'cv=' + str(a) if a else 'no cv'}, not {'cv=' + str(b) if b else 'no cv'}"
        else:
            text = f"{key} {a}, not {b}"
        if text:
            out.append((key, text))
    return out


# -- opening a study -----------------------------------------------------------------------------------------


def _ways(n_trials: int) -> dict[str, str | None]:
    """The ways out of a refusal, in the words of where it is read (Python or the command line)."""
    from epochpilot.train.wording import words

    if words().python:
        return {
            "resume": "pass resume='auto' to continue it",
            "anyway": "pass resume=True to continue it anyway",
            "other": "use another study_name",
            "overwrite": f"pass overwrite=True to start it over (deleting its {n_trials} trials)",
        }
    return {
        "resume": "pass --resume to continue it",
        "anyway": None,
        "other": "use another --study-name",
        "overwrite": f"pass --overwrite to start it over (deleting its {n_trials} trials)",
    }


def _join(*phrases: str | None) -> str:
    parts = [p for p in phrases if p]
    return parts[0] if len(parts) < 2 else f"{', '.join(parts[:-1])}, or {parts[-1]}"


def _stored(study: optuna.Study) -> dict[str, Any]:
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    attrs = study.user_attrs
    old = dict(attrs.get(SETTINGS_ATTR) or {})
    old["direction"] = "maximize" if maximize else "minimize"
    if "space" not in old and isinstance(attrs.get(SPACE_ATTR), str):
        old["space"] = json.loads(attrs[SPACE_ATTR])
    return old


def _check(study: optuna.Study, settings: Mapping[str, Any], resume: Any, where: str) -> None:
    """Refuse, continue or warn for an existing study (see the module docstring)."""
    trials = study.get_trials(deepcopy=False)
    adopted = SETTINGS_ATTR not in study.user_attrs and all(
        t.state == optuna.trial.TrialState.WAITING for t in trials
    )
    diffs = differences(_stored(study), settings)
    ways = _ways(len(trials))
    fixed = [text for key, text in diffs if key in FIXED]
    if fixed:
        raise ConfigError(
            f"{where} was created with {_some(fixed)}: its trials cannot be continued with these settings: "
            f"{_join(ways['other'], ways['overwrite'])}"
        )
    if adopted or not trials:
        return
    finished = sum(t.state.is_finished() for t in trials)
    held = f"{where} holds {len(trials)} trials ({finished} finished)"
    other = [text for _, text in diffs]
    if other and resume is not True:
        raise ConfigError(
            f"{held} of other settings ({_some(other)}): "
            f"{_join(ways['anyway'], ways['other'], ways['overwrite'])}"
        )
    if resume is False:
        raise ConfigError(
            f"{held} of these settings: {_join(ways['resume'], ways['other'], ways['overwrite'])}"
        )
    if other:
        log.warning("warning: continuing %s with other settings (%s)", where, _some(other))


def check_resume(resume: Any, overwrite: Any) -> None:
    """Refuse a ``resume``/``overwrite`` that is not one of the documented values, or both at once."""
    if resume not in (False, "auto", True) or isinstance(resume, int) and type(resume) is not bool:
        raise ConfigError(f"resume={resume!r}: use False, 'auto' or True")
    if not isinstance(overwrite, bool):
        raise ConfigError(f"overwrite={overwrite!r}: use True or False")
    if overwrite and resume:
        raise ConfigError(f"overwrite=True and resume={resume!r} contradict each other: keep one")


def open_study(
    storage: optuna.storages.BaseStorage,
    *,
    study_name: str,
    direction: str,
    settings: Mapping[str, Any],
    resume: Any,
    overwrite: bool,
    where: str,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
) -> optuna.Study:
    """Create the study, or check the existing one against ``settings`` (see the module docstring); then
    record the settings in it. ``where`` names the study in messages (``study 'x' in sqlite:///...``)."""
    check_resume(resume, overwrite)
    exists = study_name in optuna.get_all_study_names(storage=storage)
    if exists and overwrite:
        old = optuna.load_study(study_name=study_name, storage=storage)
        n = len(old.get_trials(deepcopy=False))
        optuna.delete_study(study_name=study_name, storage=storage)
        log.info("overwrite=True: deleted %s and its %d trials", where, n)
        exists = False
    if not exists and resume is True:
        raise ConfigError(f"resume=True but there is no {where}: use resume='auto' or False")
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=study_name,
            direction=direction,
            sampler=sampler,
            pruner=pruner,
        )
    except (
        optuna.exceptions.DuplicatedStudyError
    ):  # it exists (or another worker created it just now)
        study = optuna.load_study(
            study_name=study_name, storage=storage, sampler=sampler, pruner=pruner
        )
        _check(study, settings, resume, where)
    study.set_user_attr(SETTINGS_ATTR, dict(settings))
    if settings.get("space") is not None:
        study.set_user_attr(SPACE_ATTR, json.dumps(settings["space"], sort_keys=True))
    return study


# -- the study tune() returns --------------------------------------------------------------------------------


class TunedStudy(optuna.Study):
    """The study ``tune()`` returns: Optuna's ``Study`` whose ``pruner`` and ``sampler`` are the ones that
    ran, and whose ``best_trial`` / ``best_params`` hold the values as declared (a list choice as a list,
    where Optuna stores its JSON text; ``trials`` keep Optuna's stored values, see
    :func:`~epochpilot.select.tune.space.real_params`)."""

    def __init__(
        self,
        study_name: str,
        storage: optuna.storages.BaseStorage,
        sampler: optuna.samplers.BaseSampler,
        pruner: optuna.pruners.BasePruner,
        space: Mapping[str, Param] | None,
    ) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__init__(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner)
        self._space = dict(space or {})

    @property
    def best_trial(self) -> optuna.trial.FrozenTrial:
        """Optuna's best trial (a copy) with its params as declared."""
        trial = copy.copy(super().best_trial)
        trial.params = real_params(trial.params, self._space)
        return trial

"""Tune hyperparameters with Optuna: a declared search space, per-epoch pruning with the stop policies, a
standard study database that resumes after a crash and is shared by worker processes or machines.

``tune(objective_or_config, space, n_trials=...)`` takes either a job (a TOML path or a
:class:`~epochpilot.job.JobSpec`: each trial trains the job with the trial's settings) or a function
``objective(trial, params) -> float`` that trains however it likes and attaches
``PruningCallback(trial)`` to its :class:`~epochpilot.train.Trainer` to report and prune per epoch.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import random
import sys
import time
import types
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import optuna

from epochpilot.train.events import Callback, TrainState
from epochpilot.tune_pruner import BUDGET_ATTR, EpochpilotPruner

__all__ = [
    "JobObjective",
    "Param",
    "PruningCallback",
    "make_pruner",
    "open_storage",
    "parse_space",
    "tune",
]

KINDS = ("float", "log", "int", "choice")
PRUNERS = ("epochpilot", "median", "hyperband", "none")
SAMPLERS = ("tpe", "random")
SPACE_ATTR = "epochpilot_space"
_SCALARS = (type(None), bool, int, float, str)
#: job settings a config-driven study may not tune (they change where or how, not what, is trained)
_NOT_TUNABLE = ("device", "progress", "tensorboard", "checkpoint_every", "keep_last", "seed")


# -- the search space ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """One dimension of the space: ``kind`` float | log | int | choice, a range or the choices."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        """Ask the trial for this parameter's value."""
        if self.kind == "choice":
            encoded = [_encode(c) for c in self.choices]
            return _decode(trial.suggest_categorical(self.name, encoded))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high))  # type: ignore[arg-type]
        return trial.suggest_float(self.name, self.low, self.high, log=self.kind == "log")  # type: ignore[arg-type]

    def to_json(self) -> list[Any]:
        """The declaration as JSON-safe data (what the study stores to detect a changed space)."""
        if self.kind == "choice":
            return ["choice", [list(c) if isinstance(c, tuple) else c for c in self.choices]]
        return [self.kind, self.low, self.high]


def _encode(value: Any) -> Any:
    """Optuna stores scalar choices only: a list choice travels as its JSON text."""
    return value if isinstance(value, _SCALARS) else json.dumps(list(value))


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _number(name: str, value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"space[{name!r}]: {what} must be a finite number, got {value!r}")
    return value


def parse_space(space: Mapping[str, Any], allowed: Sequence[str] | None = None) -> dict[str, Param]:
    """Validate a space such as ``{"lr": ("log", 1e-4, 1e-1), "batch_size": ("choice", [16, 32])}``.

    Kinds: ``("float", low, high)``, ``("log", low, high)`` (log-uniform, low > 0), ``("int", low, high)``
    (inclusive) and ``("choice", [options])`` (numbers, strings, booleans, None or lists of those). An
    unknown kind, an empty range (low >= high) or, when ``allowed`` is given, an unknown name raise a
    ValueError naming the parameter and the fix.
    """
    if not isinstance(space, Mapping) or not space:
        raise ValueError(
            "space must be a non-empty dict name -> (kind, ...), e.g. {'lr': ('log', 1e-4, 1e-1)}"
        )
    out: dict[str, Param] = {}
    for name, decl in space.items():
        if allowed is not None and name not in allowed and not str(name).startswith("model."):
            near = difflib.get_close_matches(str(name), list(allowed), n=1)
            hint = f"did you mean {near[0]!r}?" if near else f"use one of {', '.join(allowed)}"
            raise ValueError(
                f"space has unknown parameter {name!r}: {hint} (or 'model.NAME' for a model argument)"
            )
        if not isinstance(decl, (tuple, list)) or not decl or not isinstance(decl[0], str):
            raise ValueError(
                f"space[{name!r}] must be a tuple (kind, ...) such as ('log', 1e-4, 1e-1), got {decl!r}"
            )
        kind = decl[0]
        if kind not in KINDS:
            raise ValueError(
                f"space[{name!r}]: unknown kind {kind!r}: use one of {', '.join(KINDS)}"
            )
        if kind == "choice":
            if len(decl) != 2 or not isinstance(decl[1], (list, tuple)) or not decl[1]:
                raise ValueError(
                    f"space[{name!r}]: write ('choice', [option, ...]) with at least one option"
                )
            for option in decl[1]:
                ok = isinstance(option, _SCALARS) or (
                    isinstance(option, (list, tuple))
                    and all(isinstance(v, _SCALARS) for v in option)
                )
                if not ok:
                    raise ValueError(
                        f"space[{name!r}]: option {option!r} is not a number, string, bool, None or list of those"
                    )
            choices = tuple(tuple(o) if isinstance(o, list) else o for o in decl[1])
            out[name] = Param(name, kind, choices=choices)
            continue
        if len(decl) != 3:
            raise ValueError(f"space[{name!r}]: write ({kind!r}, low, high)")
        low, high = _number(name, decl[1], "low"), _number(name, decl[2], "high")
        if low >= high:
            raise ValueError(
                f"space[{name!r}] has an empty range ({low!r}, {high!r}): make low < high "
                f"(or use ('choice', [{low!r}]) for a fixed value)"
            )
        if kind == "log" and low <= 0:
            raise ValueError(f"space[{name!r}]: a 'log' range needs low > 0, got {low!r}")
        if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
            raise ValueError(
                f"space[{name!r}]: an 'int' range needs whole numbers, got ({low}, {high})"
            )
        out[name] = Param(name, kind, low, high)
    return out


def space_key(params: Mapping[str, Param]) -> str:
    """Canonical JSON of a parsed space (stored in the study to refuse a changed space)."""
    return json.dumps({n: p.to_json() for n, p in params.items()}, sort_keys=True)


def job_parameters() -> list[str]:
    """Names a config-driven study may tune: the job's [train] settings (plus any ``model.NAME``)."""
    from epochpilot.job import TrainSpec

    return [f.name for f in dataclasses.fields(TrainSpec) if f.name not in _NOT_TUNABLE]


# -- reporting and pruning inside the trainer ------------------------------------------------------------


class PruningCallback(Callback):
    """Trainer callback: report the monitored value to ``trial`` each epoch; raise ``optuna.TrialPruned``
    when the study's pruner says so, after saving the pruner's reason as the trial's ``prune_reason``.

    ``monitor`` defaults to the trainer's (its stopper's) monitor. A NaN value is reported as is (the
    "epochpilot" pruner prunes it as ``not_finite``).
    """

    def __init__(self, trial: optuna.Trial, monitor: str | None = None) -> None:
        self.trial = trial
        self.monitor = monitor

    @property
    def state_key(self) -> str:
        """Checkpoint key."""
        return "OptunaPruning"

    def on_fit_start(self, state: TrainState) -> None:
        """Record the trial's epoch budget (the forecast horizon of the epochpilot pruner)."""
        self.trial.set_user_attr(BUDGET_ATTR, int(state.max_epochs))

    def on_epoch_end(self, state: TrainState) -> None:
        """Report this epoch's value and prune if asked."""
        if not state.history:
            return
        monitor = self.monitor or state.monitor
        value = state.history[-1].get(monitor)
        value = float(value) if isinstance(value, (int, float)) else math.nan
        self.trial.report(value, int(state.epoch))
        if self.trial.should_prune():
            pruner = self.trial.study.pruner
            message = f"pruned at epoch {state.epoch}"
            if isinstance(pruner, EpochpilotPruner):
                decision = pruner.last_decision(self.trial.number)
                if decision is not None:
                    self.trial.set_user_attr("prune_reason", decision.reason)
                    message = f"{decision.reason}: {decision.message}"
            else:
                self.trial.set_user_attr("prune_reason", type(pruner).__name__)
            self.trial.set_user_attr("prune_message", message)
            self.trial.set_user_attr("pruned_epoch", int(state.epoch))
            raise optuna.TrialPruned(message)


# -- the config-driven objective -------------------------------------------------------------------------


def apply_params(spec: Any, params: Mapping[str, Any]) -> Any:
    """The job with the trial's settings: ``model.NAME`` goes to the model factory, the rest to [train]."""
    from epochpilot.job import ModelSpec, override

    model = {k[len("model.") :]: v for k, v in params.items() if k.startswith("model.")}
    train = {k: v for k, v in params.items() if not k.startswith("model.")}
    spec = override(spec, "train", **train)
    if model:
        spec = dataclasses.replace(
            spec, model=ModelSpec(spec.model.factory, {**spec.model.kwargs, **model})
        )
    return spec


class JobObjective:
    """Train the job with a trial's settings; the value is the best monitored validation value.

    Picklable (worker processes get a copy). Each trial writes ``<run_dir>/trials/trial-NNNN`` (history and
    summary, no checkpoints); its best epoch, epochs run and stop reason become trial attributes.
    """

    def __init__(self, spec: Any, run_dir: str | Path) -> None:
        self.spec = spec
        self.run_dir = Path(run_dir)
        self._data: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec, "run_dir": self.run_dir, "_data": None}

    @property
    def direction(self) -> str:
        """The study direction that matches the job's monitor mode."""
        return "maximize" if self.spec.train.mode == "max" else "minimize"

    def __call__(self, trial: optuna.Trial, params: Mapping[str, Any]) -> float:
        from epochpilot.pipeline import check_batch_size, job_model, prepare, trainer_kwargs
        from epochpilot.train import Trainer

        if self._data is None:
            self._data = prepare(self.spec)
        data = self._data
        spec = apply_params(self.spec, params)
        check_batch_size(spec, len(data.X_train))
        kwargs = trainer_kwargs(spec, len(data.X_train), data.classification)
        kwargs.update(
            run_dir=self.run_dir / "trials" / f"trial-{trial.number:04d}",
            overwrite=True,
            checkpoint_every=None,
            tensorboard=False,
            progress=False,
            callbacks=[PruningCallback(trial)],
        )
        result = Trainer(**kwargs).fit(
            job_model(spec, data.pre), (data.X_train, data.y_train), (data.X_val, data.y_val)
        )
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr("epochs_run", len(result.history))
        trial.set_user_attr("stop_reason", result.stop_reason.value)
        trial.set_user_attr("run_dir", str(result.run_dir))
        if result.best_value is None or not math.isfinite(result.best_value):
            raise optuna.TrialPruned(f"no finite {result.monitor}: {result.stop_message}")
        return float(result.best_value)


# -- storage, sampler, pruner ----------------------------------------------------------------------------


def _safe_url(url: str) -> str:
    """The URL with any password replaced by ***."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL that cannot be parsed is shown as given
        return url


def _postgres_driver(url: str) -> str:
    """``postgresql://`` means psycopg 3 to SQLAlchemy 2.1; fall back to psycopg2 when only it is installed."""
    import importlib.util

    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None:
        if importlib.util.find_spec("psycopg2") is not None:
            return "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


def open_storage(storage: Any, heartbeat_s: int | None = 10) -> optuna.storages.BaseStorage:
    """An Optuna RDB storage for ``storage`` (a URL), with connect timeouts and crash recovery.

    Trials send a heartbeat every ``heartbeat_s`` seconds; a trial silent for 3 heartbeats (its worker
    died) is marked FAIL and retried once with the same parameters. An unreachable database, a bad URL or a
    missing driver raise a one-line ValueError within ~5 s.
    """
    if isinstance(storage, optuna.storages.BaseStorage):
        return storage
    url = str(storage)
    connect: dict[str, Any] = {}
    if url.startswith("sqlite"):
        connect = {"timeout": 60}  # wait for the other workers' write locks instead of failing
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:" and not Path(path).parent.is_dir():
            raise ValueError(
                f"storage {url}: folder {Path(path).parent} does not exist: create it or use another path"
            )
    elif url.startswith(("postgresql", "mysql")):
        connect = {"connect_timeout": 5}
    shown = _safe_url(url)
    attempt = 0
    while True:
        attempt += 1
        try:
            return _rdb(_postgres_driver(url), connect, heartbeat_s)
        except ImportError as exc:
            raise ValueError(
                f"storage {shown}: its database driver is missing ({exc}); for PostgreSQL: "
                "pip install psycopg2-binary (or 'psycopg[binary]')"
            ) from None
        except Exception as exc:  # noqa: BLE001 - sqlalchemy/optuna raise many types for a bad database
            text = str(exc)
            if attempt < 4 and ("already exists" in text or "duplicate key" in text):
                # another worker is creating the same tables on a fresh database right now
                time.sleep(0.5 + random.random())
                continue
            first = " ".join(text.split("\n")[0].split())[:300]
            raise ValueError(
                f"storage {shown} cannot be opened ({type(exc).__name__}: {first}): check the URL, "
                "that the server is running and reachable, and the credentials"
            ) from None


def _rdb(url: str, connect: dict[str, Any], heartbeat_s: int | None) -> optuna.storages.RDBStorage:
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback
    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna (since 2.x)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs={"connect_args": connect} if connect else None,
            heartbeat_interval=heartbeat_s,
            grace_period=3 * heartbeat_s if heartbeat_s else None,
            heartbeat_stale_trial_callback=retry(max_retry=1) if heartbeat_s else None,
        )


def make_pruner(pruner: Any) -> optuna.pruners.BasePruner:
    """A pruner from its name (epochpilot | median | hyperband | none) or an Optuna pruner instance."""
    if isinstance(pruner, optuna.pruners.BasePruner):
        return pruner
    if pruner is None or pruner == "none":
        return optuna.pruners.NopPruner()
    if pruner == "epochpilot":
        return EpochpilotPruner()
    if pruner == "median":
        return optuna.pruners.MedianPruner()
    if pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    raise ValueError(f"pruner={pruner!r} is unknown: use one of {', '.join(PRUNERS)}")


def make_sampler(sampler: Any, seed: int | None) -> optuna.samplers.BaseSampler:
    """A sampler from its name (tpe | random) or an Optuna sampler instance."""
    if isinstance(sampler, optuna.samplers.BaseSampler):
        return sampler
    if sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"sampler={sampler!r} is unknown: use one of {', '.join(SAMPLERS)}")


# -- the study -------------------------------------------------------------------------------------------

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def _finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def _wrap(objective: Callable[..., float], params: dict[str, Param] | None) -> Callable:
    if params is None:
        return objective
    return _Bound(objective, params)


class _Bound:
    """``objective(trial, params)`` as an Optuna objective (picklable when ``objective`` is)."""

    def __init__(self, objective: Callable[..., float], params: dict[str, Param]) -> None:
        self.objective = objective
        self.params = params

    def __call__(self, trial: optuna.Trial) -> float:
        values = {name: p.suggest(trial) for name, p in self.params.items()}
        return self.objective(trial, values)


def _optimize(job: dict[str, Any]) -> int:
    """One worker: load the shared study and run trials until ``n_trials`` have finished."""
    if job.get("threads"):
        import torch

        torch.set_num_threads(job["threads"])
    storage = open_storage(job["storage"], job["heartbeat_s"])
    study = optuna.load_study(
        study_name=job["study_name"],
        storage=storage,
        sampler=make_sampler(job["sampler"], job["seed"]),
        pruner=make_pruner(job["pruner"]),
    )
    left = job["n_trials"] - _finished(study)
    if left > 0:
        study.optimize(
            _wrap(job["objective"], job["params"]),
            n_trials=left,
            timeout=job["timeout"],
            callbacks=[optuna.study.MaxTrialsCallback(job["n_trials"], states=FINISHED)],
            catch=job["catch"],
        )
    return _finished(study)


def tune(
    objective_or_config: Any,
    space: Mapping[str, Any] | None = None,
    *,
    n_trials: int,
    storage: Any = None,
    pruner: Any = "epochpilot",
    sampler: Any = "tpe",
    workers: int = 1,
    study_name: str = "epochpilot",
    run_dir: str | Path = "runs/tune",
    direction: str | None = None,
    seed: int | None = 0,
    timeout: float | None = None,
    heartbeat_s: int | None = 10,
    catch: tuple[type[Exception], ...] = (),
) -> optuna.Study:
    """Run (or resume) a study until ``n_trials`` trials have finished (completed or pruned); returns it.

    ``objective_or_config``: a job TOML path or ``JobSpec`` (``space`` names its [train] settings, e.g.
    ``lr``, ``batch_size``, ``warmup``, ``weight_decay``, ``schedule``, ``max_epochs``, or ``model.NAME``), or
    ``objective(trial, params) -> float`` (``objective(trial)`` when ``space`` is None). ``storage`` defaults to
    ``sqlite:///<run_dir>/study.db``; any SQLAlchemy URL works (PostgreSQL for workers on many machines). A
    re-run with the same study name resumes: trials already finished count towards ``n_trials``. With
    ``workers > 1``, that many 'spawn' processes share the study (the objective must be picklable); up to
    ``workers - 1`` extra trials may finish while the last ones run. ``seed`` seeds the sampler (worker i
    uses seed + i). A study stored with a different space or direction is refused.
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ValueError(f"n_trials must be an int >= 1, got {n_trials!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    make_pruner(pruner), make_sampler(sampler, seed)  # validate names early
    run_dir = Path(run_dir)
    if (
        isinstance(objective_or_config, (str, Path))
        or type(objective_or_config).__name__ == "JobSpec"
    ):
        from epochpilot.job import load_spec

        spec = (
            load_spec(objective_or_config)
            if isinstance(objective_or_config, (str, Path))
            else objective_or_config
        )
        if space is None:
            raise ValueError(
                "a config-driven study needs a space, e.g. {'lr': ('log', 1e-4, 1e-1)}"
            )
        params: dict[str, Param] | None = parse_space(space, job_parameters())
        objective: Callable[..., float] = JobObjective(spec, run_dir)
        direction = direction or objective.direction  # type: ignore[attr-defined]
    elif callable(objective_or_config):
        objective = objective_or_config
        params = parse_space(space) if space is not None else None
    else:
        raise TypeError(
            "objective_or_config must be a job TOML path, a JobSpec or a callable objective(trial, params)"
        )
    direction = direction or "minimize"
    if direction not in ("minimize", "maximize"):
        raise ValueError(f"direction={direction!r}: use 'minimize' or 'maximize'")
    if storage is None:
        run_dir.mkdir(parents=True, exist_ok=True)
        storage = f"sqlite:///{run_dir.resolve() / 'study.db'}"
    if workers > 1 and not isinstance(storage, str):
        raise ValueError("workers > 1 needs storage as a URL string (each worker opens its own)")
    rdb = open_storage(storage, heartbeat_s)
    study = optuna.create_study(
        storage=rdb,
        study_name=study_name,
        direction=direction,
        load_if_exists=True,
        sampler=make_sampler(sampler, seed),
        pruner=make_pruner(pruner),
    )
    _check_study(study, params, direction, storage)
    job = {
        "storage": storage if isinstance(storage, str) else rdb,
        "heartbeat_s": heartbeat_s,
        "study_name": study_name,
        "sampler": sampler,
        "pruner": pruner,
        "seed": seed,
        "n_trials": n_trials,
        "timeout": timeout,
        "catch": catch,
        "objective": objective,
        "params": params,
        "threads": 0,
    }
    if workers == 1:
        _optimize(job)
    else:
        threads = max(1, (os.cpu_count() or 1) // workers)
        jobs = [
            dict(job, seed=None if seed is None else seed + i, threads=threads)
            for i in range(workers)
        ]
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            list(pool.map(_optimize, jobs))
    return optuna.load_study(study_name=study_name, storage=rdb)


def _check_study(
    study: optuna.Study, params: dict[str, Param] | None, direction: str, storage: Any
) -> None:
    """Refuse a stored study with another direction or space; record the space on a new study."""
    stored_dir = (
        "maximize" if study.direction == optuna.study.StudyDirection.MAXIMIZE else "minimize"
    )
    where = f"study {study.study_name!r} in {_safe_url(str(storage))}"
    if stored_dir != direction:
        raise ValueError(
            f"{where} was created to {stored_dir}, not {direction}: use another study_name"
        )
    key = space_key(params) if params is not None else None
    stored = study.user_attrs.get(SPACE_ATTR)
    if stored is None:
        if key is not None:
            study.set_user_attr(SPACE_ATTR, key)
    elif key is not None and stored != key:
        raise ValueError(
            f"{where} was created with a different search space (stored {stored}, given {key}): "
            "use another study_name or the stored space"
        )


class _CallableModule(types.ModuleType):
    """``epochpilot.tune`` is both this module and the ``tune`` function exported by the package: once the
    submodule is imported, Python binds the package attribute ``tune`` to the module, so calling the module
    calls the function (``from epochpilot import tune; tune(...)`` works in any import order)."""

    def __call__(self, *args: Any, **kwargs: Any) -> optuna.Study:
        return tune(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

"""Tune hyperparameters with Optuna: a declared search space, per-epoch pruning with the stop policies, a
standard study database that resumes after a crash and is shared by worker processes or machines.

``tune(objective_or_config, space, n_trials=...)`` takes either a job (a TOML path or a
:class:`~epochpilot.jobs.spec.JobSpec`: each trial trains the job with the trial's settings) or a function
``objective(trial, params) -> float`` that trains however it likes and attaches
``PruningCallback(trial)`` to its :class:`~epochpilot.train.Trainer` to report and prune per epoch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import optuna

from epochpilot.errors import ConfigError
from epochpilot.select.tune.cv import KFoldJobObjective, check_cv, warn_if_undiscriminating
from epochpilot.select.tune.pruner import BUDGET_ATTR, EpochpilotPruner, pruned, record_lr
from epochpilot.select.tune.space import (
    Param,
    apply_params,
    job_parameters,
    parse_space,
    real_params,
)
from epochpilot.select.tune.storage import open_storage, safe_url
from epochpilot.select.tune.study import (
    PRUNERS,
    SAMPLERS,
    SETTINGS_ATTR,
    SPACE_ATTR,
    TunedStudy,
    check_resume,
    make_pruner,
    make_sampler,
    open_study,
    study_settings,
)
from epochpilot.select.tune.workers import optimize, run_workers
from epochpilot.train.events import Callback, TrainState

__all__ = [
    "PRUNERS",
    "SAMPLERS",
    "SETTINGS_ATTR",
    "SPACE_ATTR",
    "EpochpilotPruner",
    "JobObjective",
    "Param",
    "PruningCallback",
    "TunedStudy",
    "make_pruner",
    "make_sampler",
    "open_storage",
    "parse_space",
    "real_params",
    "tune",
]


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
        record_lr(self.trial, int(state.epoch), state.history[-1].get("lr"))
        self.trial.report(value, int(state.epoch))
        if self.trial.should_prune():
            raise pruned(self.trial, int(state.epoch))


# -- the config-driven objective -------------------------------------------------------------------------


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

    def prepare(self) -> Any:
        """Read and check the job's data (once per process); raises its DataError or ConfigError."""
        from epochpilot.jobs.pipeline import prepare

        if self._data is None:
            self._data = prepare(self.spec)
        return self._data

    def __call__(self, trial: optuna.Trial, params: Mapping[str, Any]) -> float:
        from epochpilot.jobs.pipeline import check_batch_size, job_model, trainer_kwargs
        from epochpilot.train import Trainer

        data = self.prepare()
        spec = apply_params(self.spec, params)
        check_batch_size(spec, len(data.X_train))
        kwargs = trainer_kwargs(spec, len(data.X_train), data.classification)
        kwargs.update(
            run_dir=self.run_dir / "trials" / f"trial-{trial.number:04d}",
            overwrite=True,
            checkpoint_every=None,
            tensorboard=False,
            progress=False,
            callbacks=[PruningCallback(trial, monitor=spec.train.monitor)],
            report=False,  # one report for the study, not one per trial
        )
        result = Trainer(**kwargs).fit(
            job_model(spec, data.pre), (data.X_train, data.y_train), (data.X_val, data.y_val)
        )
        # the job's monitor, best by its mode (the same as the trainer's unless stopper = "none")
        monitor, sign = spec.train.monitor, 1.0 if spec.train.mode == "min" else -1.0
        scored = [
            (sign * float(r[monitor]), int(r["epoch"]))
            for r in result.history
            if isinstance(r.get(monitor), (int, float)) and math.isfinite(r[monitor])
        ]
        trial.set_user_attr("epochs_run", len(result.history))
        trial.set_user_attr("stop_reason", result.stop_reason.value)
        trial.set_user_attr("run_dir", str(result.run_dir))
        if not scored:
            raise optuna.TrialPruned(f"no finite {monitor}: {result.stop_message}")
        best, epoch = min(scored)
        trial.set_user_attr("best_epoch", epoch)
        warn_if_undiscriminating(trial, sign * best, len(data.X_val), monitor, spec.train.mode)
        return sign * best


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
    resume: bool | str = False,
    overwrite: bool = False,
    cv: int | None = None,
) -> TunedStudy:
    """Run a study until ``n_trials`` trials have finished (completed or pruned); returns it.

    ``objective_or_config``: a job TOML path or ``JobSpec`` (``space`` names its [train] settings, e.g.
    ``lr``, ``batch_size``, ``warmup``, ``weight_decay``, ``schedule``, ``max_epochs``, or ``model.NAME``), or
    ``objective(trial, params) -> float`` (``objective(trial)`` when ``space`` is None). ``storage`` defaults to
    ``sqlite:///<run_dir>/study.db``; any SQLAlchemy URL works (PostgreSQL for workers on many machines).

    A study that already holds trials is refused unless ``resume='auto'`` (continue it if it ran with the same
    settings: direction, space, objective or job, pruner, sampler and seed; trials already finished count
    towards ``n_trials``), ``resume=True`` (continue it even with another pruner, sampler, objective or job
    setting) or ``overwrite=True`` (delete it and start over); another direction or space is always refused.
    Each refusal is one :class:`~epochpilot.errors.ConfigError` line naming the differences and the fixes.

    With ``workers > 1``, that many 'spawn' processes share the study (the objective must be picklable); up to
    ``workers - 1`` extra trials may finish while the last ones run; a worker that dies (killed for memory)
    costs its trial, marked failed and retried once, and is replaced (see :mod:`epochpilot.select.tune.workers`).
    ``seed`` seeds the sampler (worker i uses seed + i). The returned study's ``pruner`` and ``sampler`` are
    the ones that ran, and its ``best_params`` hold list choices as lists.

    ``cv=k`` (job objectives only) scores each trial by k-fold cross-validation over the job's training and
    validation rows: the value is the mean of the folds' best monitored values, the mean of the folds' bests
    up to each epoch is reported for pruning, and the trial's ``cv_epoch`` attribute is the epoch to refit for (see
    :mod:`epochpilot.select.tune.cv`). Without ``cv``, a validation split too small to separate trials is named in
    one warning line per study.
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ValueError(f"n_trials must be an int >= 1, got {n_trials!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    check_resume(resume, overwrite)
    cv = check_cv(cv)
    pruner_used, sampler_used = make_pruner(pruner), make_sampler(sampler, seed)
    run_dir = Path(run_dir)
    spec = None
    if (
        isinstance(objective_or_config, (str, Path))
        or type(objective_or_config).__name__ == "JobSpec"
    ):
        from epochpilot.jobs.spec import load_spec

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
        job_objective: Any = (
            JobObjective(spec, run_dir) if cv is None else KFoldJobObjective(spec, run_dir, cv)
        )
        # the data is read and checked once, here, before the study exists: a bad CSV is one DataError,
        # not a failed trial (and Optuna's logged traceback) per trial
        job_objective.prepare()
        objective: Callable[..., float] = job_objective
        direction = direction or job_objective.direction
    elif callable(objective_or_config):
        if cv is not None:
            raise ConfigError(
                f"cv={cv} works with a job (TOML path or JobSpec); a function objective does its own folds "
                "(see epochpilot.kfold_epochs): leave cv out"
            )
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
        if (
            resume is True and not (run_dir / "study.db").is_file()
        ):  # refused before any file is made
            raise ConfigError(
                f"resume=True but there is no study in {run_dir / 'study.db'}: use resume='auto' or False"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        storage = f"sqlite:///{run_dir.resolve() / 'study.db'}"
    if workers > 1 and not isinstance(storage, str):
        raise ValueError("workers > 1 needs storage as a URL string (each worker opens its own)")
    rdb = open_storage(storage, heartbeat_s)
    shown = safe_url(storage) if isinstance(storage, str) else type(storage).__name__
    settings = study_settings(
        direction=direction,
        params=params,
        objective=objective,
        spec=spec,
        pruner=pruner_used,
        sampler=sampler_used,
        seed=None if isinstance(sampler, optuna.samplers.BaseSampler) else seed,
    )
    if spec is not None:  # k-fold and validation-split studies score trials differently
        settings["cv"] = cv
    study = open_study(
        rdb,
        study_name=study_name,
        direction=direction,
        settings=settings,
        resume=resume,
        overwrite=overwrite,
        where=f"study {study_name!r} in {shown}",
        sampler=sampler_used,
        pruner=pruner_used,
    )
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
        "verbosity": optuna.logging.get_verbosity(),
    }
    if workers == 1:
        optimize(job, study)
    else:
        threads = max(1, (os.cpu_count() or 1) // workers)
        run_workers(study, dict(job, threads=threads), workers, seed)
    return TunedStudy(study_name, rdb, sampler_used, pruner_used, params)

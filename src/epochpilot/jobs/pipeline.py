"""The main job end to end: table -> split -> preprocess -> model -> fit -> saved predictor -> report.

Used by ``epochpilot demo`` and ``epochpilot train``; ``load(RUN_DIR)`` gives the predictor back from Python.
A run directory keeps everything a prediction needs besides the weights in plain JSON (``preprocessor.json``,
``model.json``); the weights are ``model.pt``, a plain tensor dict loaded with ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from epochpilot._files import atomic_write_text
from epochpilot.core import budget
from epochpilot.core.schedules.factory import JobSchedule
from epochpilot.core.scores import json_safe, loss_units, target_scale
from epochpilot.data.table import Preprocessor, Table, load_builtin, read_csv
from epochpilot.errors import DataError
from epochpilot.jobs.models import build_model
from epochpilot.jobs.predictor import Predictor, load
from epochpilot.jobs.spec import JobSpec
from epochpilot.train.rundir import check_for_command as check_run_dir
from epochpilot.train.rundir import check_space, claimed_run_dir, is_run_dir
from epochpilot.train.rundir import claim_run_dir as prepare_run_dir

__all__ = [
    "JobResult",
    "JobSchedule",
    "Predictor",
    "Prepared",
    "load",
    "check_run_dir",
    "claimed_run_dir",
    "prepare",
    "prepare_run_dir",
    "plan_train",
    "run_job",
    "save_predictor",
    "trainer_kwargs",
]


@dataclass
class JobResult:
    """What a finished job produced: the trainer's result, the kept model's scores on the test and validation
    rows (target units for regression: see :mod:`epochpilot.core.scores`) and the report path."""

    fit: Any
    run_dir: Path
    test_metrics: dict[str, float]
    report: Path | None
    budget_text: str
    val_metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    task: str | None = None
    #: regression: the target's scaler, ``{"target": column, "mean": ..., "std": ...}`` (the loss's units)
    target_scale: dict[str, Any] | None = None


def load_table(spec: JobSpec) -> Table:
    """The job's rows: a built-in set or the user's CSV."""
    data = spec.data
    if data.csv:
        return read_csv(data.csv, data.target)
    return load_builtin(data.builtin or "digits", n_samples=data.n_samples, seed=data.seed)


def split(
    table: Table, spec: JobSpec, task: str
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """Train / validation / optional test frames, stratified by class for classification."""
    from sklearn.model_selection import train_test_split

    frame, data = table.frame, spec.data
    strat = frame[table.target] if task == "classification" else None
    if strat is not None and strat.value_counts().min() < 2:
        rare = strat.value_counts().idxmin()
        raise DataError(
            f"class {rare!r} has a single row: stratified splitting needs >= 2 rows per class"
        )
    test = None
    if data.test_fraction > 0:
        frame, test = train_test_split(
            frame, test_size=data.test_fraction, random_state=data.seed, stratify=strat
        )
        strat = frame[table.target] if strat is not None else None
    val_share = data.val_fraction / (1.0 - data.test_fraction)
    try:
        train, val = train_test_split(
            frame, test_size=val_share, random_state=data.seed, stratify=strat
        )
    except ValueError as exc:
        raise DataError(f"cannot split {len(frame)} rows into train/validation: {exc}") from None
    return train, val, test


def _stopper(spec: JobSpec) -> Any:
    from epochpilot.core.stopping import EarlyStopping

    train = spec.train
    if train.stopper == "none":
        return False
    if train.stopper == "auto":
        from epochpilot.core.stopping import default_stopper

        return default_stopper(train.monitor, train.mode)
    if train.stopper == "forecast":
        from epochpilot.core.stopping import auto_stopper

        train_monitor = "train_loss" if train.monitor != "train_loss" else None
        return auto_stopper(
            train.monitor,
            train.mode,
            budget=train.max_epochs,
            train_monitor=train_monitor,
            max_extension=train.extend,  # asks for more epochs only when [train] extend allows them
        )
    return EarlyStopping(
        train.monitor,
        train.mode,
        patience=train.patience,
        min_delta=train.min_delta or 0.0,
        min_delta_mode=train.min_delta_mode,
    )


@dataclass
class Prepared:
    """A job's data ready for the trainer: the fitted preprocessing and the train/validation arrays."""

    pre: Preprocessor
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    test: pd.DataFrame | None

    @property
    def classification(self) -> bool:
        """True for a classification task (integer labels, cross-entropy)."""
        return self.pre.task == "classification"


def prepare(spec: JobSpec) -> Prepared:
    """Load, split and preprocess the job's rows (preprocessing fitted on the training split only)."""
    table = load_table(spec)
    pre = Preprocessor.fit(table, task=spec.data.task, impute=spec.data.impute)
    train_df, val_df, test_df = split(table, spec, pre.task)
    pre = Preprocessor.fit(Table(train_df, table.target), task=pre.task, impute=spec.data.impute)
    X_tr, y_tr = pre.transform(train_df)
    X_va, y_va = pre.transform(val_df)
    y_tr, y_va = as_targets(y_tr, pre.task), as_targets(y_va, pre.task)
    return Prepared(pre, X_tr, y_tr, X_va, y_va, test_df)


def as_targets(y: np.ndarray, task: str) -> np.ndarray:
    """Labels as the trainer wants them: int64 classes, or float32 (n, 1) regression targets."""
    if task == "classification":
        return y.astype(np.int64)
    return y.reshape(-1, 1).astype(np.float32)


def plan_train(spec: JobSpec, n_train: int, n_effective: int | None = None) -> tuple[JobSpec, Any]:
    """Fill the ``max_epochs`` / ``patience`` / ``warmup`` the job leaves out from :func:`epochpilot.core.plan.plan`
    (sized on the effective training rows); returns the resolved spec and the plan (None: nothing was left out)."""
    t = spec.train
    if None not in (t.max_epochs, t.patience, t.warmup):
        if t.min_delta is None:
            spec = dataclasses.replace(spec, train=dataclasses.replace(t, min_delta=0.0))
        return spec, None
    from epochpilot.core.plan import DataProfile, plan

    profile = DataProfile(n_samples=n_train, n_effective=n_effective or n_train)
    batch, accumulation = t.update_batch()  # "auto": updates counted with the effective batch
    p = plan(profile, batch_size=batch, accumulation=accumulation, lr=t.scaled_lr())
    filled = dataclasses.replace(
        t,
        max_epochs=t.max_epochs or p.max_epochs,
        patience=p.patience if t.patience is None else t.patience,
        warmup=float(p.warmup_steps) if t.warmup is None else t.warmup,
        # the plan's budgets were calibrated with improvements of at least 0.5% (relative)
        min_delta=0.005 if t.min_delta is None else t.min_delta,
        min_delta_mode="rel" if t.min_delta is None else t.min_delta_mode,
    )
    return dataclasses.replace(spec, train=filled), p


def effective_rows(X: np.ndarray, y: np.ndarray) -> int:
    """Training rows left after exact and near-duplicate removal (what the plan budgets for)."""
    from epochpilot.data.audit.report import audit

    return int(audit((X, y)).effective_samples)


def trainer_kwargs(spec: JobSpec, n_train: int, classification: bool) -> dict[str, Any]:
    """``Trainer`` settings for the job (no run directory set); the schedule is a factory sized by the trainer."""
    spec, _ = plan_train(spec, n_train)
    t = spec.train
    return dict(
        loss_fn="cross_entropy" if classification else "mse",
        optimizer=t.optimizer,
        lr=t.lr,
        weight_decay=t.weight_decay,
        schedule=JobSchedule(t.schedule, float(t.lr), float(t.warmup)),
        stopper=_stopper(spec),
        max_epochs=t.max_epochs,
        max_steps=t.max_steps,
        max_time=t.max_time,
        batch_size=t.batch_size,
        accumulation=t.update_batch()[1],  # with effective_batch: effective / batch ("auto": 1)
        **t.batch_settings(),
        clip_grad_norm=t.clip_grad_norm,
        precision=t.precision,
        device=t.device,
        metrics={"accuracy": "accuracy"} if classification else None,
        seed=t.seed,
        deterministic=t.deterministic,
        checkpoint_every=t.checkpoint_every,
        keep_last=t.keep_last,
        progress=t.progress,
        tensorboard=t.tensorboard,
        on_nan=t.on_nan,
        cooldown=None if t.cooldown == "none" else t.cooldown,
        cooldown_fraction=t.cooldown_fraction,
        extend=t.extend or None,
    )


def job_model(spec: JobSpec, pre: Preprocessor) -> torch.nn.Module:
    """A fresh model from the job's factory, sized for the preprocessed features and outputs; its initial
    weights come from the job's seed, so the same job trains the same model."""
    torch.manual_seed(spec.train.seed)
    return build_model(
        spec.model.factory, len(pre.features), pre.n_outputs, spec.model.kwargs, _search(spec)
    )


def check_batch_size(spec: JobSpec, n_train: int) -> None:
    """Refuse a batch (or an effective batch) larger than the training split, naming a size that fits."""
    t, fits = spec.train, max(1, n_train // 4)
    if t.effective_batch is not None and t.effective_batch > n_train:
        raise DataError(
            f"effective_batch {t.effective_batch} > {n_train} training rows: lower --effective-batch "
            f"(e.g. {fits})"
        )
    if t.batch_size != "auto" and t.batch_size > n_train:
        raise DataError(
            f"batch_size {t.batch_size} > {n_train} training rows: lower --batch-size (e.g. {fits})"
        )


def run_job(
    spec: JobSpec, *, run_dir: Path, echo: Any = print, write_report: bool = True
) -> JobResult:
    """Train the job's model on its data, save the predictor and the report; returns what happened."""
    data = prepare(spec)
    pre, X_tr = data.pre, data.X_train
    check_batch_size(spec, len(X_tr))
    spec, plan = plan_train(spec, len(X_tr), effective_rows(X_tr, data.y_train))
    t = spec.train
    if plan is not None:
        echo(
            f"plan: max_epochs={t.max_epochs}, patience={t.patience}, warmup={int(t.warmup)} steps "
            f"(from {plan.n_effective} effective rows; "
            f"set them to override)"
        )
    batch, accumulation = t.update_batch()
    text = budget.describe(len(X_tr), batch, epochs=t.max_epochs, accumulation=accumulation)
    if t.batch_size == "auto":
        text += " (batch_size 'auto': the micro-batch is searched)"
    limits = [f"{k}={v}" for k, v in (("max_steps", t.max_steps), ("max_time", t.max_time)) if v]
    if (
        limits
    ):  # the trainer turns these into the epoch budget; the line above is the first estimate
        text += f" (capped by {', '.join(limits)})"
    echo(f"budget: {text}")
    kwargs = trainer_kwargs(spec, len(X_tr), data.classification)
    model = job_model(spec, pre)
    from epochpilot.train import Trainer

    trainer = Trainer(
        **kwargs,
        run_dir=run_dir,
        resume="auto" if spec.run.resume else False,
        overwrite=spec.run.overwrite,
        report=False,  # the job writes its report itself, with the test scores
    )
    resuming = spec.run.resume and is_run_dir(run_dir) and (run_dir / "job.toml").is_file()
    if resuming:  # continuing rewrites the run's files: room for them, before any is touched
        check_space(run_dir)
    # everything is validated: only now is the run directory written (an old run kept until this one is safe)
    with claimed_run_dir(run_dir, overwrite=spec.run.overwrite, resume=spec.run.resume):
        if not resuming:  # first, so that a run stopped at any point can be resumed
            _write_job(run_dir, spec)
        result = trainer.fit(model, (X_tr, data.y_train), (data.X_val, data.y_val))
        if resuming:  # once fit accepted the run (same config): a refused resume changes nothing
            _write_job(run_dir, spec)
        run_dir = Path(result.run_dir or run_dir)
        save_predictor(run_dir, spec, pre, result.model)
    predictor = Predictor(run_dir, pre, result.model)
    val_metrics = predictor.score(data.X_val, data.y_val)
    test_metrics: dict[str, float] = {}
    if data.test is not None:
        test_metrics = predictor.evaluate(data.test)
    scale = target_scale(pre.task, pre.target, pre.y_mean, pre.y_scale)
    extra: dict[str, Any] = {
        "val_metrics": json_safe(val_metrics),
        "test_metrics": json_safe(test_metrics),
        "task": pre.task,
        "budget": text,
    }
    if scale is not None:  # what the losses are measured in
        extra.update(target_scale=scale, loss_units=loss_units(scale))
    if plan is not None:
        extra["plan"] = plan.to_dict()
    _update_summary(run_dir, extra)
    report = None
    if write_report:
        from epochpilot.report import write_report as _write

        report = _write(run_dir)
    return JobResult(result, run_dir, test_metrics, report, text, val_metrics, pre.task, scale)


def _search(spec: JobSpec) -> list[Path]:
    """Folders where a user's model module may live: the job file's folder and the working directory."""
    folders = [Path.cwd()]
    if spec.source not in ("defaults", "demo") and Path(spec.source).exists():
        folders.insert(0, Path(spec.source).parent)
    return folders


def _write_job(run_dir: Path, spec: JobSpec) -> None:
    """Save the resolved job as job.toml (what ``epochpilot resume`` re-runs), atomically. ``resume`` and
    ``overwrite`` are what one command did, not part of the job: saved off, so resuming leaves the file as
    it was (it is not rewritten when its text is the same)."""
    from epochpilot.train.config import to_toml

    run = dataclasses.replace(spec.run, resume=False, overwrite=False)
    text = to_toml(dataclasses.replace(spec, run=run).to_tables())
    path = run_dir / "job.toml"
    with contextlib.suppress(OSError, UnicodeDecodeError):
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            return
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def save_predictor(run_dir: Path, spec: JobSpec, pre: Preprocessor, model: torch.nn.Module) -> None:
    """Write what a prediction needs besides the job (``preprocessor.json``, ``model.json``, ``model.pt``):
    all three to temporary names first, renamed only once all are written, so a full disk changes none."""
    info = {
        "factory": spec.model.factory,
        "search": [str(p.resolve()) for p in _search(spec)],
        "kwargs": spec.model.kwargs,
        "n_features": len(pre.features),
        "n_outputs": pre.n_outputs,
    }
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    staged: list[tuple[Path, Path]] = []
    try:
        for name, write in (
            ("preprocessor.json", pre.to_json),
            (
                "model.json",
                lambda tmp: tmp.write_text(json.dumps(info, indent=2), encoding="utf-8"),
            ),
            ("model.pt", lambda tmp: tmp.write_bytes(buf.getvalue())),
        ):
            tmp = run_dir / f".{name}.{os.getpid()}.tmp"
            staged.append((tmp, run_dir / name))
            write(tmp)
        for tmp, target in staged:
            os.replace(tmp, target)
    finally:
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                tmp.unlink()


def _update_summary(run_dir: Path, extra: dict[str, Any]) -> None:
    path = run_dir / "summary.json"
    summary = json.loads(path.read_text()) if path.exists() else {}
    summary.update(extra)
    atomic_write_text(path, json.dumps(summary, indent=2, default=str))

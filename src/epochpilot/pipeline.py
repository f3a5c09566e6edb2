"""The main job end to end: table -> split -> preprocess -> model -> fit -> saved predictor -> report.

Used by ``epochpilot demo`` and ``epochpilot train``; ``load(RUN_DIR)`` gives the predictor back from Python.
A run directory keeps everything a prediction needs besides the weights in plain JSON (``preprocessor.json``,
``model.json``); the weights are ``model.pt``, a plain tensor dict loaded with ``weights_only=True``.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from epochpilot import budget
from epochpilot.data import Preprocessor, Table, load_builtin, read_csv
from epochpilot.errors import ConfigError, DataError
from epochpilot.job import JobSpec
from epochpilot.models import build_model

__all__ = [
    "JobResult",
    "JobSchedule",
    "Predictor",
    "Prepared",
    "load",
    "prepare",
    "prepare_run_dir",
    "run_job",
    "trainer_kwargs",
]

PREDICTOR_FILES = ("preprocessor.json", "model.json", "model.pt")


@dataclass
class JobResult:
    """What a finished job produced: the trainer's result plus test metrics and the report path."""

    fit: Any
    run_dir: Path
    test_metrics: dict[str, float]
    report: Path | None
    budget_text: str


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


def prepare_run_dir(path: Path, *, overwrite: bool, resume: bool) -> None:
    """Refuse an existing run directory unless resuming or overwriting; never touch it otherwise."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"run directory {path} is a file: choose another --run-dir")
    if path.exists() and any(path.iterdir()) and not (overwrite or resume):
        raise FileExistsError(
            f"run directory {path} already holds a run: pass --resume to continue it or --overwrite to replace it"
        )
    if path.exists() and overwrite and not resume:
        shutil.rmtree(path)


def _stopper(spec: JobSpec) -> Any:
    from epochpilot.stopping import EarlyStopping

    train = spec.train
    if train.stopper == "none":
        return False
    if train.stopper == "auto":
        try:
            from epochpilot.stopping import auto_stopper
        except ImportError:
            pass
        else:
            return auto_stopper(train.monitor, train.mode, budget=train.max_epochs)
    return EarlyStopping(
        train.monitor, train.mode, patience=train.patience, min_delta=train.min_delta
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


@dataclass(frozen=True)
class JobSchedule:
    """The job's schedule as a factory ``total_steps -> schedule``: the trainer sizes it to its budget.

    ``warmup`` < 1 is a fraction of ``total_steps`` (the whole run, warmup included), else steps. With
    ``max_time`` the first epoch runs under the first estimate's schedule (its warmup counted there).
    """

    name: str
    lr: float
    warmup: float

    def __call__(self, total_steps: int) -> Any:
        from epochpilot.schedules import parse

        steps = int(total_steps)
        warmup = int(round(self.warmup * steps)) if self.warmup < 1 else int(self.warmup)
        warmup_steps = min(warmup, steps - 1) if "warmup" in self.name else None
        return parse(self.name, lr=self.lr, total_steps=steps, warmup_steps=warmup_steps)


def trainer_kwargs(spec: JobSpec, n_train: int, classification: bool) -> dict[str, Any]:
    """``Trainer`` settings for the job (no run directory set); the schedule is a factory sized by the trainer."""
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
        accumulation=t.accumulation,
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
    )


def job_model(spec: JobSpec, pre: Preprocessor) -> torch.nn.Module:
    """A fresh model from the job's factory, sized for the preprocessed features and outputs."""
    return build_model(
        spec.model.factory, len(pre.features), pre.n_outputs, spec.model.kwargs, _search(spec)
    )


def check_batch_size(spec: JobSpec, n_train: int) -> None:
    """Refuse a batch larger than the training split, naming a size that fits."""
    if spec.train.batch_size > n_train:
        raise DataError(
            f"batch_size {spec.train.batch_size} > {n_train} training rows: lower --batch-size (e.g. {max(1, n_train // 4)})"
        )


def run_job(
    spec: JobSpec, *, run_dir: Path, echo: Any = print, write_report: bool = True
) -> JobResult:
    """Train the job's model on its data, save the predictor and the report; returns what happened."""
    data = prepare(spec)
    pre, X_tr = data.pre, data.X_train
    t = spec.train
    check_batch_size(spec, len(X_tr))
    text = budget.describe(
        len(X_tr), t.batch_size, epochs=t.max_epochs, accumulation=t.accumulation
    )
    echo(f"budget: {text}")
    kwargs = trainer_kwargs(spec, len(X_tr), data.classification)
    model = job_model(spec, pre)
    _write_job(run_dir, spec)
    from epochpilot.train import Trainer

    trainer = Trainer(
        **kwargs,
        run_dir=run_dir,
        resume="auto" if spec.run.resume else False,
        overwrite=spec.run.overwrite,
    )
    result = trainer.fit(model, (X_tr, data.y_train), (data.X_val, data.y_val))
    run_dir = Path(result.run_dir or run_dir)
    _save_predictor(run_dir, spec, pre, result.model)
    test_metrics: dict[str, float] = {}
    if data.test is not None:
        test_metrics = Predictor(run_dir, pre, result.model).evaluate(data.test)
    _update_summary(run_dir, {"test_metrics": test_metrics, "task": pre.task, "budget": text})
    report = None
    if write_report:
        from epochpilot.report import write_report as _write

        report = _write(run_dir)
    return JobResult(result, run_dir, test_metrics, report, text)


def _search(spec: JobSpec) -> list[Path]:
    """Folders where a user's model module may live: the job file's folder and the working directory."""
    folders = [Path.cwd()]
    if spec.source not in ("defaults", "demo") and Path(spec.source).exists():
        folders.insert(0, Path(spec.source).parent)
    return folders


def _write_job(run_dir: Path, spec: JobSpec) -> None:
    """Save the resolved job as job.toml (what ``epochpilot resume`` re-runs), atomically."""
    from epochpilot.train.config import to_toml

    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / "job.toml.tmp"
    tmp.write_text(to_toml(spec.to_tables()))
    tmp.replace(run_dir / "job.toml")


def _save_predictor(
    run_dir: Path, spec: JobSpec, pre: Preprocessor, model: torch.nn.Module
) -> None:
    pre.to_json(run_dir / "preprocessor.json")
    info = {
        "factory": spec.model.factory,
        "search": [str(p.resolve()) for p in _search(spec)],
        "kwargs": spec.model.kwargs,
        "n_features": len(pre.features),
        "n_outputs": pre.n_outputs,
    }
    (run_dir / "model.json").write_text(json.dumps(info, indent=2))
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    tmp = run_dir / "model.pt.tmp"
    torch.save(state, tmp)
    tmp.replace(run_dir / "model.pt")


def _update_summary(run_dir: Path, extra: dict[str, Any]) -> None:
    path = run_dir / "summary.json"
    summary = json.loads(path.read_text()) if path.exists() else {}
    summary.update(extra)
    path.write_text(json.dumps(summary, indent=2, default=str))


class Predictor:
    """A trained model with its preprocessing: ``predict`` and ``evaluate`` on new rows."""

    def __init__(self, run_dir: Path, pre: Preprocessor, model: torch.nn.Module) -> None:
        self.run_dir = Path(run_dir)
        self.preprocessor = pre
        self.model = model.eval().cpu()

    def _frame(self, data: pd.DataFrame | str | Path) -> pd.DataFrame:
        return _read_frame(data) if isinstance(data, (str, Path)) else data

    @torch.no_grad()
    def _outputs(self, frame: pd.DataFrame) -> torch.Tensor:
        X, _ = self.preprocessor.transform(frame, with_target=False)
        return self.model(torch.from_numpy(X))

    def predict(self, data: pd.DataFrame | str | Path) -> pd.DataFrame:
        """Predictions for new rows (labels as in training; class probabilities for classification)."""
        frame = self._frame(data)
        out = self._outputs(frame)
        pre = self.preprocessor
        if pre.task == "regression":
            return pd.DataFrame({"prediction": pre.decode_values(out.reshape(-1).numpy())})
        proba = torch.softmax(out.float(), dim=1).numpy()
        result = pd.DataFrame({"prediction": pre.decode(proba.argmax(axis=1))})
        for i, cls in enumerate(pre.classes):
            result[f"p_{cls}"] = proba[:, i]
        return result

    def evaluate(self, data: pd.DataFrame | str | Path) -> dict[str, float]:
        """Loss and accuracy (classification) or MSE/MAE/R² in the target's units (regression)."""
        frame = self._frame(data)
        pre = self.preprocessor
        if pre.target not in frame.columns:
            raise DataError(
                f"evaluation data has no target column {pre.target!r}: add it or use predict"
            )
        X, y = pre.transform(frame)
        with torch.no_grad():
            out = self.model(torch.from_numpy(X))
        if pre.task == "classification":
            target = torch.from_numpy(y)
            loss = torch.nn.functional.cross_entropy(out, target).item()
            acc = (out.argmax(dim=1) == target).float().mean().item()
            return {"loss": loss, "accuracy": acc, "n": float(len(y))}
        pred = pre.decode_values(out.reshape(-1).numpy())
        y = pre.decode_values(y)
        err = pred - y
        ss_tot = float(((y - y.mean()) ** 2).sum())
        r2 = 1.0 - float((err**2).sum()) / ss_tot if ss_tot > 0 else math.nan
        return {
            "mse": float((err**2).mean()),
            "mae": float(np.abs(err).mean()),
            "r2": r2,
            "n": float(len(y)),
        }


def _read_frame(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file; check the path")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
        raise DataError(f"{path} cannot be read as CSV: {' '.join(str(exc).split())}") from None
    if frame.empty:
        raise DataError(f"{path} has no data rows")
    return frame


def load(run_dir: str | Path) -> Predictor:
    """The predictor saved in a run directory (weights loaded with ``weights_only=True``)."""
    from epochpilot.models import build_model as _build

    run_dir = Path(run_dir)
    missing = [name for name in PREDICTOR_FILES if not (run_dir / name).exists()]
    if missing:
        raise DataError(
            f"{run_dir} is not a finished epochpilot run (missing {', '.join(missing)}): train it first"
        )
    pre = Preprocessor.from_json(run_dir / "preprocessor.json")
    info = json.loads((run_dir / "model.json").read_text())
    model = _build(
        info["factory"],
        info["n_features"],
        info["n_outputs"],
        info["kwargs"],
        info.get("search", ()),
    )
    try:
        state = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise DataError(f"{run_dir / 'model.pt'} cannot be loaded safely: {exc}") from None
    model.load_state_dict(state)
    return Predictor(run_dir, pre, model)

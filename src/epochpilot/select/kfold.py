"""Choose the number of epochs by k-fold cross-validation, then refit on all the data for that many epochs.

``kfold_epochs`` trains the same model and config on k folds (in parallel processes with ``workers > 1``),
aligns the k validation curves by epoch and picks the epoch with the best mean (``rule="min"``) or the
smallest epoch within one standard error of it (``rule="one_se"``, Breiman's rule: less training, same
skill within noise). ``refit`` then trains on every row for ``selection.epochs`` epochs with no stopper and
a schedule whose length follows the new step count.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from epochpilot.core import budget
from epochpilot.core.stopping import EarlyStopping, check_mode

__all__ = ["EpochSelection", "kfold_epochs", "refit"]

RULES = ("min", "one_se")


@dataclass(frozen=True)
class EpochSelection:
    """What k-fold selection found: the chosen epoch count and the evidence behind it.

    Curves are indexed by epoch - 1. ``mean_curve[i]``/``std_curve[i]`` average the folds that reached
    epoch ``i + 1`` (``counts[i]`` of them; std is the sample std, 0 for a single fold); epochs reached by
    fewer than half the folds are never chosen. ``best_epoch`` is the epoch of the best mean, ``epochs``
    the chosen one (equal under ``rule="min"``, possibly smaller under ``"one_se"``).
    """

    epochs: int
    rule: str
    monitor: str
    mode: str
    best_epoch: int
    per_fold_best: list[int]
    mean_curve: list[float]
    std_curve: list[float]
    counts: list[int]
    fold_histories: list[list[dict[str, Any]]] = field(repr=False)
    run_dirs: list[Path | None] = field(repr=False)

    @property
    def k(self) -> int:
        """The number of folds."""
        return len(self.fold_histories)

    def value_at(self, epoch: int) -> float:
        """The mean monitored value over the folds at ``epoch`` (1-based)."""
        return self.mean_curve[epoch - 1]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary (NaN as None), for ``selection.json`` and reports."""

        def clean(xs: Sequence[float]) -> list[float | None]:
            return [float(x) if math.isfinite(x) else None for x in xs]

        return {
            "epochs": self.epochs,
            "rule": self.rule,
            "monitor": self.monitor,
            "mode": self.mode,
            "best_epoch": self.best_epoch,
            "k": self.k,
            "per_fold_best": list(self.per_fold_best),
            "mean_curve": clean(self.mean_curve),
            "std_curve": clean(self.std_curve),
            "counts": list(self.counts),
            "run_dirs": [str(p) if p is not None else None for p in self.run_dirs],
        }


# -- inputs ------------------------------------------------------------------------------------------


def _config_kwargs(config: Any) -> dict[str, Any]:
    """TrainConfig fields as a dict, from a TrainConfig, a mapping or None."""
    from epochpilot.train import TrainConfig

    if config is None:
        return {}
    if isinstance(config, TrainConfig):
        return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    if isinstance(config, Mapping):
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(config) - names)
        if unknown:
            raise ValueError(f"config has unknown TrainConfig field(s) {unknown}: see TrainConfig")
        return dict(config)
    raise TypeError(
        f"config must be a TrainConfig, a dict of its fields or None, got {type(config).__name__}"
    )


def _arrays(data: Any) -> tuple[Any, Any]:
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError("data must be a pair (X, y) of arrays or tensors with one row per sample")
    X, y = data
    if len(X) != len(y):
        raise ValueError(f"data: X has {len(X)} rows but y has {len(y)}: give one label per row")
    return X, y


def _labels(y: Any) -> np.ndarray:
    arr = y.detach().cpu().numpy() if hasattr(y, "detach") else np.asarray(y)
    return arr.reshape(len(arr), -1)[:, 0] if arr.ndim > 1 else arr


def _take(a: Any, idx: np.ndarray) -> Any:
    if hasattr(a, "detach"):  # torch tensor
        import torch

        return a[torch.as_tensor(idx, dtype=torch.long)]
    return np.asarray(a)[idx]


def _folds(y: Any, k: Any, stratify: bool, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fold (train, validation) index pairs; ValueError naming k and the fix when k does not fit the data."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an int >= 2, got {k!r}")
    if k < 2:
        raise ValueError(f"k={k}: cross-validation needs k >= 2 folds (try k=5)")
    labels = _labels(y)
    n = len(labels)
    if k > n:
        raise ValueError(f"k={k} is larger than the {n} rows: use k <= {n}")
    if stratify:
        if np.issubdtype(labels.dtype, np.floating) and not np.all(labels == np.round(labels)):
            raise ValueError(
                "stratify=True needs class labels, but y holds continuous values: pass stratify=False"
            )
        values, counts = np.unique(labels, return_counts=True)
        smallest = int(counts.min())
        if k > smallest:
            raise ValueError(
                f"k={k} is larger than the smallest class ({smallest} rows of class {values[counts.argmin()].item()!r}): "
                f"use k <= {smallest} or pass stratify=False"
            )
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros(n), labels))
    return list(KFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(n)))


def _schedule(schedule: Any, kw: Mapping[str, Any], n_train: int, epochs: int) -> Any:
    """Build the schedule for ``epochs`` epochs of ``n_train`` rows (names and factories follow the length)."""
    if schedule is None:
        return kw.get("schedule")
    from epochpilot.train.batching import update_batch

    batch, accumulation = update_batch(
        kw.get("batch_size", 32), kw.get("accumulation", 1), kw.get("effective_batch")
    )
    steps = budget.total_steps(
        n_train,
        batch,
        epochs,
        accumulation=accumulation,
        drop_last=bool(kw.get("drop_last", False)),
    )
    from epochpilot.train.budgets import build_schedule

    return build_schedule(schedule, steps, lr=float(kw.get("lr", 1e-3)))[0]


# -- one fold (top level so a 'spawn' process can run it) ---------------------------------------------


def _run_fold(job: dict[str, Any]) -> dict[str, Any]:
    """Train one fold; returns its history and best epoch (not the model: cheap to send back)."""
    from epochpilot.train import Trainer

    if job["threads"]:
        import torch

        torch.set_num_threads(job["threads"])
    if job["seed"] is not None:  # the same initial weights in every fold, whichever process runs it
        import torch

        torch.manual_seed(job["seed"])
    model = job["factory"]()
    result = Trainer(**{"report": False, **job["kwargs"]}).fit(model, job["train"], job["val"])
    return {
        "history": result.history,
        "best_epoch": result.best_epoch,
        "run_dir": result.run_dir,
    }


# -- selection -----------------------------------------------------------------------------------------


def _curves(
    histories: Sequence[Sequence[Mapping[str, Any]]], monitor: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, sample std and count per epoch over the folds that reached it (non-finite values skipped)."""
    length = max((int(r["epoch"]) for h in histories for r in h), default=0)
    grid = np.full((len(histories), length), np.nan)
    for i, hist in enumerate(histories):
        for row in hist:
            value = row.get(monitor)
            if isinstance(value, (int, float)) and math.isfinite(value):
                grid[i, int(row["epoch"]) - 1] = float(value)
    counts = np.sum(np.isfinite(grid), axis=0)
    with np.errstate(invalid="ignore"):
        total = np.nansum(grid, axis=0)
        mean = np.where(counts > 0, total / np.maximum(counts, 1), np.nan)
        dev = np.where(np.isfinite(grid), (grid - mean) ** 2, 0.0).sum(axis=0)
        std = np.where(counts > 1, np.sqrt(dev / np.maximum(counts - 1, 1)), 0.0)
    std = np.where(counts > 0, std, np.nan)
    return mean, std, counts


def choose_epoch(
    mean: Sequence[float],
    std: Sequence[float],
    counts: Sequence[int],
    *,
    mode: str,
    rule: str,
    k: int,
) -> tuple[int, int]:
    """(chosen epoch, best-mean epoch), 1-based, from aligned curves.

    Only epochs reached by at least ``ceil(k / 2)`` folds compete (a mean over the few folds that ran longest
    is biased towards them). ``one_se`` returns the smallest epoch whose mean is within one standard error
    (std / sqrt(count)) of the best mean.
    """
    m = np.asarray(mean, dtype=float)
    s = np.asarray(std, dtype=float)
    c = np.asarray(counts, dtype=float)
    ok = (c >= math.ceil(k / 2)) & np.isfinite(m)
    if not ok.any():
        raise ValueError(
            "no epoch has a finite monitored value in at least half the folds: check the monitor name "
            "and that training does not diverge"
        )
    signed = np.where(ok, m if mode == "min" else -m, np.inf)
    best = int(np.argmin(signed))
    if rule == "min":
        return best + 1, best + 1
    se = s[best] / math.sqrt(c[best]) if c[best] > 0 else 0.0
    within = np.flatnonzero(signed <= signed[best] + se)
    return int(within[0]) + 1, best + 1


def kfold_epochs(
    model_factory: Callable[[], Any],
    data: tuple[Any, Any],
    *,
    k: int = 5,
    stratify: bool = True,
    config: Any = None,
    schedule: str | Callable[[int], Any] | None = None,
    workers: int = 1,
    rule: str = "min",
    seed: int = 0,
    run_dir: str | Path | None = None,
) -> EpochSelection:
    """Run k folds with one config, align their validation curves by epoch and choose the epoch count.

    ``model_factory()`` returns a fresh ``torch.nn.Module``; with ``workers > 1`` folds run in separate
    'spawn' processes, so it must be picklable: a top-level function or class (not a lambda).
    ``data`` is ``(X, y)``; folds are stratified by ``y`` when ``stratify`` (classification). ``config`` is a
    :class:`~epochpilot.train.TrainConfig` or a dict of its fields. Without a ``stopper`` each fold gets a
    generous ``EarlyStopping("val_loss", "min", patience=max(10, max_epochs // 3))`` so curves run well past
    their best; pass ``stopper=False`` to run every fold to ``max_epochs``. The monitor and mode are the
    stopper's. ``schedule`` (a name for :func:`epochpilot.core.schedules.parse` or a function
    ``total_steps -> schedule``) is built for the folds' length; a fixed schedule in ``config`` is used as is.
    Curves of different lengths (folds stopped at different epochs) are averaged per epoch over the folds
    that reached it. ``run_dir`` gets one sub-directory per fold (``fold-1`` ...).
    """
    if rule not in RULES:
        raise ValueError(f"rule={rule!r} is unknown: use 'min' or 'one_se'")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    if not callable(model_factory):
        raise TypeError("model_factory must be a callable returning a fresh torch.nn.Module")
    X, y = _arrays(data)
    folds = _folds(y, k, stratify, seed)
    kw = _config_kwargs(config)
    kw.setdefault("seed", seed)
    if kw.get("progress") is None:
        kw["progress"] = False
    max_epochs = int(kw.get("max_epochs", 100))
    stopper = kw.get("stopper")
    if stopper is None:
        stopper = EarlyStopping("val_loss", "min", patience=max(10, max_epochs // 3))
    monitor = getattr(stopper, "monitor", None) or "val_loss"
    mode = check_mode(getattr(stopper, "mode", None) or "min")
    root = Path(run_dir) if run_dir is not None else None
    threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else 0
    jobs = []
    for i, (tr, va) in enumerate(folds, 1):
        fold_kw = dict(kw, stopper=copy.deepcopy(stopper) if stopper is not False else False)
        fold_kw["schedule"] = _schedule(schedule, kw, len(tr), max_epochs)
        fold_kw["run_dir"] = root / f"fold-{i}" if root is not None else None
        jobs.append(
            {
                "factory": model_factory,
                "kwargs": fold_kw,
                "train": (_take(X, tr), _take(y, tr)),
                "val": (_take(X, va), _take(y, va)),
                "threads": threads,
                "seed": kw.get("seed"),
            }
        )
    if workers == 1:
        results = [_run_fold(job) for job in jobs]
    else:
        with ProcessPoolExecutor(
            max_workers=min(workers, len(jobs)), mp_context=get_context("spawn")
        ) as pool:
            results = list(pool.map(_run_fold, jobs))
    histories = [r["history"] for r in results]
    mean, std, counts = _curves(histories, monitor)
    chosen, best = choose_epoch(mean, std, counts, mode=mode, rule=rule, k=len(folds))
    return EpochSelection(
        epochs=chosen,
        rule=rule,
        monitor=monitor,
        mode=mode,
        best_epoch=best,
        per_fold_best=[int(r["best_epoch"] or 0) for r in results],
        mean_curve=[float(v) for v in mean],
        std_curve=[float(v) for v in std],
        counts=[int(c) for c in counts],
        fold_histories=histories,
        run_dirs=[Path(r["run_dir"]) if r["run_dir"] is not None else None for r in results],
    )


def refit(
    model_factory: Callable[[], Any],
    data: tuple[Any, Any],
    epochs: int | EpochSelection,
    *,
    config: Any = None,
    schedule: str | Callable[[int], Any] | None = None,
    run_dir: str | Path | None = None,
) -> Any:
    """Train a fresh model on all of ``data`` for exactly ``epochs`` epochs; returns the ``FitResult``.

    There is no validation data, so there is no stopper and nothing to restore: the model holds the last
    epoch's weights. ``schedule`` (a name or a function ``total_steps -> schedule``) is built for the refit's
    own step count (all rows, ``epochs`` epochs), so a cosine decay still ends at the last epoch.
    """
    from epochpilot.train import Trainer

    if isinstance(epochs, EpochSelection):
        epochs = epochs.epochs
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1 (e.g. selection.epochs), got {epochs!r}")
    X, y = _arrays(data)
    kw = _config_kwargs(config)
    kw.update(stopper=False, max_epochs=epochs, run_dir=run_dir)
    if kw.get("progress") is None:
        kw["progress"] = False
    kw["schedule"] = _schedule(schedule, kw, len(X), epochs)
    if kw.get("seed") is not None:
        import torch

        torch.manual_seed(kw["seed"])
    kw.setdefault("report", False)  # the selection report covers the refit
    return Trainer(**kw).fit(model_factory(), (X, y))

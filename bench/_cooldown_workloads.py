"""Workloads and runners of bench/cooldown.py: data x model x optimizer x label noise, and one fit per task.

Each task is (workload, runner, seed). A seed fixes the 60/20/20 split, the label noise (training and validation
labels only, never test), the model's initial weights and the data order, so every runner of a seed starts from
the same model on the same data. Only the public API is used: ``epochpilot.fit`` and ``FitResult``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from epochpilot import fit
from epochpilot.errors import ConfigError

RUNNERS = ("default", "cosine200", "best_cosine", "on_stop", "sweep")
LENGTHS = (5, 10, 20, 40, 80, 160)
FORTUNE_CATEGORIES = ("computers", "politics", "science", "work")


class Unavailable(Exception):
    """A task that cannot run here (data not installed, or the trainer does not accept the runner yet)."""


@dataclass(frozen=True)
class Workload:
    """One benchmark workload; ``selection`` marks the half the settings are chosen on."""

    key: str
    data: str  # digits | wine | breast_cancer | mnist1d | fortunes
    model: str  # mlp | cnn
    optimizer: str  # sgd (momentum 0.9) | adamw (weight decay 0.01)
    lr: float
    noise: float
    batch_size: int = 32
    selection: bool = False

    @property
    def label(self) -> str:
        """A short description for the table."""
        opt = "SGD-m" if self.optimizer == "sgd" else "AdamW"
        model = "MLP" if self.model == "mlp" else "1-D CNN"
        data = "fortunes/MiniLM" if self.data == "fortunes" else self.data
        return f"{data} {model} {opt} {round(100 * self.noise)}%"


WORKLOADS = {
    w.key: w
    for w in (
        Workload("W1", "digits", "mlp", "sgd", 0.01, 0.0, selection=True),
        Workload("W2", "digits", "mlp", "adamw", 1e-3, 0.2),
        Workload("W3", "wine", "mlp", "adamw", 1e-3, 0.0, selection=True),
        Workload("W4", "breast_cancer", "mlp", "sgd", 0.01, 0.2),
        Workload("W5", "mnist1d", "mlp", "sgd", 0.01, 0.0, selection=True),
        Workload("W6", "mnist1d", "mlp", "adamw", 1e-3, 0.2),
        Workload("W7", "mnist1d", "cnn", "adamw", 1e-3, 0.0, batch_size=64, selection=True),
        Workload("W8", "fortunes", "mlp", "sgd", 0.01, 0.2),
    )
}


def _npz_cache(path: Path, make: Callable[[], tuple[np.ndarray, np.ndarray]]) -> tuple:
    if path.is_file():
        with np.load(path) as z:
            return z["X"], z["y"]
    X, y = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, X=X, y=y)
    os.replace(tmp, path)
    return X, y


def _mnist1d() -> tuple[np.ndarray, np.ndarray]:
    from epochpilot.data import load_builtin

    table = load_builtin("mnist1d", n_samples=4000, seed=0)
    return table.frame[table.features].to_numpy(np.float32), table.frame["target"].to_numpy()


def _fortunes() -> tuple[np.ndarray, np.ndarray]:
    """MiniLM sentence embeddings (mean pooled, as the repo's TextClassifier embeds) of four fortune categories."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from epochpilot.textdata import load_fortunes

    try:
        data = load_fortunes(list(FORTUNE_CATEGORIES))
    except FileNotFoundError as exc:
        raise Unavailable(str(exc)) from None
    try:
        from epochpilot.finetune import TextClassifier, load_encoder

        encoder, tokenizer = load_encoder()
    except ImportError as exc:
        raise Unavailable(str(exc)) from None
    model = TextClassifier(encoder, tokenizer, n_classes=len(FORTUNE_CATEGORIES), max_length=128)
    return model.encode(data.texts).numpy().astype(np.float32), data.labels


@functools.lru_cache(maxsize=8)
def load_arrays(data: str, cache_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """(X float32, y int64) of a data set; MNIST-1D and the fortune embeddings are cached in ``cache_dir``."""
    if data == "mnist1d":
        X, y = _npz_cache(Path(cache_dir) / "mnist1d_4000.npz", _mnist1d)
    elif data == "fortunes":
        X, y = _npz_cache(Path(cache_dir) / "fortunes_minilm.npz", _fortunes)
    else:
        from sklearn import datasets

        X, y = getattr(datasets, f"load_{data}")(return_X_y=True)
    return np.asarray(X, np.float32), np.asarray(y, np.int64)


def add_label_noise(y: np.ndarray, fraction: float, n_classes: int, rng: np.random.Generator):
    """A copy of ``y`` with ``round(fraction * len(y))`` labels moved to a different class, drawn uniformly."""
    y = y.copy()
    flip = rng.choice(len(y), size=round(fraction * len(y)), replace=False)
    y[flip] = (y[flip] + rng.integers(1, n_classes, size=len(flip))) % n_classes
    return y


def prepare(w: Workload, seed: int, cache_dir: str) -> dict[str, Any]:
    """The seed's 60/20/20 split, noisy train/val labels, features standardised on the training rows."""
    X, y = load_arrays(w.data, cache_dir)
    n_classes = int(y.max()) + 1
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    a, b = int(0.6 * len(y)), int(0.8 * len(y))
    tr, va, te = order[:a], order[a:b], order[b:]
    noisy = add_label_noise(y[order[:b]], w.noise, n_classes, rng) if w.noise else y[order[:b]]
    # signals (MNIST-1D) get one scale for all positions; tables and embeddings one per column
    axis = None if w.data == "mnist1d" else 0
    mean, std = X[tr].mean(axis), X[tr].std(axis)
    # a column constant on the training rows (digits' edge pixels) keeps its scale
    std = np.where(std > 1e-6, std, 1.0)
    Z = ((X - mean) / std).astype(np.float32)
    return {
        "train": (Z[tr], noisy[:a]),
        "val": (Z[va], noisy[a:]),
        "test": (Z[te], y[te]),
        "n_in": X.shape[1],
        "n_classes": n_classes,
    }


def build_model(w: Workload, n_in: int, n_classes: int, seed: int) -> torch.nn.Module:
    """The workload's model with the seed's initial weights (MLP 256-256, or a small 1-D CNN)."""
    torch.manual_seed(seed)
    nn = torch.nn
    if w.model == "cnn":
        return nn.Sequential(
            nn.Unflatten(1, (1, n_in)),
            nn.Conv1d(1, 32, 5, padding=2),
            nn.ReLU(),
            nn.Conv1d(32, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(32, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(32 * ((n_in + 3) // 4), n_classes),
        )
    return nn.Sequential(
        nn.Linear(n_in, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, n_classes)
    )


def _optimizer(w: Workload) -> Callable[[Any], torch.optim.Optimizer]:
    if w.optimizer == "sgd":
        return functools.partial(torch.optim.SGD, lr=w.lr, momentum=0.9)
    return functools.partial(torch.optim.AdamW, lr=w.lr, weight_decay=0.01)


@torch.no_grad()
def evaluate(model: torch.nn.Module, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` in eval mode."""
    model.eval()
    out = model(torch.from_numpy(X))
    target = torch.from_numpy(y)
    loss = torch.nn.functional.cross_entropy(out, target).item()
    return float((out.argmax(1) == target).float().mean()), float(loss)


def _one_fit(w: Workload, d: dict[str, Any], seed: int, **config: Any) -> dict[str, Any]:
    model = build_model(w, d["n_in"], d["n_classes"], seed)
    started = time.perf_counter()
    result = fit(
        model,
        d["train"],
        d["val"],
        optimizer=_optimizer(w),
        lr=w.lr,
        batch_size=w.batch_size,
        loss_fn="cross_entropy",
        seed=seed,
        progress=False,
        **config,
    )
    acc, loss = evaluate(result.model, *d["test"])
    return {
        "test_acc": acc,
        "test_loss": loss,
        "val_loss": result.best_value,
        "epochs": float(result.epochs_trained),
        "best_epoch": result.best_epoch,
        "kept_from": result.kept_from,
        "stop_reason": getattr(result.stop_reason, "value", str(result.stop_reason)),
        "seconds": time.perf_counter() - started,
    }


def run_runner(w: Workload, runner: str, seed: int, settings: dict[str, Any], cache_dir: str):
    """Run one task; returns the result row (test metrics of the kept model, epochs trained, seconds)."""
    d = prepare(w, seed, cache_dir)
    budget = int(settings.get("max_epochs", 0))
    if runner == "default":
        return _one_fit(w, d, seed, max_epochs=budget)
    if runner == "cosine200":
        return _one_fit(w, d, seed, max_epochs=budget, schedule="warmup(cosine)")
    if runner == "best_cosine":
        runs = [
            dict(
                _one_fit(w, d, seed, max_epochs=L, schedule="warmup(cosine)", stopper=False),
                length=L,
            )
            for L in settings["lengths"]
        ]
        finite = [r for r in runs if r["val_loss"] is not None and np.isfinite(r["val_loss"])]
        best = min(finite, key=lambda r: r["val_loss"]) if finite else runs[-1]
        return dict(
            best,
            epochs=sum(r["epochs"] for r in runs),
            seconds=sum(r["seconds"] for r in runs),
            chosen_length=best["length"],
            per_length=[
                {k: r[k] for k in ("length", "val_loss", "test_acc", "test_loss")} for r in runs
            ],
        )
    extra = dict(settings.get("fit_args", {}))
    if runner == "on_stop":
        return _one_fit(w, d, seed, max_epochs=budget, schedule="wsd", cooldown="on_stop", **extra)
    if runner == "sweep":
        try:
            return _one_fit(
                w, d, seed, max_epochs=budget, schedule="wsd", cooldown="sweep", **extra
            )
        except (ConfigError, TypeError) as exc:  # the trainer does not accept cooldown="sweep" yet
            raise Unavailable(f"sweep: not available ({str(exc).splitlines()[0]})") from None
    raise ValueError(f"unknown runner {runner!r}: use one of {', '.join(RUNNERS)}")


@functools.lru_cache(maxsize=1)
def warm_up() -> None:
    """Pay torch's one-off import on the first optimizer (torch._dynamo, ~3 s) before any task is timed."""
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)


@functools.lru_cache(maxsize=1)
def trainer_digest() -> str:
    """A digest of the trainer's sources (train/, stopping/, schedules/): recorded in every row, so rows
    cached by an older trainer can be told apart."""
    import epochpilot

    root = Path(epochpilot.__file__).parent
    h = hashlib.sha1()
    for sub in ("train", "stopping", "schedules"):
        for file in sorted((root / sub).glob("*.py")):
            h.update(file.name.encode() + file.read_bytes())
    return h.hexdigest()[:10]


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Process-pool entry: one (workload, runner, seed) task -> its row, or ``{"unavailable": reason}``."""
    torch.set_num_threads(1)
    warm_up()
    logging.getLogger("epochpilot").setLevel(logging.WARNING)
    w = WORKLOADS[task["workload"]]
    try:
        row = run_runner(w, task["runner"], task["seed"], task["settings"], task["cache_dir"])
    except Unavailable as exc:
        return {"key": task["key"], "unavailable": str(exc)}
    keep = ("key", "workload", "runner", "seed", "settings")
    return dict(row, trainer=trainer_digest(), **{k: task[k] for k in keep})


def spec(w: Workload) -> dict[str, Any]:
    """The workload's definition (part of each cache key, so a changed workload is re-run)."""
    return asdict(w)

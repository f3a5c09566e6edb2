"""How much training each pruner saves, and what it costs in the best model found.

Same search space, trials and seeds on two built-in data sets (digits, breast_cancer); pruners: none,
Optuna's MedianPruner, HyperbandPruner (both with Optuna's defaults) and the epochpilot pruner (defaults).
Every trial trains a small MLP with the epochpilot Trainer (its own EarlyStopping, patience 5, within a
budget of ``--epochs``), reports val_loss each epoch and is scored by its best val_loss; the test accuracy of
that best checkpoint is recorded. Per study: total epochs trained, and the test accuracy of the trial with
the best val_loss. The table gives means over seeds and ratios to no pruning.

    .venv/bin/python bench/tune_efficiency.py               # 2 data sets x 4 pruners x 3 seeds x 20 trials
    .venv/bin/python bench/tune_efficiency.py --trials 8 --seeds 1 --datasets digits   # quick look
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from epochpilot.schedules import parse  # noqa: E402
from epochpilot.stopping import EarlyStopping  # noqa: E402
from epochpilot.train import Trainer  # noqa: E402
from epochpilot.tune import PruningCallback, tune  # noqa: E402
from epochpilot.tune_pruner import EpochpilotPruner  # noqa: E402

PRUNERS = ("none", "median", "hyperband", "epochpilot")
SPACE = {
    "lr": ("log", 1e-4, 3e-1),
    "batch_size": ("choice", [16, 32, 64, 128]),
    "weight_decay": ("log", 1e-6, 1e-2),
    "hidden": ("choice", [[32], [128], [128, 64]]),
    "dropout": ("float", 0.0, 0.5),
    "warmup": ("float", 0.0, 0.2),
    "schedule": ("choice", ["cosine", "constant"]),
}


def load(name: str) -> dict[str, np.ndarray]:
    """60/20/20 stratified split, standardised on the training rows."""
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    loader = {"digits": datasets.load_digits, "breast_cancer": datasets.load_breast_cancer}[name]
    X, y = loader(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)
    X_tr, X_va, y_tr, y_va = train_test_split(
        X_tr, y_tr, test_size=0.25, stratify=y_tr, random_state=0
    )
    mu, sd = X_tr.mean(0), X_tr.std(0)
    sd = np.where(sd > 0, sd, 1.0)  # digits has pixels that are constant in the training rows
    f = lambda a: ((a - mu) / sd).astype(np.float32)  # noqa: E731
    return {
        "X_tr": f(X_tr),
        "y_tr": y_tr,
        "X_va": f(X_va),
        "y_va": y_va,
        "X_te": f(X_te),
        "y_te": y_te,
    }


class Objective:
    """Train one trial; the value is its best val_loss, test accuracy of that checkpoint is recorded."""

    def __init__(self, data: dict[str, np.ndarray], epochs: int, seed: int) -> None:
        self.data, self.epochs, self.seed = data, epochs, seed
        self.n_epochs = 0

    def __call__(self, trial: optuna.Trial, p: dict) -> float:
        d = self.data
        n_in, n_out = d["X_tr"].shape[1], int(d["y_tr"].max()) + 1
        torch.manual_seed(self.seed)
        layers: list[torch.nn.Module] = []
        width = n_in
        for h in p["hidden"]:
            layers += [torch.nn.Linear(width, h), torch.nn.ReLU(), torch.nn.Dropout(p["dropout"])]
            width = h
        model = torch.nn.Sequential(*layers, torch.nn.Linear(width, n_out))
        steps = -(-len(d["X_tr"]) // p["batch_size"]) * self.epochs
        name = p["schedule"] if p["warmup"] < 0.01 else f"warmup({p['schedule']})"
        warm = max(1, int(p["warmup"] * steps)) if name.startswith("warmup") else None
        try:
            result = Trainer(
                lr=p["lr"],
                optimizer="adamw",
                weight_decay=p["weight_decay"],
                batch_size=p["batch_size"],
                max_epochs=self.epochs,
                schedule=parse(name, lr=p["lr"], total_steps=steps, warmup_steps=warm),
                stopper=EarlyStopping("val_loss", "min", patience=5),
                loss_fn="cross_entropy",
                seed=self.seed,
                progress=False,
                checkpoint_every=None,
                grad_norm_every=0,
                callbacks=[PruningCallback(trial)],
            ).fit(model, (d["X_tr"], d["y_tr"]), (d["X_va"], d["y_va"]))
        finally:
            self.n_epochs += len(trial.storage.get_trial(trial._trial_id).intermediate_values)
        with torch.no_grad():
            pred = result.model.eval()(torch.from_numpy(d["X_te"])).argmax(1).numpy()
        trial.set_user_attr("test_accuracy", float((pred == d["y_te"]).mean()))
        return float(result.best_value)


def make_pruner(spec: str) -> object:
    """A pruner name, or ``epochpilot:key=value,...`` for EpochpilotPruner settings (for exploring them)."""
    name, _, rest = spec.partition(":")
    if name != "epochpilot" or not rest:
        return spec
    kwargs = {k: json.loads(v) for k, v in (item.split("=") for item in rest.split(","))}
    return EpochpilotPruner(**kwargs)


def run_study(data: dict, pruner: str, seed: int, trials: int, epochs: int) -> dict:
    objective = Objective(data, epochs, seed)
    pruner = make_pruner(pruner)
    study = tune(
        objective,
        SPACE,
        n_trials=trials,
        storage=optuna.storages.InMemoryStorage(),
        pruner=pruner,
        seed=seed,
    )
    best = study.best_trial
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    return {
        "epochs": objective.n_epochs,
        "test_accuracy": best.user_attrs["test_accuracy"],
        "best_val_loss": best.value,
        "pruned": pruned,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["digits", "breast_cancer"])
    parser.add_argument("--pruners", nargs="+", default=list(PRUNERS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "tune_efficiency.json"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    results: dict[str, dict[str, list[dict]]] = {}
    for name in args.datasets:
        data = load(name)
        results[name] = {}
        for pruner in args.pruners:
            runs = []
            for seed in range(args.seeds):
                t0 = time.perf_counter()
                runs.append(run_study(data, pruner, seed, args.trials, args.epochs))
                r = runs[-1]
                print(
                    f"{name:14s} {pruner:11s} seed {seed}: {r['epochs']:4d} epochs, {r['pruned']:2d} pruned, "
                    f"test acc {r['test_accuracy']:.4f} ({time.perf_counter() - t0:.0f} s)",
                    flush=True,
                )
            results[name][pruner] = runs
    print_table(results, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=1
        )
    )
    print(f"\n{time.perf_counter() - started:.0f} s in all; raw results in {args.out}")


def print_table(results: dict, args: argparse.Namespace) -> None:
    print(
        f"\n{args.trials} trials x {args.seeds} seeds per cell, budget {args.epochs} epochs per trial; "
        "ratios to no pruning (mean over seeds)"
    )
    head = f"{'data set':14s} {'pruner':11s} {'epochs':>7s} {'ratio':>6s} {'pruned':>7s} {'best test acc':>16s} {'ratio':>6s}"
    print(head)
    print("-" * len(head))
    for name, by_pruner in results.items():
        base = by_pruner.get("none")
        base_ep = statistics.mean(r["epochs"] for r in base) if base else float("nan")
        base_acc = statistics.mean(r["test_accuracy"] for r in base) if base else float("nan")
        for pruner, runs in by_pruner.items():
            ep = statistics.mean(r["epochs"] for r in runs)
            accs = [r["test_accuracy"] for r in runs]
            acc = statistics.mean(accs)
            sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
            pr = statistics.mean(r["pruned"] for r in runs)
            print(
                f"{name:14s} {pruner:11s} {ep:7.0f} {ep / base_ep:6.2f} {pr:7.1f} "
                f"{acc:9.4f} ± {sd:.4f} {acc / base_acc:6.3f}"
            )


if __name__ == "__main__":
    main()

"""Calibrate epochpilot.plan: where does validation-based stopping find the sweet spot?

Trains small models (logistic regression and two MLPs) with Adam at three constant learning rates on the
built-in data sets (sklearn wine / breast_cancer / digits; mnist1d generated at any size) at 100 / 1,000 /
10,000 training samples, two seeds each, for a long time under early stopping on validation loss with a
generous patience. The sweet spot of a run is the epoch of its last validation-loss improvement of at least
0.5% (relative): a linear model's loss creeps down for hundreds of epochs by amounts no one would train for.

For the seeds' table and the calibrated table of ``epochpilot.plan`` (each planned with the run's lr) it then
reports, per training size and overall:

- coverage: share of runs whose sweet spot is <= the planned max_epochs (target >= 90%);
- waste: planned max_epochs / sweet spot, median (target <= 2x);
- epochs run: what the plan's own patience and max_epochs would have spent, / sweet spot (median);
- accuracy lost: validation accuracy at the sweet spot minus accuracy at the epoch the plan's stopper keeps.

    .venv/bin/python bench/plan_calibration.py                 # collect (~15 min on 1 thread) + evaluate
    .venv/bin/python bench/plan_calibration.py --evaluate      # re-evaluate saved curves against plan.py
    .venv/bin/python bench/plan_calibration.py --engine fit --data mnist1d --sizes 100 1000 --out runs/fit.json

``--engine plain`` (default) is a bare torch loop (fast); ``--engine fit`` trains through ``epochpilot.fit``
(the trainer, ~3x slower per epoch here) as a cross-check that the trainer's curves give the same picture.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from epochpilot.plan import CALIBRATED, DEFAULT_LR, LR_EXPONENT, default_batch_size, plan
from epochpilot.stopping.early import EarlyStopping

SIZES = (100, 1_000, 10_000)
LRS = (3e-4, 1e-3, 3e-3)
MODELS = ("linear", "mlp64", "mlp256x2")
DATA = ("wine", "breast_cancer", "digits", "mnist1d")
#: Epoch cap and patience per training size: long enough that the sweet spot is found, not cut.
CAP = {100: 1_000, 1_000: 500, 10_000: 200}
PATIENCE = {100: 60, 1_000: 40, 10_000: 15}
MIN_DELTA = 0.005


def stopper(patience: int) -> EarlyStopping:
    return EarlyStopping(
        "val_loss", "min", patience=patience, min_delta=MIN_DELTA, min_delta_mode="rel"
    )


def load(name: str, n: int, seed: int) -> tuple[np.ndarray, ...] | None:
    """(x_train, y_train, x_val, y_val) with n training rows, standardised on train; None if too small."""
    if name == "mnist1d":
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        n_val = max(500, n // 4)
        args.num_samples, args.train_split, args.seed = n + n_val, n / (n + n_val), 1000 + seed
        d = make_dataset(args)
        x, y, xv, yv = d["x"], d["y"], d["x_test"], d["y_test"]
    else:
        from sklearn import datasets

        x_all, y_all = getattr(datasets, f"load_{name}")(return_X_y=True)
        if len(x_all) < n + 60:
            return None
        order = np.random.default_rng(seed).permutation(len(x_all))
        n_val = min(max(200, n // 4), len(x_all) - n)
        x, y = x_all[order[:n]], y_all[order[:n]]
        xv, yv = x_all[order[n : n + n_val]], y_all[order[n : n + n_val]]
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 1e-8, std, 1.0)  # constant train columns (digits' blank pixels) stay as is
    return ((x - mean) / std).astype(np.float32), y, ((xv - mean) / std).astype(np.float32), yv


def model(kind: str, d: int, k: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(d, k)
    if kind == "mlp64":
        return nn.Sequential(nn.Linear(d, 64), nn.ReLU(), nn.Linear(64, k))
    return nn.Sequential(
        nn.Linear(d, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, k)
    )


def _tensors(data: tuple[np.ndarray, ...]) -> tuple[torch.Tensor, ...]:
    x, y, xv, yv = (torch.from_numpy(np.asarray(a)) for a in data)
    return x, y.long(), xv, yv.long()


def curve_plain(data: tuple[np.ndarray, ...], kind: str, lr: float, n: int, seed: int) -> dict:
    """Validation loss and accuracy per epoch from a bare loop: Adam, constant lr, plan's batch size."""
    x, y, xv, yv = _tensors(data)
    torch.manual_seed(seed)
    net = model(kind, x.shape[1], int(max(y.max(), yv.max())) + 1)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    batch, stop = default_batch_size(n), stopper(PATIENCE[n])
    losses, accs = [], []
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(1, CAP[n] + 1):
        net.train()
        for idx in torch.randperm(len(x), generator=gen).split(batch):
            opt.zero_grad()
            loss_fn(net(x[idx]), y[idx]).backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            out = net(xv)
            losses.append(float(loss_fn(out, yv)))
            accs.append(float((out.argmax(1) == yv).float().mean()))
        if stop.update(epoch, {"val_loss": losses[-1]}).stop:
            break
    return {"val_loss": losses, "val_acc": accs}


def curve_fit(data: tuple[np.ndarray, ...], kind: str, lr: float, n: int, seed: int) -> dict:
    """The same run through epochpilot.fit (Adam, constant lr, the same early stopping)."""
    from epochpilot import fit

    x, y, xv, yv = _tensors(data)
    torch.manual_seed(seed)
    net = model(kind, x.shape[1], int(max(y.max(), yv.max())) + 1)
    result = fit(
        net,
        (x, y),
        (xv, yv),
        lr=lr,
        max_epochs=CAP[n],
        batch_size=default_batch_size(n),
        seed=seed,
        stopper=stopper(PATIENCE[n]),
        metrics=["accuracy"],
        progress=False,
        checkpoint_every=None,
        grad_norm_every=0,
    )
    return {
        "val_loss": [float(r["val_loss"]) for r in result.history],
        "val_acc": [float(r["val_accuracy"]) for r in result.history],
    }


def replay(losses: list[float], patience: int, max_epochs: int) -> tuple[int, int, bool, int]:
    """Feed a curve to the stopper: (best epoch, epochs run, stopped?, longest wait between improvements)."""
    stop, improved, decision, epoch = stopper(patience), [0], None, 0
    for epoch, value in enumerate(losses[:max_epochs], start=1):
        decision = stop.update(epoch, {"val_loss": value})
        if decision.improved:
            improved.append(epoch)
        if decision.stop:
            break
    return (
        int(decision.best_epoch or 1),
        epoch,
        bool(decision.stop),
        int(max(np.diff(improved), default=1)) - 1,
    )


def summarise(run: dict) -> dict:
    """Sweet spot, whether the cap censored it, and the patience that was needed to reach it."""
    best, ran, stopped, wait = replay(run["val_loss"], PATIENCE[run["n"]], CAP[run["n"]])
    return {"sweet_spot": best, "censored": not stopped, "epochs_run": ran, "patience_needed": wait}


def collect(
    path: Path, engine: str, data_names: list[str], sizes: list[int], seeds: list[int]
) -> list[dict]:
    torch.set_num_threads(1)
    make_curve = curve_fit if engine == "fit" else curve_plain
    runs, start = [], time.perf_counter()
    for name in data_names:
        for n in sizes:
            for seed in seeds:
                data = load(name, n, seed)
                if data is None:
                    continue
                for kind in MODELS:
                    for lr in LRS:
                        t0 = time.perf_counter()
                        run = {
                            "data": name,
                            "n": n,
                            "model": kind,
                            "lr": lr,
                            "seed": seed,
                            "engine": engine,
                        }
                        run.update(make_curve(data, kind, lr, n, seed))
                        run.update(summarise(run))
                        run["seconds"] = round(time.perf_counter() - t0, 2)
                        runs.append(run)
                        print(
                            f"{name:14s} n={n:<6d} {kind:9s} lr={lr:<7g} seed={seed} sweet={run['sweet_spot']:<4d} "
                            f"acc={run['val_acc'][run['sweet_spot'] - 1]:.3f} ({run['seconds']:.1f}s)",
                            flush=True,
                        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(runs))
    print(f"{len(runs)} runs in {time.perf_counter() - start:.0f}s -> {path}")
    return runs


def _covered(run: dict, max_epochs: int) -> bool:
    """Sweet spot within the budget; a run cut by the cap counts only if the budget reaches the cap."""
    return run["sweet_spot"] <= max_epochs and (
        not run["censored"] or max_epochs >= run["epochs_run"]
    )


def suggest(runs: list[dict], coverage: float = 0.9) -> dict[int, int]:
    """Per size, the smallest anchor (max epochs at the default lr) whose lr-scaled budgets cover ``coverage``."""
    out = {}
    for n in SIZES:
        sub = [r for r in runs if r["n"] == n]
        if not sub:
            continue
        factors = [min(4.0, max(0.25, (DEFAULT_LR["full"] / r["lr"]) ** LR_EXPONENT)) for r in sub]
        for anchor in range(1, 5_000):
            hits = [
                _covered(r, max(1, round(anchor * f))) for r, f in zip(sub, factors, strict=True)
            ]
            if sum(hits) >= coverage * len(sub):
                out[n] = anchor
                break
    return out


def score(runs: list[dict], table: str) -> dict[object, dict[str, float]]:
    """Per training size and overall: coverage, median waste, median epochs-run ratio, accuracy lost."""
    rows: dict[object, list[tuple[bool, float, float, float, int]]] = {}
    for r in runs:
        p = plan(r["n"], lr=r["lr"], table=table)
        covered = _covered(r, p.max_epochs)
        kept, ran, _, _ = replay(r["val_loss"], p.patience, p.max_epochs)
        lost = r["val_acc"][r["sweet_spot"] - 1] - r["val_acc"][kept - 1]
        item = (covered, p.max_epochs / r["sweet_spot"], ran / r["sweet_spot"], lost, p.max_epochs)
        rows.setdefault(r["n"], []).append(item)
        rows.setdefault("all", []).append(item)
    out = {}
    for key, items in rows.items():
        cov, waste, ran, lost, epochs = zip(*items, strict=True)
        out[key] = {
            "coverage": sum(cov) / len(cov),
            "waste": statistics.median(waste),
            "ran": statistics.median(ran),
            "lost_median": statistics.median(lost),
            "lost_p90": float(np.percentile(lost, 90)),
            "max_epochs": f"{min(epochs)}-{max(epochs)}"
            if min(epochs) != max(epochs)
            else str(epochs[0]),
        }
    return out


def evaluate(runs: list[dict]) -> None:
    print(
        f"\n{len(runs)} runs; sweet spot (epoch of the last >= 0.5% val-loss improvement) per training size:"
    )
    print(
        f"{'n':>6} {'runs':>5} {'min':>5} {'p10':>5} {'median':>7} {'p90':>5} {'max':>5} {'censored':>9} {'patience p90':>13}"
    )
    for n in SIZES:
        sub = [r for r in runs if r["n"] == n]
        if not sub:
            continue
        spots = np.array([r["sweet_spot"] for r in sub])
        p10, p50, p90 = np.percentile(spots, [10, 50, 90])
        cens = sum(r["censored"] for r in sub)
        wait = np.percentile([r["patience_needed"] for r in sub], 90)
        print(
            f"{n:>6} {len(sub):>5} {spots.min():>5} {p10:>5.0f} {p50:>7.0f} {p90:>5.0f} {spots.max():>5} {cens:>9} {wait:>13.0f}"
        )
    print(
        "\nPlan tables (planned with each run's lr). coverage: sweet spot <= max_epochs; waste: max_epochs / "
        "sweet spot;\nran: epochs the plan's patience + max_epochs spend / sweet spot; lost: val accuracy "
        "points lost vs the sweet spot."
    )
    print(
        f"{'table':<11} {'n':>6} {'max_epochs':>11} {'coverage':>9} {'waste':>7} {'ran':>6} {'lost med':>9} {'lost p90':>9}"
    )
    scores = {}
    for table in ("seeds", "calibrated"):
        scores[table] = score(runs, table)
        for key, s in scores[table].items():
            print(
                f"{table:<11} {key!s:>6} {s['max_epochs']:>11} {s['coverage']:>9.0%} {s['waste']:>6.2f}x "
                f"{s['ran']:>5.2f}x {100 * s['lost_median']:>8.2f}pt {100 * s['lost_p90']:>8.2f}pt"
            )
    s, c = scores["seeds"]["all"], scores["calibrated"]["all"]
    print(
        f"\ncalibrated vs seeds: coverage {c['coverage']:.0%} vs {s['coverage']:.0%}; median waste "
        f"{c['waste']:.2f}x vs {s['waste']:.2f}x; median epochs run / sweet spot {c['ran']:.2f}x vs {s['ran']:.2f}x"
    )
    met = c["coverage"] >= 0.9 and c["waste"] <= 2
    print(
        f"target coverage >= 90% at median waste <= 2x: {'MET' if met else 'NOT MET'}; anchors {CALIBRATED}"
    )
    print(f"anchors that cover 90% of these runs (lr exponent {LR_EXPONENT}): {suggest(runs)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", default="runs/plan_calibration.json", help="where curves are saved"
    )
    parser.add_argument("--evaluate", action="store_true", help="only re-evaluate saved curves")
    parser.add_argument("--engine", choices=("plain", "fit"), default="plain")
    parser.add_argument("--data", nargs="+", default=list(DATA), choices=DATA)
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES), choices=SIZES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    args = parser.parse_args()
    path = Path(args.out)
    if args.evaluate:
        runs = json.loads(path.read_text())
    else:
        runs = collect(path, args.engine, args.data, args.sizes, args.seeds)
    evaluate(runs)


if __name__ == "__main__":
    main()

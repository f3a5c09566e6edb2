"""Calibrate epochpilot.plan: where does validation-based stopping find the sweet spot?

Trains small models (logistic regression and two MLPs) with Adam at three learning rates on built-in data
sets (sklearn wine / breast_cancer / digits, and mnist1d generated at any size) at 100 / 1,000 / 10,000
training samples, each run long, with early stopping on validation loss and a generous patience. The epoch of
the last validation-loss improvement of at least 0.5% is the run's sweet spot. Then, for the seeds' table and the calibrated table in
``epochpilot.plan``, it reports coverage (share of runs whose sweet spot is <= the planned max_epochs) and
waste (planned max_epochs / sweet-spot epoch). Target: coverage >= 90% at median waste <= 2x.

    .venv/bin/python bench/plan_calibration.py              # collect (a few minutes, 1 thread) + evaluate
    .venv/bin/python bench/plan_calibration.py --evaluate   # re-evaluate saved runs against plan.py's tables

Uses a plain torch loop with epochpilot's EarlyStopping (batch size from the plan's default), so the sweet
spots do not depend on the trainer's extras.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from epochpilot.plan import CALIBRATED, default_batch_size, plan
from epochpilot.stopping.early import EarlyStopping

SIZES = (100, 1_000, 10_000)
LRS = (3e-4, 1e-3, 3e-3)
MODELS = ("linear", "mlp64", "mlp256x2")
SEEDS = (0, 1)
#: Epoch cap and patience per training size: long enough that the best epoch is found, not cut.
CAP = {100: 600, 1_000: 250, 10_000: 80}
PATIENCE = {100: 60, 1_000: 30, 10_000: 12}


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
    std = np.where(
        std > 1e-8, std, 1.0
    )  # constant train columns (digits' blank pixels) stay as they are
    return ((x - mean) / std).astype(np.float32), y, ((xv - mean) / std).astype(np.float32), yv


def model(kind: str, d: int, k: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(d, k)
    if kind == "mlp64":
        return nn.Sequential(nn.Linear(d, 64), nn.ReLU(), nn.Linear(64, k))
    return nn.Sequential(
        nn.Linear(d, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, k)
    )


def train(data: tuple[np.ndarray, ...], kind: str, lr: float, n: int, seed: int) -> dict:
    """One run: Adam, constant lr, early stopping on val_loss; the best epoch is the sweet spot."""
    x, y, xv, yv = (torch.from_numpy(np.asarray(a)) for a in data)
    y, yv = y.long(), yv.long()
    torch.manual_seed(seed)
    net = model(kind, x.shape[1], int(max(y.max(), yv.max())) + 1)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    batch = default_batch_size(n)
    # an improvement must beat the best by 0.5% to count: a linear model's loss creeps down for hundreds
    # of epochs by amounts no one would train for
    stopper = EarlyStopping(
        "val_loss", "min", patience=PATIENCE[n], min_delta=0.005, min_delta_mode="rel"
    )
    accs, improved, decision, epoch = [], [], None, 0
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
            val_loss = float(loss_fn(out, yv))
            accs.append(float((out.argmax(1) == yv).float().mean()))
        decision = stopper.update(epoch, {"val_loss": val_loss})
        if decision.improved:
            improved.append(epoch)
        if decision.stop:
            break
    best = int(decision.best_epoch)
    return {
        "sweet_spot": best,
        "censored": not decision.stop,  # hit the cap: the true sweet spot may be later
        "epochs_run": epoch,
        # the longest wait between improvements up to the best: the patience needed to reach it
        "patience_needed": int(max(np.diff([0, *improved]), default=1)) - 1,
        "best_val_loss": decision.best_value,
        "val_acc_at_best": accs[best - 1],
        "best_val_acc": max(accs),
        "best_acc_epoch": int(np.argmax(accs)) + 1,
    }


def collect(path: Path) -> list[dict]:
    torch.set_num_threads(1)
    runs = []
    start = time.perf_counter()
    for name in ("wine", "breast_cancer", "digits", "mnist1d"):
        for n in SIZES:
            for seed in SEEDS if n < 10_000 else SEEDS[:1]:
                data = load(name, n, seed)
                if data is None:
                    continue
                for kind in MODELS:
                    for lr in LRS:
                        t0 = time.perf_counter()
                        run = {"data": name, "n": n, "model": kind, "lr": lr, "seed": seed}
                        run.update(train(data, kind, lr, n, seed))
                        run["seconds"] = round(time.perf_counter() - t0, 2)
                        runs.append(run)
                        print(
                            f"{name:14s} n={n:<6d} {kind:9s} lr={lr:<7g} seed={seed} "
                            f"sweet={run['sweet_spot']:<4d} acc={run['val_acc_at_best']:.3f} "
                            f"({run['seconds']:.1f}s)",
                            flush=True,
                        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(runs, indent=1))
    print(f"{len(runs)} runs in {time.perf_counter() - start:.0f}s -> {path}")
    return runs


def score(runs: list[dict], table: str) -> tuple[float, float, dict[int, tuple[float, float, int]]]:
    """Coverage and median waste of a plan table over the runs, overall and per training size."""
    covered, waste, per = [], [], {}
    for n in SIZES:
        max_epochs = plan(n, table=table).max_epochs
        sub = [r for r in runs if r["n"] == n]
        if not sub:
            continue
        cov = [
            r["sweet_spot"] <= max_epochs and not (r["censored"] and max_epochs < r["epochs_run"])
            for r in sub
        ]
        wst = [max_epochs / r["sweet_spot"] for r in sub]
        covered += cov
        waste += wst
        per[n] = (sum(cov) / len(cov), statistics.median(wst), max_epochs)
    return sum(covered) / len(covered), statistics.median(waste), per


def suggest(runs: list[dict], coverage: float = 0.9) -> dict[int, int]:
    """Per size, the smallest max_epochs that covers ``coverage`` of the sweet spots (the 90th percentile)."""
    out = {}
    for n in SIZES:
        spots = sorted(r["sweet_spot"] for r in runs if r["n"] == n)
        if spots:
            out[n] = spots[min(len(spots) - 1, math.ceil(coverage * len(spots)) - 1)]
    return out


def evaluate(runs: list[dict]) -> None:
    print(f"\n{len(runs)} runs; sweet spot (epoch of best validation loss) per training size:")
    print(
        f"{'n':>6} {'runs':>5} {'min':>5} {'p10':>5} {'median':>7} {'p90':>5} {'max':>5} {'censored':>9}"
    )
    for n in SIZES:
        spots = np.array([r["sweet_spot"] for r in runs if r["n"] == n])
        if len(spots) == 0:
            continue
        cens = sum(r["censored"] for r in runs if r["n"] == n)
        p10, p50, p90 = np.percentile(spots, [10, 50, 90])
        print(
            f"{n:>6} {len(spots):>5} {spots.min():>5} {p10:>5.0f} {p50:>7.0f} {p90:>5.0f} {spots.max():>5} {cens:>9}"
        )
    print(
        "\nTable comparison (coverage = sweet spot <= planned max_epochs; waste = max_epochs / sweet spot):"
    )
    print(f"{'table':<11} {'n':>6} {'max_epochs':>10} {'coverage':>9} {'median waste':>13}")
    results = {}
    for table in ("seeds", "calibrated"):
        cov, wst, per = score(runs, table)
        results[table] = (cov, wst)
        for n, (c, w, e) in per.items():
            print(f"{table:<11} {n:>6} {e:>10} {c:>9.0%} {w:>12.2f}x")
        print(f"{table:<11} {'all':>6} {'':>10} {cov:>9.0%} {wst:>12.2f}x")
    (sc, sw), (cc, cw) = results["seeds"], results["calibrated"]
    print(
        f"\ncalibrated vs seeds: coverage {cc:.0%} vs {sc:.0%}; median waste {cw:.2f}x vs {sw:.2f}x"
    )
    print(
        f"target: coverage >= 90% at median waste <= 2x -> {'MET' if cc >= 0.9 and cw <= 2 else 'NOT MET'}"
    )
    print(
        f"90th-percentile sweet spots (a table that covers 90%): {suggest(runs)}; current anchors {CALIBRATED}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/plan_calibration.json", help="where runs are saved")
    parser.add_argument("--evaluate", action="store_true", help="only re-evaluate saved runs")
    args = parser.parse_args()
    path = Path(args.out)
    runs = json.loads(path.read_text()) if args.evaluate else collect(path)
    evaluate(runs)


if __name__ == "__main__":
    main()

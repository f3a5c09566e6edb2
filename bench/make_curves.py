"""Generate corpus 1 for bench/stopping.py: learning curves of small MLPs and 1-D CNNs with random configs.

LCBench-style random configurations (batch size, learning rate, momentum, weight decay, depth, width, dropout,
schedule, label noise, optimizer) trained on sklearn digits / breast_cancer / wine and mnist1d at several sizes.
Every epoch records train/valid/test loss and accuracy plus the mean gradient norm. Written incrementally as
gzip members of JSON lines (``bench/data/generated.jsonl.gz``), so an interrupted run keeps what it made.

    .venv/bin/python bench/make_curves.py --n 644 --minutes 120 --seed 20261122

The committed corpus (bench/data/generated.jsonl.gz) is configs 0..643 of seed 20261122 (about 50 minutes
on 2 busy cores); a rerun with the command above resumes from whatever the file already holds. Training
uses one thread and fixed seeds, so curves repeat up to floating-point differences across machines.

Two more families (bench/_curve_families.py), written to bench/data/<family>.jsonl.gz, each with per-epoch
learning rates (``lr``, the schedule known in advance) and the validation-set size (``n_val``):

    .venv/bin/python bench/make_curves.py --family sched --n 215 --minutes 600 --seed 20261206
    .venv/bin/python bench/make_curves.py --family conv --n 115 --minutes 600 --seed 20261207

The committed files hold configs 0..214 (sched) and 0..114 (conv): what 60 minutes on 2 cores shared by
five processes made (about 12 CPU-minutes each); configs are drawn in order, so ``--n`` reproduces them.

sched: SGD + momentum MLPs under step / multi-step / cosine / one-cycle / constant schedules on synthetic
tables (50-20,000 training rows) and the sklearn sets; conv: AdamW/SGD 2-D CNNs on digits images and 1-D CNNs
on MNIST-1D. Both: label noise 0-30%, budgets 20-300 epochs (capped by a rows x epochs cost limit).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

torch.set_num_threads(1)

OUT = Path(__file__).parent / "data" / "generated.jsonl.gz"
BUDGET = 50
DATASETS = ("digits", "breast_cancer", "wine", "mnist1d")


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (X, y) as float32 / int64 arrays for one built-in data set."""
    if name == "mnist1d":
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.seed = 42
        d = make_dataset(args)
        return (
            np.concatenate([d["x"], d["x_test"]]).astype(np.float32),
            np.concatenate([d["y"], d["y_test"]]).astype(np.int64),
        )
    from sklearn import datasets

    loader = {
        "digits": datasets.load_digits,
        "breast_cancer": datasets.load_breast_cancer,
        "wine": datasets.load_wine,
    }[name]
    X, y = loader(return_X_y=True)
    return X.astype(np.float32), y.astype(np.int64)


def sample_config(rng: np.random.Generator, index: int) -> dict:
    """Draw one random configuration (all plain JSON values)."""
    dataset = str(rng.choice(DATASETS, p=[0.35, 0.15, 0.1, 0.4]))
    arch = "cnn" if dataset in ("mnist1d", "digits") and rng.random() < 0.35 else "mlp"
    return {
        "index": index,
        "dataset": dataset,
        "size": float(rng.choice([0.2, 0.4, 0.7, 1.0])),
        "arch": arch,
        "depth": int(rng.integers(1, 4)),
        "width": int(2 ** rng.integers(4, 9)),
        "dropout": float(rng.choice([0.0, 0.0, 0.1, 0.3, 0.5])),
        "optimizer": str(rng.choice(["sgd", "adam"])),
        "lr": float(10 ** rng.uniform(-3.3, -0.8)),
        "momentum": float(rng.choice([0.0, 0.5, 0.9, 0.95])),
        "weight_decay": float(rng.choice([0.0, 10 ** rng.uniform(-5, -2)])),
        "batch_size": int(rng.choice([16, 32, 64, 128, 256])),
        "schedule": str(rng.choice(["constant", "cosine", "step"])),
        "label_noise": float(rng.choice([0.0, 0.0, 0.1, 0.2, 0.3])),
        "seed": int(rng.integers(0, 2**31 - 1)),
    }


def build(cfg: dict, d_in: int, n_cls: int) -> nn.Module:
    """An MLP or a small 1-D CNN."""
    layers: list[nn.Module] = []
    if cfg["arch"] == "cnn":
        ch = max(8, cfg["width"] // 8)
        layers += [nn.Unflatten(1, (1, d_in))]
        c_in = 1
        for _ in range(cfg["depth"]):
            layers += [nn.Conv1d(c_in, ch, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2)]
            c_in, d_in = ch, d_in // 2
        layers += [nn.Flatten(), nn.Dropout(cfg["dropout"]), nn.Linear(c_in * d_in, n_cls)]
        return nn.Sequential(*layers)
    width = cfg["width"]
    for _ in range(cfg["depth"]):
        layers += [nn.Linear(d_in, width), nn.ReLU(), nn.Dropout(cfg["dropout"])]
        d_in = width
    layers.append(nn.Linear(d_in, n_cls))
    return nn.Sequential(*layers)


def lr_at(cfg: dict, epoch: int) -> float:
    """Per-epoch learning rate (epoch counted from 0)."""
    if cfg["schedule"] == "cosine":
        return cfg["lr"] * 0.5 * (1 + math.cos(math.pi * epoch / BUDGET))
    if cfg["schedule"] == "step":
        return cfg["lr"] * (0.1 ** ((epoch >= BUDGET // 2) + (epoch >= 3 * BUDGET // 4)))
    return cfg["lr"]


def r(x: float) -> float | None:
    """Round to 5 significant digits; non-finite becomes None (JSON null)."""
    return float(f"{x:.5g}") if math.isfinite(x) else None


def run(cfg: dict, data: dict) -> dict:
    """Train one configuration for BUDGET epochs and return its curves."""
    X, y = data[cfg["dataset"]]
    g = np.random.default_rng(cfg["seed"])
    idx = g.permutation(len(X))[: max(60, int(cfg["size"] * len(X)))]
    n = len(idx)
    tr, va, te = idx[: int(0.6 * n)], idx[int(0.6 * n) : int(0.8 * n)], idx[int(0.8 * n) :]
    mu, sd = X[tr].mean(0), X[tr].std(0)
    sd = np.where(sd < 1e-3, 1.0, sd)
    Xs = torch.tensor((X - mu) / sd)
    Y = torch.tensor(y)
    n_cls = int(y.max()) + 1
    y_tr = Y[tr].clone()
    flip = torch.tensor(g.random(len(tr)) < cfg["label_noise"])
    y_tr[flip] = torch.tensor(g.integers(0, n_cls, int(flip.sum())))
    torch.manual_seed(cfg["seed"])
    model = build(cfg, X.shape[1], n_cls)
    if cfg["optimizer"] == "adam":
        opt = torch.optim.Adam(
            model.parameters(), lr=cfg["lr"] / 10, weight_decay=cfg["weight_decay"]
        )
    else:
        opt = torch.optim.SGD(
            model.parameters(),
            lr=cfg["lr"],
            momentum=cfg["momentum"],
            weight_decay=cfg["weight_decay"],
        )
    base_lr = opt.param_groups[0]["lr"]
    loss_fn = nn.CrossEntropyLoss()
    out = {k: {"loss": [], "acc": []} for k in ("train", "valid", "test")}
    out["grad_norm"] = []
    diverged = False
    for epoch in range(BUDGET):
        if diverged:
            for k in ("train", "valid", "test"):
                out[k]["loss"].append(None)
                out[k]["acc"].append(None)
            out["grad_norm"].append(None)
            continue
        for group in opt.param_groups:
            group["lr"] = base_lr * lr_at(cfg, epoch) / cfg["lr"]
        model.train()
        perm = torch.tensor(g.permutation(len(tr)))
        losses, gnorms = [], []
        for s in range(0, len(tr), cfg["batch_size"]):
            b = perm[s : s + cfg["batch_size"]]
            opt.zero_grad()
            loss = loss_fn(model(Xs[tr][b]), y_tr[b])
            loss.backward()
            gnorms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1e9)))
            opt.step()
            losses.append(loss.item())
        model.eval()
        with torch.no_grad():
            for k, part in (("valid", va), ("test", te)):
                logits = model(Xs[part])
                out[k]["loss"].append(r(float(loss_fn(logits, Y[part]))))
                out[k]["acc"].append(r(float((logits.argmax(1) == Y[part]).float().mean())))
            logits = model(Xs[tr])
            out["train"]["acc"].append(r(float((logits.argmax(1) == y_tr).float().mean())))
        out["train"]["loss"].append(r(float(np.mean(losses))))
        out["grad_norm"].append(r(float(np.mean(gnorms))))
        if not all(math.isfinite(v) for v in losses) or out["valid"]["loss"][-1] is None:
            diverged = True
            for k in ("train", "valid", "test"):
                for m in ("loss", "acc"):
                    out[k][m][-1] = None
            out["grad_norm"][-1] = None
    return {"config": cfg, "budget": BUDGET, "n": n, **out}


def main_family(args: argparse.Namespace) -> None:
    """Generate (or resume) a ``sched`` / ``conv`` corpus, one gzip member per curve."""
    import _curve_families as fam

    done = set()
    if args.out.exists():
        with gzip.open(args.out, "rt") as f:
            done = {json.loads(line)["config"]["index"] for line in f if line.strip()}
    rng = np.random.default_rng(args.seed)
    configs = [fam.sample(rng, i, args.family) for i in range(args.n)]
    names = {c["dataset"] for c in configs} - {"synth"}
    data = {}
    for name in names:
        if name == "mnist1d":
            from mnist1d.data import get_dataset_args, make_dataset

            a = get_dataset_args()
            a.seed, a.num_samples = 42, 25000
            d = make_dataset(a)
            data[name] = (
                np.concatenate([d["x"], d["x_test"]]).astype(np.float32),
                np.concatenate([d["y"], d["y_test"]]).astype(np.int64),
            )
        else:
            data[name] = load(name)
    start = time.time()
    for cfg in configs:
        if cfg["index"] in done:
            continue
        if time.time() - start > 60 * args.minutes:
            print(f"time limit reached after {len(done)} curves", flush=True)
            break
        t, c0 = time.time(), time.process_time()
        rec = fam.run(cfg, data)
        with gzip.open(args.out, "at") as f:
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        done.add(cfg["index"])
        print(
            f"{cfg['index']:4d} {cfg['dataset']:13s} {cfg['arch']:5s} n={cfg['n_train']:5d} "
            f"E={cfg['budget']:3d} {cfg['schedule']:13s} {time.time() - t:5.1f}s wall "
            f"{time.process_time() - c0:5.1f}s cpu",
            flush=True,
        )
    print(f"done: {len(done)} curves in {time.time() - start:.0f}s -> {args.out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400, help="number of curves")
    ap.add_argument(
        "--minutes", type=float, default=20.0, help="stop starting new curves after this"
    )
    ap.add_argument(
        "--seed", type=int, default=20261122, help="generator seed (configs and training)"
    )
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--family",
        choices=("mlp", "sched", "conv"),
        default="mlp",
        help="mlp: corpus 1 (generated.jsonl.gz); sched, conv: bench/_curve_families.py",
    )
    args = ap.parse_args()
    if args.out is None:
        args.out = OUT if args.family == "mlp" else OUT.with_name(f"{args.family}.jsonl.gz")
    if args.family != "mlp":
        main_family(args)
        return
    done = set()
    if args.out.exists():
        with gzip.open(args.out, "rt") as f:
            done = {json.loads(line)["config"]["index"] for line in f if line.strip()}
    rng = np.random.default_rng(args.seed)
    configs = [sample_config(rng, i) for i in range(args.n)]
    data = {name: load(name) for name in DATASETS}
    start = time.time()
    for cfg in configs:
        if cfg["index"] in done:
            continue
        if time.time() - start > 60 * args.minutes:
            print(f"time limit reached after {len(done)} curves", flush=True)
            break
        t = time.time()
        rec = run(cfg, data)
        with gzip.open(args.out, "at") as f:
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        done.add(cfg["index"])
        print(
            f"{cfg['index']:4d} {cfg['dataset']:13s} {cfg['arch']} {time.time() - t:5.1f}s "
            f"best val {min((v for v in rec['valid']['loss'] if v is not None), default=float('nan')):.3f}",
            flush=True,
        )
    print(
        f"done: {len(done)} curves in {time.time() - start:.0f}s -> {args.out} (pid {os.getpid()})"
    )


if __name__ == "__main__":
    main()

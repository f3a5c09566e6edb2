"""Two more curve families for bench/make_curves.py (``--family sched`` and ``--family conv``).

sched: MLPs trained with SGD + momentum under step / multi-step / cosine / one-cycle / constant schedules
       (per-update learning rates), on synthetic tables (50-20,000 training rows) and the small sklearn
       sets, label noise 0-30%, budgets 20-300 epochs.
conv:  small 2-D CNNs on the 8x8 digits images and 1-D CNNs on MNIST-1D (up to 20,000 training curves),
       AdamW (and some SGD), cosine / one-cycle / warmup-cosine / step / constant, label noise 0-30%.

Every record also holds ``lr``: the mean learning rate of each epoch of the budget (known in advance, as a
trainer knows its schedule), and ``n_val``: the validation-set size (accuracy is quantised by it).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

#: cost cap: training rows x epochs (keeps one config to a few CPU-seconds)
ROW_EPOCHS = {"sched": 1_500_000, "conv": 500_000}


def lr_factor(kind: str, frac: float, cfg: dict) -> float:
    """Schedule multiplier at ``frac`` (0..1) of the total updates."""
    if kind == "constant":
        return 1.0
    if kind == "step":
        return 0.1 if frac >= cfg["milestone"] else 1.0
    if kind == "multistep":
        return 0.1 ** ((frac >= 0.5) + (frac >= 0.75))
    if kind == "cosine":
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * frac))
    if kind == "warmup_cosine":
        if frac < 0.05:
            return (frac + 1e-3) / 0.05
        return 0.5 * (1 + math.cos(math.pi * (frac - 0.05) / 0.95))
    if kind == "onecycle":  # torch OneCycleLR shape: lr/25 -> lr over 30%, cosine down to lr/1e4
        if frac < 0.3:
            return 0.04 + 0.96 * 0.5 * (1 - math.cos(math.pi * frac / 0.3))
        return 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * (frac - 0.3) / 0.7))
    raise ValueError(kind)


def sample(rng: np.random.Generator, index: int, family: str) -> dict:
    """One random configuration of ``family`` (plain JSON values)."""
    if family == "sched":
        dataset = str(
            rng.choice(["synth", "breast_cancer", "wine", "digits"], p=[0.6, 0.1, 0.1, 0.2])
        )
        cap = {"synth": 20000, "breast_cancer": 340, "wine": 107, "digits": 1080}[dataset]
        schedule = str(rng.choice(["constant", "step", "multistep", "cosine", "onecycle"]))
        opt = "sgd"
        lr = float(10 ** rng.uniform(-2.5, -0.3))
        arch = "mlp"
    else:
        dataset = str(rng.choice(["digits", "mnist1d"], p=[0.4, 0.6]))
        cap = {"digits": 1080, "mnist1d": 20000}[dataset]
        schedule = str(rng.choice(["constant", "cosine", "onecycle", "warmup_cosine", "step"]))
        opt = str(rng.choice(["adamw", "sgd"], p=[0.7, 0.3]))
        lr = (
            float(10 ** rng.uniform(-3.7, -1.7))
            if opt == "adamw"
            else float(10 ** rng.uniform(-2.3, -0.5))
        )
        arch = "cnn2d" if dataset == "digits" else "cnn1d"
    n_train = int(min(cap, round(10 ** rng.uniform(math.log10(50), math.log10(20000)))))
    budget = int(round(10 ** rng.uniform(math.log10(20), math.log10(300))))
    budget = max(20, min(budget, ROW_EPOCHS[family] // max(n_train, 1)))
    return {
        "index": index,
        "family": family,
        "dataset": dataset,
        "n_train": n_train,
        "arch": arch,
        "depth": int(rng.integers(1, 4)),
        "width": int(2 ** rng.integers(4, 9)) if arch == "mlp" else int(2 ** rng.integers(3, 6)),
        "dropout": float(rng.choice([0.0, 0.0, 0.1, 0.3])),
        "optimizer": opt,
        "lr": lr,
        "momentum": float(rng.choice([0.9, 0.9, 0.95, 0.5])),
        "weight_decay": float(rng.choice([0.0, 10 ** rng.uniform(-5, -3)]))
        if opt == "sgd"
        else float(10 ** rng.uniform(-4, -1)),
        "batch_size": int(rng.choice([16, 32, 64, 128, 256])),
        "schedule": schedule,
        "milestone": float(rng.uniform(0.3, 0.7)),
        "label_noise": float(rng.choice([0.0, 0.0, 0.05, 0.1, 0.2, 0.3])),
        "budget": budget,
        # synthetic table shape
        "n_features": int(rng.integers(8, 64)),
        "n_classes": int(rng.integers(2, 8)),
        "class_sep": float(rng.uniform(0.4, 1.5)),
        "seed": int(rng.integers(0, 2**31 - 1)),
    }


def dataset(cfg: dict, data: dict) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) with enough rows for train + validation + test of this config."""
    if cfg["dataset"] != "synth":
        return data[cfg["dataset"]]
    from sklearn.datasets import make_classification

    n = cfg["n_train"] + 3000
    X, y = make_classification(
        n_samples=n,
        n_features=cfg["n_features"],
        n_informative=max(4, cfg["n_features"] // 3),
        n_redundant=cfg["n_features"] // 4,
        n_classes=cfg["n_classes"],
        n_clusters_per_class=2,
        class_sep=cfg["class_sep"],
        flip_y=0.02,
        random_state=cfg["seed"] % 2**31,
    )
    return X.astype(np.float32), y.astype(np.int64)


def build(cfg: dict, d_in: int, n_cls: int) -> nn.Module:
    """An MLP, a 1-D CNN (MNIST-1D) or a 2-D CNN (8x8 digits)."""
    layers: list[nn.Module] = []
    if cfg["arch"] == "mlp":
        width = cfg["width"]
        for _ in range(cfg["depth"]):
            layers += [nn.Linear(d_in, width), nn.ReLU(), nn.Dropout(cfg["dropout"])]
            d_in = width
        return nn.Sequential(*layers, nn.Linear(d_in, n_cls))
    ch = cfg["width"]
    if cfg["arch"] == "cnn2d":
        layers.append(nn.Unflatten(1, (1, 8, 8)))
        c_in, side = 1, 8
        for _ in range(min(cfg["depth"], 2)):
            layers += [nn.Conv2d(c_in, ch, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c_in, side = ch, side // 2
        flat = c_in * side * side
    else:
        layers.append(nn.Unflatten(1, (1, d_in)))
        c_in, length = 1, d_in
        for _ in range(cfg["depth"]):
            layers += [nn.Conv1d(c_in, ch, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2)]
            c_in, length = ch, length // 2
        flat = c_in * length
    layers += [nn.Flatten(), nn.Dropout(cfg["dropout"]), nn.Linear(flat, n_cls)]
    return nn.Sequential(*layers)


def _r(x: float) -> float | None:
    return float(f"{x:.5g}") if math.isfinite(x) else None


def run(cfg: dict, data: dict) -> dict:
    """Train one configuration for its budget; per-epoch curves, per-epoch mean lr and grad norm."""
    X, y = dataset(cfg, data)
    g = np.random.default_rng(cfg["seed"])
    perm = g.permutation(len(X))
    n_tr = min(cfg["n_train"], int(0.6 * len(X)))
    n_rest = len(X) - n_tr
    n_va = int(min(max(30, n_tr // 4), 2000, n_rest // 2))
    n_te = int(min(2000, n_rest - n_va))
    tr, va, te = perm[:n_tr], perm[n_tr : n_tr + n_va], perm[n_tr + n_va : n_tr + n_va + n_te]
    mu, sd = X[tr].mean(0), X[tr].std(0)
    sd = np.where(sd < 1e-3, 1.0, sd)
    if cfg["arch"] == "cnn2d":  # keep the image: one global scale
        mu, sd = X[tr].mean(), max(float(X[tr].std()), 1e-3)
    Xs = torch.tensor(((X - mu) / sd).astype(np.float32))
    Y = torch.tensor(y)
    n_cls = int(y.max()) + 1
    y_tr = Y[tr].clone()
    flip = torch.tensor(g.random(len(tr)) < cfg["label_noise"])
    y_tr[flip] = torch.tensor(g.integers(0, n_cls, int(flip.sum())))
    torch.manual_seed(cfg["seed"])
    model = build(cfg, X.shape[1], n_cls)
    if cfg["optimizer"] == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    else:
        opt = torch.optim.SGD(
            model.parameters(),
            lr=cfg["lr"],
            momentum=cfg["momentum"],
            weight_decay=cfg["weight_decay"],
        )
    budget = cfg["budget"]
    bs = min(cfg["batch_size"], n_tr)
    per_epoch = math.ceil(n_tr / bs)
    total = budget * per_epoch
    lr_epoch = [
        _r(
            cfg["lr"]
            * float(
                np.mean(
                    [
                        lr_factor(cfg["schedule"], (e * per_epoch + s) / total, cfg)
                        for s in range(per_epoch)
                    ]
                )
            )
        )
        for e in range(budget)
    ]
    loss_fn = nn.CrossEntropyLoss()
    out = {k: {"loss": [], "acc": []} for k in ("train", "valid", "test")}
    out["grad_norm"] = []
    Xtr, Xva, Xte = Xs[tr], Xs[va], Xs[te]
    diverged = False
    step = 0
    for _epoch in range(budget):
        if diverged:
            for k in ("train", "valid", "test"):
                out[k]["loss"].append(None)
                out[k]["acc"].append(None)
            out["grad_norm"].append(None)
            continue
        model.train()
        order = torch.tensor(g.permutation(n_tr))
        losses, gnorms, correct = [], [], 0
        for s in range(0, n_tr, bs):
            for group in opt.param_groups:
                group["lr"] = cfg["lr"] * lr_factor(cfg["schedule"], step / total, cfg)
            b = order[s : s + bs]
            opt.zero_grad()
            logits = model(Xtr[b])
            loss = loss_fn(logits, y_tr[b])
            loss.backward()
            gnorms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1e9)))
            opt.step()
            step += 1
            losses.append(loss.item())
            correct += int((logits.argmax(1) == y_tr[b]).sum())
        model.eval()
        with torch.no_grad():
            for k, xp, yp in (("valid", Xva, Y[va]), ("test", Xte, Y[te])):
                logits = model(xp)
                out[k]["loss"].append(_r(float(loss_fn(logits, yp))))
                out[k]["acc"].append(_r(float((logits.argmax(1) == yp).float().mean())))
        out["train"]["loss"].append(_r(float(np.mean(losses))))
        out["train"]["acc"].append(
            _r(correct / n_tr)
        )  # running accuracy over the epoch (as trainers log it)
        out["grad_norm"].append(_r(float(np.mean(gnorms))))
        if not all(math.isfinite(v) for v in losses) or out["valid"]["loss"][-1] is None:
            diverged = True
            for k in ("train", "valid", "test"):
                for m in ("loss", "acc"):
                    out[k][m][-1] = None
            out["grad_norm"][-1] = None
    return {
        "config": cfg,
        "budget": budget,
        "n": n_tr,
        "n_val": len(va),
        "n_test": len(te),
        "lr": lr_epoch,
        **out,
    }

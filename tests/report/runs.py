"""Hand-written run directories (history.jsonl, summary.json, config.toml) for the report tests.

They follow /notes/formats.md without depending on the trainer, so the report is tested on its contract.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

CONFIG = """\
name = "digits-mlp"
seed = 0

[data]
dataset = "digits"
val_fraction = 0.2

[model]
hidden = [128, 64]
dropout = 0.1

[train]
optimizer = "adamw"
lr = 0.003
weight_decay = 0.0001
batch_size = 64
max_epochs = 40
schedule = "warmup(cosine)"
warmup_epochs = 2

[stopping]
monitor = "val_loss"
mode = "min"
patience = 5
restore_best = true
"""


def history_rows(epochs: int = 28, seed: int = 0, *, overfit: bool = True) -> list[dict]:
    """A realistic overfitting run: val bottoms near epoch 18 and rises while train keeps falling."""
    rng = np.random.default_rng(seed)
    rows, spe = [], 23
    for e in range(1, epochs + 1):
        train = 2.2 * math.exp(-e / 4) + 0.05 + rng.normal(0, 0.004)
        val = 2.2 * math.exp(-e / 4) + 0.22 + rng.normal(0, 0.006)
        if overfit:
            val += 0.012 * max(0, e - 18) ** 1.4
        step = e * spe
        warm = 2 * spe
        lr = (
            0.003 * step / warm
            if step < warm
            else 0.0015 * (1 + math.cos(math.pi * (step - warm) / (40 * spe - warm)))
        )
        rows.append(
            {
                "epoch": e,
                "step": step,
                "train_loss": round(train, 5),
                "val_loss": round(val, 5),
                "train_accuracy": round(min(1.0, 1.0 - 0.9 * math.exp(-e / 3.5)), 4),
                "val_accuracy": round(0.96 - 0.86 * math.exp(-e / 3.5) - 0.002 * max(0, e - 18), 4),
                "lr": lr,
                "grad_norm": round(3.5 * math.exp(-e / 6) + 0.4 + rng.normal(0, 0.05), 4),
                "epoch_time_s": round(0.41 + rng.normal(0, 0.02), 3),
                "samples_per_s": round(3500 + rng.normal(0, 80), 1),
            }
        )
    return rows


def stopped_run(patience: int = 5) -> list[dict]:
    """The overfitting run as early stopping would have cut it: ``patience`` epochs after its best."""
    rows = history_rows(40)
    best = int(np.argmin([r["val_loss"] for r in rows])) + 1
    return rows[: best + patience]


def summary_for(rows: list[dict], *, plan: bool = True) -> dict:
    vals = [r["val_loss"] for r in rows]
    best = int(np.argmin(vals)) + 1
    summary = {
        "monitor": "val_loss",
        "mode": "min",
        "best_epoch": best,
        "best_value": vals[best - 1],
        "stopped_epoch": len(rows),
        "stop_reason": "patience",
        "stop_message": f"val_loss did not improve for {len(rows) - best} epochs after epoch {best} "
        f"(best {vals[best - 1]:.4f}); restored the epoch-{best} weights",
        "max_epochs": 40,
        "epochs_run": len(rows),
        "total_steps": rows[-1]["step"],
        "steps_per_epoch": 23,
        "batch_size": 64,
        "n_train": 1437,
        "n_val": 360,
        "elapsed_s": 12.7,
        "epochpilot_version": "0.1.0",
        "final_metrics": rows[best - 1],
    }
    if plan:
        summary["plan"] = {
            "max_epochs": 40,
            "patience": 5,
            "warmup_steps": 46,
            "schedule": "Warmup(Cosine(...))",
            "steps_per_epoch": 23,
            "total_steps": 920,
            "batch_size": 64,
            "lr": 0.003,
            "n_samples": 1437,
            "rationale": [
                "1437 samples with batch 64 give 23 steps per epoch",
                "small tabular data: 40 epochs cover the usual convergence range",
            ],
        }
    return summary


def write_run(
    path: Path, rows: list[dict], summary: dict | None, config: str | None = CONFIG
) -> Path:
    """Write a run directory by hand: history.jsonl (+ summary.json, config.toml when given)."""
    path.mkdir(parents=True, exist_ok=True)
    with (path / "history.jsonl").open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    if summary is not None:
        (path / "summary.json").write_text(json.dumps(summary, indent=1))
    if config is not None:
        (path / "config.toml").write_text(config)
    return path

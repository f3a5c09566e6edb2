"""Batch-size search: samples/s against batch size, the batch each goal picks, and the search's time against
Lightning's ``Tuner.scale_batch_size(mode="binsearch")`` on the same model (CPU, one thread).

    .venv/bin/python bench/batch_size.py                # both models, tables printed, table.md in a temp folder
    .venv/bin/python bench/batch_size.py --only mlp --cap 512 --out /tmp/bs

Models: the default-style MLP (64 -> 128 -> 10) on sklearn digits (1,437 training rows) and a small 1-D CNN
on synthetic signals (2,048 rows, length 128, 4 classes). Both searches start at batch 2, run 3 steps per
try (epochpilot: 1 warm-up + 3 timed) and stop at ``--cap`` (a CPU does not run out of memory here, so the
cap ends the doubling). The ratio is one run each (Lightning's time / epochpilot's), not a median. Nothing is
written into the repository: Lightning's logs and temporary checkpoint go under ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from epochpilot.train.batch_size import find_batch_size  # noqa: E402

torch.set_num_threads(1)
LOSS = nn.functional.cross_entropy


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(X))[: int(0.8 * len(X))]
    return torch.from_numpy((X[order] / 16.0).astype(np.float32)), torch.from_numpy(y[order]).long()


def signals(n: int = 2048, length: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (n,), generator=g)
    t = torch.linspace(0, 1, length)
    X = torch.sin(2 * torch.pi * (y[:, None] + 1) * 3 * t) + 0.5 * torch.randn(
        n, length, generator=g
    )
    return X[:, None, :], y


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(1, 16, 7, padding=3),
        nn.ReLU(),
        nn.MaxPool1d(2),
        nn.Conv1d(16, 32, 5, padding=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.Linear(32, 4),
    )


def lightning_search(make_model, data, cap: int, root: Path) -> tuple[float, int | None]:
    import lightning.pytorch as pl
    from lightning.pytorch.tuner import Tuner

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = make_model()
            self.batch_size = 2

        def training_step(self, batch, _idx):
            x, y = batch
            return LOSS(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

        def train_dataloader(self):
            ds = torch.utils.data.TensorDataset(*data)
            return torch.utils.data.DataLoader(ds, batch_size=self.batch_size, shuffle=True)

    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        default_root_dir=str(root),
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
    )
    module = Module()
    start = time.perf_counter()
    found = Tuner(trainer).scale_batch_size(
        module, mode="binsearch", steps_per_trial=3, init_val=2, max_val=cap
    )
    return time.perf_counter() - start, found


def run(name: str, make_model, data, cap: int, out: Path) -> tuple[list[str], list[str]]:
    with (
        warnings.catch_warnings()
    ):  # warm both up (first backward, lazy imports) before timing either
        warnings.simplefilter("ignore")
        lightning_search(make_model, data, 4, out / f"{name}-warmup")
    find_batch_size(make_model(), data, LOSS, min_batch=2, max_batch=4)
    start = time.perf_counter()
    memory = find_batch_size(make_model(), data, LOSS, min_batch=2, max_batch=cap)
    ours = time.perf_counter() - start
    speed = find_batch_size(make_model(), data, LOSS, min_batch=2, max_batch=cap, goal="throughput")
    accum = find_batch_size(
        make_model(), data, LOSS, min_batch=2, max_batch=cap, effective_batch=96
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs, found = lightning_search(make_model, data, cap, out / name)
    tried = [
        f"| {name} | {t.batch} | {t.outcome} | {t.seconds:.3f} | {t.samples_per_s:,.0f} |"
        for t in memory.tried
    ]
    picks = [
        f"| {name} | {memory.batch_size} | {speed.batch_size} ({speed.samples_per_s:,.0f}/s) | "
        f"{accum.batch_size} x {accum.accumulation} | {ours:.2f} | {theirs:.2f} | "
        f"{theirs / ours:.1f}x | {found} |"
    ]
    return tried, picks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("mlp", "cnn"))
    parser.add_argument("--cap", type=int, default=1024, help="largest batch tried (both searches)")
    parser.add_argument(
        "--out", type=Path, default=None, help="folder for table.md and Lightning's files"
    )
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="epochpilot-bench-bs-"))
    out.mkdir(parents=True, exist_ok=True)
    cases = {"mlp": (mlp, digits()), "cnn": (cnn, signals())}
    tried, picks = [], []
    for name, (make_model, data) in cases.items():
        if args.only in (None, name):
            t, p = run(name, make_model, data, args.cap, out)
            tried += t
            picks += p
    table = "\n".join(
        [
            "| model | batch | outcome | try s | samples/s |",
            "|---|---:|---|---:|---:|",
            *tried,
            "",
            "| model | goal=memory | goal=throughput | effective_batch=96 | epochpilot search s "
            "| Lightning binsearch s | Lightning / epochpilot | Lightning pick |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
            *picks,
        ]
    )
    print(table)
    (out / "table.md").write_text(table + "\n")
    print(f"\n(table written to {out / 'table.md'})")


if __name__ == "__main__":
    main()

"""Trainer overhead: per-epoch time of epochpilot.fit against a hand-written PyTorch loop, Lightning and Keras 3.

    .venv/bin/python bench/overhead.py                 # both models, 5 interleaved repetitions
    .venv/bin/python bench/overhead.py --reps 3 --epochs 6 --only mlp

Every runner trains the same model on the same data (sklearn digits, 1437 train / 360 val, batch 32, Adam
1e-3, one CPU thread) and validates once per epoch. An epoch's time runs from one epoch start to the next, so
validation, records, checkpoints and stop decisions are all inside it. The first epoch of each run is a
warm-up and is dropped; repetitions are interleaved (runner order rotates) and medians are reported, as wall
time and as CPU time of the training thread (steadier on a shared machine; it leaves out the
background checkpoint writer, whose cost is reported on its own line). Ratios are to the raw loop that slices
in-memory tensors (the fastest hand-written loop); the last column divides by the tutorial loop over a
DataLoader instead.

epochpilot runs with early stopping (patience large enough not to stop), a checkpoint every epoch (plus
``best`` on improvement) and history files on; progress bar and TensorBoard off, then on in a separate row.
Lightning runs with its defaults (checkpoint every epoch, CSV/TensorBoard logger) plus EarlyStopping, the
progress bar off. Keras 3 (torch backend) runs ``model.fit`` with EarlyStopping, verbose=0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
BATCH = 32
LR = 1e-3


def load() -> tuple[torch.Tensor, ...]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(X))
    X, y = X[order], y[order]
    cut = int(0.8 * len(X))
    return (
        torch.from_numpy(X[:cut]),
        torch.from_numpy(y[:cut]).long(),
        torch.from_numpy(X[cut:]),
        torch.from_numpy(y[cut:]).long(),
    )


def make_model(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "mlp":
        return torch.nn.Sequential(
            torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)
        )
    return torch.nn.Sequential(
        torch.nn.Unflatten(1, (1, 64)),
        torch.nn.Conv1d(1, 16, 5, padding=2),
        torch.nn.ReLU(),
        torch.nn.MaxPool1d(2),
        torch.nn.Conv1d(16, 16, 5, padding=2),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(16 * 32, 10),
    )


class Clock:
    """Records (wall, cpu) at each epoch start and at the end; per-epoch durations drop the warm-up epoch."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, float]] = []

    def tick(self) -> None:
        self.marks.append((time.perf_counter(), time.thread_time()))

    def epochs(self) -> tuple[list[float], list[float]]:
        wall = [b[0] - a[0] for a, b in zip(self.marks, self.marks[1:], strict=False)][1:]
        cpu = [b[1] - a[1] for a, b in zip(self.marks, self.marks[1:], strict=False)][1:]
        return wall, cpu


def raw_tensors(kind: str, data: tuple, epochs: int) -> Clock:
    Xt, yt, Xv, yv = data
    model = make_model(kind)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    clock = Clock()
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        clock.tick()
        model.train()
        perm = torch.randperm(len(Xt), generator=g)
        total = 0.0
        for i in range(0, len(Xt), BATCH):
            idx = perm[i : i + BATCH]
            xb, yb = Xt[idx], yt[idx]
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(yb)
        model.eval()
        with torch.no_grad():
            val = sum(
                loss_fn(model(Xv[i : i + BATCH]), yv[i : i + BATCH]).item() * len(yv[i : i + BATCH])
                for i in range(0, len(Xv), BATCH)
            )
        _ = (total / len(Xt), val / len(Xv))
    clock.tick()
    return clock


def raw_loader(kind: str, data: tuple, epochs: int) -> Clock:
    Xt, yt, Xv, yv = data
    train = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(Xt, yt), batch_size=BATCH, shuffle=True
    )
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(Xv, yv), batch_size=BATCH)
    model = make_model(kind)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    clock = Clock()
    for _ in range(epochs):
        clock.tick()
        model.train()
        for xb, yb in train:
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            _ = sum(loss_fn(model(xb), yb).item() for xb, yb in val)
    clock.tick()
    return clock


def epochpilot_runner(
    records: bool, loader: bool = False, checkpoints: bool = True
) -> Callable[[str, tuple, int], Clock]:
    def run(kind: str, data: tuple, epochs: int) -> Clock:
        from epochpilot.stopping import EarlyStopping
        from epochpilot.train import Callback, fit

        Xt, yt, Xv, yv = data
        clock = Clock()

        class Tick(Callback):
            def on_epoch_start(self, state):
                clock.tick()

        train: object = (Xt, yt)
        if loader:
            train = torch.utils.data.DataLoader(
                torch.utils.data.TensorDataset(Xt, yt), batch_size=BATCH, shuffle=True
            )
        with tempfile.TemporaryDirectory() as tmp:
            result = fit(
                make_model(kind),
                train,
                (Xv, yv),
                batch_size=BATCH,
                lr=LR,
                max_epochs=epochs,
                seed=0,
                stopper=EarlyStopping("val_loss", "min", patience=10 * epochs),
                run_dir=Path(tmp) / "run",
                checkpoint_every=1 if checkpoints else None,
                tensorboard=records,
                progress=records,
                callbacks=[Tick()],
            )
            clock.tick()
            RUNS.append(result)
        return clock

    return run


RUNS: list = []


def lightning_runner(kind: str, data: tuple, epochs: int) -> Clock:
    import lightning as L

    Xt, yt, Xv, yv = data
    clock = Clock()

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = make_model(kind)
            self.loss = torch.nn.CrossEntropyLoss()

        def training_step(self, batch, _):
            x, y = batch
            loss = self.loss(self.net(x), y)
            self.log("train_loss", loss, on_epoch=True, on_step=False)
            return loss

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val_loss", self.loss(self.net(x), y), on_epoch=True)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=LR)

    class Tick(L.Callback):
        def on_train_epoch_start(self, trainer, module):
            clock.tick()

    train = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(Xt, yt), batch_size=BATCH, shuffle=True
    )
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(Xv, yv), batch_size=BATCH)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = L.Trainer(
            max_epochs=epochs,
            accelerator="cpu",
            devices=1,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=tmp,
            num_sanity_val_steps=0,
            callbacks=[Tick(), L.pytorch.callbacks.EarlyStopping("val_loss", patience=10 * epochs)],
        )
        trainer.fit(Module(), train, val)
        clock.tick()
    return clock


def keras_runner(kind: str, data: tuple, epochs: int) -> Clock:
    import keras

    Xt, yt, Xv, yv = (t.numpy() for t in data)
    clock = Clock()
    keras.utils.set_random_seed(0)
    if kind == "mlp":
        model = keras.Sequential(
            [keras.Input((64,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)]
        )
    else:
        model = keras.Sequential(
            [
                keras.Input((64,)),
                keras.layers.Reshape((64, 1)),
                keras.layers.Conv1D(16, 5, padding="same", activation="relu"),
                keras.layers.MaxPooling1D(2),
                keras.layers.Conv1D(16, 5, padding="same", activation="relu"),
                keras.layers.Flatten(),
                keras.layers.Dense(10),
            ]
        )
    model.compile(
        optimizer=keras.optimizers.Adam(LR),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )

    class Tick(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            clock.tick()

    model.fit(
        Xt,
        yt,
        batch_size=BATCH,
        epochs=epochs,
        validation_data=(Xv, yv),
        verbose=0,
        callbacks=[Tick(), keras.callbacks.EarlyStopping("val_loss", patience=10 * epochs)],
    )
    clock.tick()
    return clock


RUNNERS: dict[str, Callable[[str, tuple, int], Clock]] = {
    "raw loop (tensor slices)": raw_tensors,
    "raw loop (DataLoader)": raw_loader,
    "epochpilot.fit (stop+ckpt+history)": epochpilot_runner(records=False),
    "epochpilot.fit, no checkpoints": epochpilot_runner(records=False, checkpoints=False),
    "epochpilot.fit, DataLoader input": epochpilot_runner(records=False, loader=True),
    "epochpilot.fit + TensorBoard + progress": epochpilot_runner(records=True),
    "Lightning Trainer": lightning_runner,
    "Keras 3 (torch backend)": keras_runner,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument(
        "--epochs", type=int, default=6, help="epochs per run (the first is a warm-up)"
    )
    parser.add_argument("--only", choices=["mlp", "cnn"], default=None)
    parser.add_argument(
        "--skip", nargs="*", default=[], help="runner names to leave out (substring match)"
    )
    args = parser.parse_args()
    data = load()
    runners = {
        k: v for k, v in RUNNERS.items() if not any(s.lower() in k.lower() for s in args.skip)
    }
    for kind in [args.only] if args.only else ["mlp", "cnn"]:
        wall: dict[str, list[float]] = {k: [] for k in runners}
        cpu: dict[str, list[float]] = {k: [] for k in runners}
        names = list(runners)
        for rep in range(args.reps):
            order = names[rep % len(names) :] + names[: rep % len(names)]
            for name in order:
                RUNS.clear()
                clock = runners[name](kind, data, args.epochs)
                w, c = clock.epochs()
                wall[name] += w
                cpu[name] += c
        base_w = statistics.median(wall[names[0]])
        base_c = statistics.median(cpu[names[0]])
        print(
            f"\n### {kind.upper()} on sklearn digits (batch {BATCH}, {args.reps} reps x {args.epochs - 1} timed epochs)\n"
        )
        loader = "raw loop (DataLoader)"
        base_dl = statistics.median(wall[loader]) if loader in wall else float("nan")
        print(
            "| runner | epoch wall ms (median) | x raw (wall) | loop-thread CPU ms (median) | x raw (CPU) "
            "| x raw DataLoader loop (wall) |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        for name in names:
            mw, mc = statistics.median(wall[name]), statistics.median(cpu[name])
            print(
                f"| {name} | {mw * 1e3:.1f} | {mw / base_w:.2f} | {mc * 1e3:.1f} | {mc / base_c:.2f} "
                f"| {mw / base_dl:.2f} |"
            )
        save_wall, save_cpu = checkpoint_cost(kind, data)
        key = "epochpilot.fit (stop+ckpt+history)"
        ep_w = statistics.median(wall[key]) if key in wall else base_w
        ep_c = statistics.median(cpu[key]) if key in cpu else base_c
        print(
            f"\ncheckpoint write (model+optimizer+state; background thread): {save_wall * 1e3:.1f} ms wall "
            f"= {save_wall / ep_w:.2f} x an epoch's wall time, {save_cpu * 1e3:.1f} ms CPU = {save_cpu / ep_c:.2f} x "
            f"the loop's CPU per epoch"
        )


def checkpoint_cost(kind: str, data: tuple) -> tuple[float, float]:
    """Median time to write one checkpoint synchronously, measured on a short run."""
    from epochpilot.train import fit
    from epochpilot.train.checkpoint import CheckpointDir

    times: list[float] = []
    real = CheckpointDir._save_now

    def timed(self, name, after, parts, *rest):
        t0, c0 = time.perf_counter(), time.thread_time()
        out = real(self, name, after, parts, *rest)
        if name != "best":
            times.append((time.perf_counter() - t0, time.thread_time() - c0))
        return out

    CheckpointDir._save_now = timed
    try:
        with tempfile.TemporaryDirectory() as tmp:
            fit(
                make_model(kind),
                data[:2],
                data[2:],
                max_epochs=5,
                seed=0,
                stopper=False,
                run_dir=Path(tmp) / "r",
            )
    finally:
        CheckpointDir._save_now = real
    return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)


if __name__ == "__main__":
    main()

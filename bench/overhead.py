"""Trainer overhead: per-epoch time of epochpilot.fit against hand-written PyTorch loops, Lightning and Keras 3.

    .venv/bin/python bench/overhead.py                 # MLP, CNN, transformer; 8 interleaved repetitions
    .venv/bin/python bench/overhead.py --quick         # 2 repetitions of 4 epochs (a few minutes)
    .venv/bin/python bench/overhead.py --device cuda   # the same on the GPU (refused where there is none)
    .venv/bin/python bench/overhead.py --reps 3 --epochs 6 --only mlp
    .venv/bin/python bench/overhead.py --per-update      # the per-update cost alone (400-update epochs)
    .venv/bin/python bench/overhead.py --per-epoch       # the fixed cost of an epoch (one-update epochs)
    .venv/bin/python bench/overhead.py --lockstep --epochs 40  # raw loops and fit one epoch each in turn

Every runner trains the same model on the same data (sklearn digits, 1437 train / 360 val, batch 32, Adam
1e-3, one CPU thread) and validates once per epoch. Models: an MLP, a 1-D CNN and a transformer encoder (the
8x8 image as 8 tokens of 8 pixels, 2 post-norm layers, d_model 64, 4 heads, mean-pooled). An epoch's time runs
from one epoch start to the next (on CUDA after a synchronize), so validation, records, checkpoints and stop
decisions are all inside it. The first epoch of each run is a warm-up and is dropped; repetitions are
interleaved (runner order rotates) and medians are reported, as wall time and as CPU time of the training
thread (steadier on a shared machine; it leaves out the background checkpoint writer, whose cost is reported on
its own line). Ratios are to the raw loop that slices in-memory tensors and reads its loss sums once per epoch
(the fastest hand-written loop); the next column divides by the tutorial loop over a DataLoader instead. Each
ratio is paired: the median over repetitions of the runner's median epoch over the reference's in the same
repetition, so a slow phase of a shared machine moves both alike; the quartiles of those ratios follow in
brackets, to show how far the machine moved them. A last line divides ``fit`` by a raw loop that
does its work by hand (best weights, an atomic checkpoint every epoch, history).

Host reads per epoch: one more, untimed run per runner counts the reads of device values (``.item()``,
``float(t)``, ``bool(t)``, ``.tolist()``, ``.numpy()``) made by the runner's own code (the bench's raw loops,
epochpilot, lightning, keras), as ``tests/train/test_host_syncs.py`` does; torch's internal reads are not
counted. With ``--device cuda`` the column counts every synchronising call instead (torch's sync debug mode).

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
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
BATCH = 32
LR = 1e-3
DEVICE = "cpu"  # set by --device
MODELS = ("mlp", "cnn", "transformer")


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


class Encoder(torch.nn.Module):
    """The digit as 8 tokens (its rows of 8 pixels): embedding + positions, 2 encoder layers, mean pool."""

    def __init__(self, d: int = 64) -> None:
        super().__init__()
        self.embed = torch.nn.Linear(8, d)
        self.pos = torch.nn.Parameter(torch.zeros(1, 8, d))
        layer = torch.nn.TransformerEncoderLayer(
            d, nhead=4, dim_feedforward=2 * d, dropout=0.0, batch_first=True
        )
        self.body = torch.nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = torch.nn.Linear(d, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(self.embed(x.reshape(-1, 8, 8)) + self.pos)
        return self.head(h.mean(dim=1))


def make_model(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "mlp":
        return torch.nn.Sequential(
            torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)
        )
    if kind == "transformer":
        return Encoder()
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


class Reads:
    """Host reads per epoch by the code of modules named ``prefixes`` (see :func:`counting`)."""

    PASS_THROUGH = ("torch._tensor", "torch._tensor_str", "torch.overrides")

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        self.prefixes = prefixes
        self.count = 0
        self.debug: list[Any] = []  # CUDA: the sync debug mode's warnings

    def note(self) -> None:
        frame = sys._getframe(2)
        while frame is not None and frame.f_globals.get("__name__", "") in self.PASS_THROUGH:
            frame = frame.f_back
        if frame is not None and frame.f_globals.get("__name__", "").startswith(self.prefixes):
            self.count += 1

    def now(self) -> int:
        return self.count + sum("synchroniz" in str(w.message).lower() for w in self.debug)


#: the modules whose reads count as each runner's own
OWN = {
    "raw": ("__main__",),
    "epochpilot": ("epochpilot.",),
    "Lightning": ("lightning", "pytorch_lightning", "lightning_fabric", "torchmetrics"),
    "Keras": ("keras",),
}
READS = ("item", "tolist", "numpy", "__float__", "__int__", "__index__", "__bool__", "__array__")
COUNTER: list[Reads] = []  # the counter of the run in progress, if any


def counting(reads: Reads) -> Callable[[], None]:
    """Start counting into ``reads``; returns the function that stops. CPU: patched Tensor read methods.
    CUDA: torch's sync debug mode, every synchronising call (torch's own too)."""
    if DEVICE == "cuda":
        catcher = warnings.catch_warnings(record=True)
        reads.debug = catcher.__enter__()
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")

        def stop_cuda() -> None:
            torch.cuda.set_sync_debug_mode("default")
            catcher.__exit__(None, None, None)

        return stop_cuda
    saved = {name: torch.Tensor.__dict__.get(name) for name in READS}
    for name in READS:
        real = getattr(torch.Tensor, name)

        def patched(self: torch.Tensor, *args: Any, _real: Any = real, **kw: Any) -> Any:
            reads.note()
            return _real(self, *args, **kw)

        setattr(torch.Tensor, name, patched)

    def stop() -> None:
        for name, old in saved.items():
            if old is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, old)

    return stop


class Gate:
    """Lockstep mode: a runner's thread runs one epoch per turn the harness gives it."""

    def __init__(self) -> None:
        self.go = threading.Semaphore(0)
        self.done = threading.Semaphore(0)


GATES: dict[str, Gate] = {}  # thread name -> its gate, while a lockstep run is on
PENDING: list[
    Any
] = []  # lockstep mode: the checkpoint writes queued by fit, waited for between turns


def new_clock() -> Clock:
    gate = GATES.get(threading.current_thread().name)
    return Clock() if gate is None else LockstepClock(gate)


class Clock:
    """Records (wall, cpu) at each epoch start and at the end; per-epoch durations drop the warm-up epoch.
    On CUDA each mark waits for the queued work first; while counting, it notes the reads instead."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, float]] = []
        self.reads: list[int] = []

    def tick(self) -> None:
        if COUNTER:
            self.reads.append(COUNTER[0].now())
        elif DEVICE == "cuda":
            torch.cuda.synchronize()
        self.marks.append((time.perf_counter(), time.thread_time()))

    def reads_per_epoch(self) -> float:
        """Reads per epoch after the warm-up epoch."""
        return (self.reads[-1] - self.reads[1]) / max(1, len(self.reads) - 2)

    def epochs(self) -> tuple[list[float], list[float]]:
        wall = [b[0] - a[0] for a, b in zip(self.marks, self.marks[1:], strict=False)][1:]
        cpu = [b[1] - a[1] for a, b in zip(self.marks, self.marks[1:], strict=False)][1:]
        return wall, cpu


class LockstepClock(Clock):
    """A clock whose every tick ends the runner's turn: it records the epoch's end, hands over, and records
    the next epoch's start once the harness gives the turn back; epochs are (start, end) pairs."""

    def __init__(self, gate: Gate) -> None:
        super().__init__()
        self.gate = gate
        self.spans: list[tuple[tuple[float, float], tuple[float, float]]] = []
        self._start: tuple[float, float] | None = None

    def tick(self) -> None:
        now = (time.perf_counter(), time.thread_time())
        if self._start is not None:
            self.spans.append((self._start, now))
        self.gate.done.release()
        self.gate.go.acquire()
        self._start = (time.perf_counter(), time.thread_time())

    def epochs(self) -> tuple[list[float], list[float]]:
        wall = [b[0] - a[0] for a, b in self.spans][1:]
        cpu = [b[1] - a[1] for a, b in self.spans][1:]
        return wall, cpu


def lockstep(kind: str, data: tuple, epochs: int, names: list[str]) -> dict[str, LockstepClock]:
    """Run ``names`` side by side, one epoch each in turn (each in its own thread, one running at a time), so
    epoch ``e`` of every runner is measured within the same second of a shared machine. Between turns the
    harness waits for fit's queued checkpoint writes, so no runner is charged another's background work (that
    work is measured on its own, see :func:`checkpoint_cost`). Returns each runner's clock (its
    ``epochs()``: wall and loop-thread CPU seconds per epoch, the warm-up epoch dropped)."""
    from epochpilot.train.checkpoint import CheckpointDir

    real_save = CheckpointDir.save

    def save(self, *args, **kwargs):
        real_save(self, *args, **kwargs)
        PENDING.extend(f for f in self._pending if f not in PENDING)

    clocks: dict[str, Any] = {}
    threads = []
    for i, name in enumerate(names):
        gate = GATES[f"lockstep-{i}"] = Gate()

        def body(name: str = name, gate: Gate = gate) -> None:
            try:
                clocks[name] = RUNNERS[name](kind, data, epochs)
            finally:
                gate.done.release()

        threads.append((threading.Thread(target=body, name=f"lockstep-{i}"), gate))
    CheckpointDir.save = save
    try:
        for thread, gate in threads:
            thread.start()
            gate.done.acquire()  # it reached its first epoch (or ended)
        while any(t.is_alive() for t, _ in threads):
            for thread, gate in threads:
                if thread.is_alive():
                    gate.go.release()
                    gate.done.acquire()
                while PENDING:
                    PENDING.pop().result()
    finally:
        CheckpointDir.save = real_save
        GATES.clear()
        for thread, gate in threads:
            gate.go.release()
            thread.join()
    return {name: clocks[name] for name in names}


LOCKSTEP = (
    "raw loop (tensor slices)",
    "raw loop + best weights + checkpoint + history (same work)",
    "epochpilot.fit (stop+ckpt+history)",
    "epochpilot.fit, no checkpoints",
)


def lockstep_table(kinds: list[str], data: tuple, epochs: int) -> None:
    """The lockstep comparison (see :func:`lockstep`) as a table of paired ratios of loop-thread CPU."""
    print(
        f"\n### Lockstep: one epoch of each runner in turn, {epochs - 1} timed epochs, loop-thread CPU "
        f"({'CUDA' if DEVICE == 'cuda' else 'CPU, one thread'})\n"
    )
    print(
        "| model | raw ms / epoch | same work / raw | fit / raw | fit / same work | fit no ckpt / raw "
        "| fit + writer CPU / raw | writer CPU ms / save |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for kind in kinds:
        clocks = lockstep(kind, data, epochs, list(LOCKSTEP))
        raw, same, fit_, bare = (clocks[n].epochs()[1] for n in LOCKSTEP)

        def paired(a: list[float], b: list[float]) -> str:
            pairs = sorted(x / y for x, y in zip(a, b, strict=True))
            q1, _, q3 = statistics.quantiles(pairs, n=4)
            return f"{statistics.median(pairs):.3f} ({q1:.2f}-{q3:.2f})"

        _, _, writer_cpu = checkpoint_cost(kind, data)
        with_writer = [f + writer_cpu for f in fit_]
        print(
            f"| {kind} | {statistics.median(raw) * 1e3:.1f} | {paired(same, raw)} | {paired(fit_, raw)} "
            f"| {paired(fit_, same)} | {paired(bare, raw)} | {paired(with_writer, raw)} "
            f"| {writer_cpu * 1e3:.1f} |"
        )


def raw_tensors(kind: str, data: tuple, epochs: int, same_work: bool = False) -> Clock:
    """The fastest hand-written loop: in-memory tensors on the device, loss sums read once per epoch.
    ``same_work``: also what ``fit`` records, written as a user would by hand, synchronously: the best
    weights kept on improvement, a checkpoint (model, optimizer, RNG) saved atomically every epoch, and
    the epoch's row appended to a history file."""
    import json

    tmp = tempfile.TemporaryDirectory() if same_work else None
    best = float("inf")
    Xt, yt, Xv, yv = (t.to(DEVICE) for t in data)
    model = make_model(kind).to(DEVICE)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    clock = new_clock()
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        clock.tick()
        model.train()
        perm = torch.randperm(len(Xt), generator=g).to(DEVICE)
        total = torch.zeros((), device=DEVICE)
        for i in range(0, len(Xt), BATCH):
            idx = perm[i : i + BATCH]
            xb, yb = Xt[idx], yt[idx]
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.detach() * len(yb)
        model.eval()
        val = torch.zeros((), device=DEVICE)
        with torch.no_grad():
            for i in range(0, len(Xv), BATCH):
                val += loss_fn(model(Xv[i : i + BATCH]), yv[i : i + BATCH]) * len(yv[i : i + BATCH])
        train_loss, val_loss = torch.stack([total / len(Xt), val / len(Xv)]).tolist()
        if tmp is not None:
            if val_loss < best:
                best = val_loss
                kept = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            state = {"model": model.state_dict(), "optimizer": opt.state_dict()}
            state["rng"], state["best"] = torch.get_rng_state(), kept
            path = Path(tmp.name) / "checkpoint.pt"
            torch.save(state, path.with_suffix(".tmp"))
            os.replace(path.with_suffix(".tmp"), path)
            with open(Path(tmp.name) / "history.jsonl", "a") as fh:
                fh.write(json.dumps({"train_loss": train_loss, "val_loss": val_loss}) + "\n")
    clock.tick()
    if tmp is not None:
        tmp.cleanup()
    return clock


def raw_loader(kind: str, data: tuple, epochs: int) -> Clock:
    """The tutorial loop: DataLoaders, a validation loss read per batch."""
    Xt, yt, Xv, yv = data
    pin = DEVICE == "cuda"
    train = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(Xt, yt), batch_size=BATCH, shuffle=True, pin_memory=pin
    )
    val = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(Xv, yv), batch_size=BATCH, pin_memory=pin
    )
    model = make_model(kind).to(DEVICE)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    clock = new_clock()
    for _ in range(epochs):
        clock.tick()
        model.train()
        for xb, yb in train:
            xb, yb = xb.to(DEVICE, non_blocking=True), yb.to(DEVICE, non_blocking=True)
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            _ = sum(loss_fn(model(xb.to(DEVICE)), yb.to(DEVICE)).item() for xb, yb in val)
    clock.tick()
    return clock


def standard_fit(
    kind: str, train: Any, val: Any, epochs: int, run_dir: Path, **settings: Any
) -> Any:
    """``fit`` as every epochpilot runner here calls it: batch, lr and seed of the raw loops, a stopper whose
    patience never stops the run, a run directory; ``settings`` add the runner's own."""
    from epochpilot.stopping import EarlyStopping
    from epochpilot.train import fit

    return fit(
        make_model(kind),
        train,
        val,
        batch_size=BATCH,
        lr=LR,
        max_epochs=epochs,
        seed=0,
        stopper=EarlyStopping("val_loss", "min", patience=10 * epochs),
        run_dir=run_dir,
        **settings,
    )


def epochpilot_runner(
    records: bool, loader: bool = False, checkpoints: bool = True
) -> Callable[[str, tuple, int], Clock]:
    def run(kind: str, data: tuple, epochs: int) -> Clock:
        from epochpilot.train import Callback

        Xt, yt, Xv, yv = data
        clock = new_clock()

        class Tick(Callback):
            def on_epoch_start(self, state):
                clock.tick()

            def on_fit_end(self, state):
                clock.tick()  # the training's end: the report and summary written after it are not timed

        train: object = (Xt, yt)
        if loader:
            train = torch.utils.data.DataLoader(
                torch.utils.data.TensorDataset(Xt, yt), batch_size=BATCH, shuffle=True
            )
        with tempfile.TemporaryDirectory() as tmp:
            result = standard_fit(
                kind,
                train,
                (Xv, yv),
                epochs,
                Path(tmp) / "run",
                checkpoint_every=1 if checkpoints else None,
                tensorboard=records,
                progress=records,
                device=DEVICE,
                callbacks=[Tick()],
            )
            RUNS.append(result)
        return clock

    return run


RUNS: list = []


def lightning_runner(kind: str, data: tuple, epochs: int) -> Clock:
    import lightning as L

    Xt, yt, Xv, yv = data
    clock = new_clock()

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
            accelerator="gpu" if DEVICE == "cuda" else "cpu",
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


def keras_model(kind: str) -> Any:
    """The same three models in Keras 3 (the transformer: post-norm layers as torch's, learned positions)."""
    import keras

    L = keras.layers
    if kind == "mlp":
        return keras.Sequential([keras.Input((64,)), L.Dense(64, activation="relu"), L.Dense(10)])
    if kind == "cnn":
        return keras.Sequential(
            [
                keras.Input((64,)),
                L.Reshape((64, 1)),
                L.Conv1D(16, 5, padding="same", activation="relu"),
                L.MaxPooling1D(2),
                L.Conv1D(16, 5, padding="same", activation="relu"),
                L.Flatten(),
                L.Dense(10),
            ]
        )

    class Positions(L.Layer):
        def build(self, shape: Any) -> None:
            self.pos = self.add_weight(shape=(1, *shape[1:]), initializer="zeros")

        def call(self, x: Any) -> Any:
            return x + self.pos

    x = inputs = keras.Input((64,))
    x = Positions()(L.Dense(64)(L.Reshape((8, 8))(x)))
    for _ in range(2):
        x = L.LayerNormalization(epsilon=1e-5)(x + L.MultiHeadAttention(4, 16)(x, x))
        ff = L.Dense(64)(L.Dense(128, activation="relu")(x))
        x = L.LayerNormalization(epsilon=1e-5)(x + ff)
    return keras.Model(inputs, L.Dense(10)(L.GlobalAveragePooling1D()(x)))


def keras_runner(kind: str, data: tuple, epochs: int) -> Clock:
    import keras

    Xt, yt, Xv, yv = (t.numpy() for t in data)
    clock = new_clock()
    keras.utils.set_random_seed(0)

    class Tick(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            clock.tick()

    with keras.device(DEVICE):
        model = keras_model(kind)
        model.compile(
            optimizer=keras.optimizers.Adam(LR),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
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
    "raw loop + best weights + checkpoint + history (same work)": lambda kind, data, epochs: (
        raw_tensors(kind, data, epochs, same_work=True)
    ),
    "epochpilot.fit (stop+ckpt+history)": epochpilot_runner(records=False),
    "epochpilot.fit, no checkpoints": epochpilot_runner(records=False, checkpoints=False),
    "epochpilot.fit, DataLoader input": epochpilot_runner(records=False, loader=True),
    "epochpilot.fit + TensorBoard + progress": epochpilot_runner(records=True),
    "Lightning Trainer": lightning_runner,
    "Keras 3 (torch backend)": keras_runner,
}


def reads_per_epoch(name: str, kind: str, data: tuple) -> float:
    """One untimed run of 4 epochs with the host reads counted (see :class:`Reads`); reads per epoch after
    the first."""
    owner = next((k for k in OWN if name.startswith(k)), "raw")
    reads = Reads(OWN[owner])
    stop = counting(reads)
    COUNTER.append(reads)
    try:
        clock = RUNNERS[name](kind, data, 4)
    finally:
        COUNTER.clear()
        stop()
    return clock.reads_per_epoch()


def main() -> None:
    global DEVICE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=8)
    parser.add_argument(
        "--epochs", type=int, default=6, help="epochs per run (the first is a warm-up)"
    )
    parser.add_argument("--quick", action="store_true", help="2 repetitions of 4 epochs")
    parser.add_argument(
        "--per-epoch",
        action="store_true",
        help="only the fixed cost of an epoch: one-update epochs, loop-thread CPU per epoch",
    )
    parser.add_argument(
        "--per-update",
        action="store_true",
        help="only the per-update cost: the tensor-slice loop and fit on 400-update epochs",
    )
    parser.add_argument(
        "--lockstep",
        action="store_true",
        help="raw loops and fit one epoch each in turn (--epochs of them): paired per-epoch CPU ratios",
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--only", choices=MODELS, default=None)
    parser.add_argument(
        "--skip", nargs="*", default=[], help="runner names to leave out (substring match)"
    )
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit(
            "--device cuda: torch finds no CUDA device here; run it on a GPU machine or use --device cpu"
        )
    DEVICE = args.device
    if args.quick:
        args.reps, args.epochs = 2, 4
    where = torch.cuda.get_device_name() if DEVICE == "cuda" else "CPU, one thread"
    data = load()
    if args.per_epoch:
        for rep in range(2):
            costs = per_epoch(args.only or "mlp", data)
            print(f"run {rep + 1}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in costs.items()))
        return
    if args.lockstep:
        lockstep_table([args.only] if args.only else list(MODELS), data, args.epochs)
        return
    if args.per_update:
        print(
            "| model | raw loop us / update | fit us / update | fit / raw |\n|---|---:|---:|---:|"
        )
        for kind in [args.only] if args.only else MODELS:
            raw_us, fit_us = per_update(kind, data)
            print(f"| {kind} | {raw_us:,.0f} | {fit_us:,.0f} | {fit_us / raw_us:.2f} |")
        return
    runners = {
        k: v for k, v in RUNNERS.items() if not any(s.lower() in k.lower() for s in args.skip)
    }
    for kind in [args.only] if args.only else MODELS:
        wall: dict[str, list[float]] = {k: [] for k in runners}
        cpu: dict[str, list[float]] = {k: [] for k in runners}
        # each runner's median epoch in each repetition: ratios pair runners measured close in time, so a
        # slow phase of the shared machine moves numerator and denominator alike
        rep_w: dict[str, list[float]] = {k: [] for k in runners}
        rep_c: dict[str, list[float]] = {k: [] for k in runners}
        names = list(runners)
        for rep in range(args.reps):
            order = names[rep % len(names) :] + names[: rep % len(names)]
            for name in order:
                RUNS.clear()
                clock = runners[name](kind, data, args.epochs)
                w, c = clock.epochs()
                wall[name] += w
                cpu[name] += c
                rep_w[name].append(statistics.median(w))
                rep_c[name].append(statistics.median(c))

        def ratio(reps: dict[str, list[float]], a: str, b: str) -> str:
            """The median over repetitions of ``a``'s epoch over ``b``'s in the same repetition, with the
            quartiles of those ratios (how much the shared machine moved them) where there are 4 or more."""
            pairs = sorted(x / y for x, y in zip(reps[a], reps[b], strict=True))
            mid = f"{statistics.median(pairs):.2f}"
            if len(pairs) < 4 or a == b:
                return mid
            q1, _, q3 = statistics.quantiles(pairs, n=4)
            return f"{mid} ({q1:.2f}-{q3:.2f})"

        syncs = {name: reads_per_epoch(name, kind, data) for name in names}
        base_w = statistics.median(wall[names[0]])
        base_c = statistics.median(cpu[names[0]])
        print(
            f"\n### {kind.upper()} on sklearn digits ({where}, batch {BATCH}, {args.reps} reps x "
            f"{args.epochs - 1} timed epochs)\n"
        )
        loader = "raw loop (DataLoader)"
        what = "device syncs / epoch" if DEVICE == "cuda" else "host reads / epoch"
        print(
            "| runner | epoch wall ms (median) | x raw (wall) | loop-thread CPU ms (median) | x raw (CPU) "
            f"| x raw DataLoader loop (wall) | {what} |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name in names:
            mw, mc = statistics.median(wall[name]), statistics.median(cpu[name])
            dl = ratio(rep_w, name, loader) if loader in rep_w else "n/a"
            print(
                f"| {name} | {mw * 1e3:.1f} | {ratio(rep_w, name, names[0])} | {mc * 1e3:.1f} "
                f"| {ratio(rep_c, name, names[0])} | {dl} | {syncs[name]:.0f} |"
            )
        save_main, save_wall, save_cpu = checkpoint_cost(kind, data)
        key = "epochpilot.fit (stop+ckpt+history)"
        ep_w = statistics.median(wall[key]) if key in wall else base_w
        ep_c = statistics.median(cpu[key]) if key in cpu else base_c
        same = "raw loop + best weights + checkpoint + history (same work)"
        if same in wall and key in wall:
            print(
                f"\nfit (stop+ckpt+history) / the raw loop doing the same work: "
                f"{ratio(rep_w, key, same)} wall, {ratio(rep_c, key, same)} loop-thread CPU "
                f"(median over repetitions of the paired ratio, its quartiles in brackets)"
            )
        print(
            f"\na checkpoint (model+optimizer+state+meta): {save_main * 1e3:.1f} ms on the training thread "
            f"= {save_main / ep_c:.2f} x the loop's CPU per epoch; the writer thread {save_wall * 1e3:.1f} ms "
            f"wall = {save_wall / ep_w:.2f} x an epoch's wall time, {save_cpu * 1e3:.1f} ms CPU"
        )


def checkpoint_cost(kind: str, data: tuple) -> tuple[float, float, float]:
    """Medians over the saves of a short run, in seconds: the training thread's share of a checkpoint (taking
    the state; on the CPU that is serializing it), and the writer thread's wall and CPU time (on the CPU, file
    I/O only)."""
    from epochpilot.train import fit
    from epochpilot.train.checkpoint import CheckpointDir
    from epochpilot.train.persist import Persistence

    writer: list[tuple[float, float]] = []
    taking: list[float] = []
    real_write, real_save = CheckpointDir._save_now, Persistence.save

    def timed_write(self, name, after, parts, *rest):
        t0, c0 = time.perf_counter(), time.thread_time()
        out = real_write(self, name, after, parts, *rest)
        if name != "best":
            writer.append((time.perf_counter() - t0, time.thread_time() - c0))
        return out

    def timed_save(self, *args, **kwargs):
        c0 = time.thread_time()
        out = real_save(self, *args, **kwargs)
        taking.append(time.thread_time() - c0)
        return out

    CheckpointDir._save_now, Persistence.save = timed_write, timed_save
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
                device=DEVICE,
            )
    finally:
        CheckpointDir._save_now, Persistence.save = real_write, real_save
    return (
        statistics.median(taking),
        statistics.median(t[0] for t in writer),
        statistics.median(t[1] for t in writer),
    )


def per_update(kind: str, data: tuple, reps: int = 3, updates: int = 400) -> tuple[float, float]:
    """Microseconds per update of the tensor-slice loop and of ``fit`` on epochs of ``updates`` updates (the
    digits rows repeated), the fastest epoch of 3 per run, runs interleaved: the per-update cost alone, with
    the per-epoch fixed costs spread thin."""
    from epochpilot.train import Callback, fit

    Xt, yt = data[0], data[1]
    times = updates * BATCH // len(Xt) + 1
    X, y = Xt.repeat(times, 1)[: updates * BATCH], yt.repeat(times)[: updates * BATCH]
    raw_us, fit_us = [], []
    for _ in range(reps):
        clock = raw_tensors(kind, (X, y, data[2], data[3]), 3)
        raw_us.append(min(clock.epochs()[1]) / updates * 1e6)
        marks: list[tuple[str, float]] = []

        class Tick(Callback):
            def __init__(self, into: list[tuple[str, float]]) -> None:
                self.into = into

            def on_epoch_start(self, state):
                self.into.append(("s", time.thread_time()))

            def on_epoch_end(self, state):
                self.into.append(("e", time.thread_time()))

        fit(
            make_model(kind),
            (X, y),
            batch_size=BATCH,
            lr=LR,
            max_epochs=3,
            stopper=False,
            seed=0,
            device=DEVICE,
            report=False,
            grad_norm_every=0,
            callbacks=[Tick(marks)],
        )
        pairs = zip(marks[::2], marks[1::2], strict=False)
        fit_us.append(min(b[1] - a[1] for a, b in pairs) / updates * 1e6)
    return statistics.median(raw_us), statistics.median(fit_us)


def per_epoch(kind: str, data: tuple, epochs: int = 150) -> dict[str, float]:
    """Milliseconds of loop-thread CPU per epoch when an epoch is one update (32 training and 32 validation
    rows): the fixed cost of an epoch, for the raw loops and ``fit`` with and without checkpoints."""
    from epochpilot.train import Callback

    small = tuple(t[:BATCH] for t in data)
    out: dict[str, float] = {}
    for same in (False, True):
        clock = raw_tensors(kind, small, epochs, same_work=same)
        out["raw loop" + (" doing the same work" if same else "")] = statistics.median(
            clock.epochs()[1][5:]
        )
    for every in (1, None):
        marks: list[float] = []

        class Tick(Callback):
            def __init__(self, into: list[float]) -> None:
                self.into = into

            def on_epoch_start(self, state):
                self.into.append(time.thread_time())

        with tempfile.TemporaryDirectory() as tmp:
            standard_fit(
                kind,
                small[:2],
                small[2:],
                epochs,
                Path(tmp) / "run",
                checkpoint_every=every,
                tensorboard=False,
                progress=False,
                report=False,
                device=DEVICE,
                callbacks=[Tick(marks)],
            )
        gaps = [b - a for a, b in zip(marks, marks[1:], strict=False)][5:]
        out["fit" + (" (checkpoint every epoch)" if every else " (no checkpoints)")] = (
            statistics.median(gaps)
        )
    return {k: v * 1e3 for k, v in out.items()}


if __name__ == "__main__":
    main()

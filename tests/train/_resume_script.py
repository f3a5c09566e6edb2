"""Train a tiny deterministic model with resume="auto"; the kill-resume tests run it as a real subprocess.

Usage: python _resume_script.py RUN_DIR OUT_FILE [KILL] [DATA]
KILL (optional) makes the process SIGKILL itself at one point:
  step:N           right after optimizer update N (mid-epoch)
  val:E            inside the validation forward pass of epoch E
  ckpt:NAME        halfway through writing checkpoint NAME (e.g. step-0000016, epoch-0005)
  inflight:NAME    the training thread, at its first update after checkpoint NAME was handed to the
                   background writer, once that writer is halfway through NAME's state.pt (it stays there):
                   a kill while an asynchronous write is in flight, at a deterministic point, without sleeps
  bestswap         between moving the old ``best`` checkpoint aside and renaming the new one in
DATA: "dataset" (a Dataset using numpy and python RNG per item) or "loader" (a user DataLoader, shuffle=True);
"sweep": the dataset with ``cooldown="sweep"`` (a WSD schedule, cooldown branches off the trunk) instead of Cosine.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading

import numpy as np
import torch

torch.set_num_threads(1)

from epochpilot.core.schedules import WSD, Cosine  # noqa: E402
from epochpilot.core.stopping import EarlyStopping  # noqa: E402
from epochpilot.train import Callback, checkpoint, fit  # noqa: E402

run_dir, out_file = sys.argv[1], sys.argv[2]
kill = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] != "-" else ""
data_kind = sys.argv[4] if len(sys.argv) > 4 else "dataset"
EPOCH = {"now": 0}


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class Noisy(torch.utils.data.Dataset):
    """Items with numpy and python-random noise, so the RNG states must survive a resume."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor) -> None:
        self.X, self.y = X, y

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, i: int):
        noise = torch.from_numpy(np.random.normal(0, 0.05, self.X.shape[1]).astype(np.float32))
        return self.X[i] + noise * random.random(), self.y[i]


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(16, 3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if kill == f"val:{EPOCH['now']}" and not torch.is_grad_enabled():
            die()
        return self.body(x)


class Killer(Callback):
    state_key = "killer"

    def on_epoch_start(self, state):
        EPOCH["now"] = state.epoch

    def on_step_end(self, state):
        if kill == f"step:{state.step}":
            die()
        if (
            HANDED.is_set()
        ):  # the checkpoint is with the writer: wait until it is mid-write, then die
            if not MID_WRITE.wait(120):
                sys.exit(f"{kill}: the background writer never reached the middle of state.pt")
            die()


HANDED, MID_WRITE = threading.Event(), threading.Event()


if kill.startswith("ckpt:"):
    target = kill[5:]
    real_write = checkpoint._write_bytes

    def write_half(path, data, sync):
        if f"/.tmp-{target}-" in str(path) and str(path).endswith("state.pt"):
            with open(path, "wb") as fh:
                fh.write(data[: len(data) // 2])  # the process dies halfway through the file
                fh.flush()
            die()
        return real_write(path, data, sync)

    checkpoint._write_bytes = write_half
elif kill.startswith("inflight:"):
    target = kill[9:]
    real_write, real_save = checkpoint._write_bytes, checkpoint.CheckpointDir.save

    def write_and_hold(path, data, sync):
        if f"/.tmp-{target}-" in str(path) and str(path).endswith("state.pt"):
            with open(path, "wb") as fh:
                fh.write(data[: len(data) // 2])
                fh.flush()
            MID_WRITE.set()
            threading.Event().wait()  # the write stays in flight until the training thread kills the process
        return real_write(path, data, sync)

    def save_and_note(self, name, *args, **kwargs):
        real_save(self, name, *args, **kwargs)
        if name == target:
            HANDED.set()

    checkpoint._write_bytes = write_and_hold
    checkpoint.CheckpointDir.save = save_and_note
elif kill == "bestswap":
    real_replace = os.replace

    def replace(src, dst):
        real_replace(src, dst)
        if str(dst).split("/")[-1] == ".old-best":
            die()

    os.replace = replace

g = torch.Generator().manual_seed(0)
X = torch.randn(90, 6, generator=g)
y = (X[:, 0] + 0.5 * X[:, 1] > 0).long() + (X[:, 2] > 1).long()
torch.manual_seed(1)
model = Net()
train = Noisy(X[:66], y[:66])
schedule = dict(schedule=Cosine(0.05, total_steps=40))
if data_kind == "sweep":
    schedule = dict(schedule=WSD(0.05, warmup_steps=3), cooldown="sweep", sweep_start=1)
if data_kind == "loader":
    train = torch.utils.data.DataLoader(train, batch_size=8, shuffle=True)
result = fit(
    model,
    train,
    (X[66:], y[66:]),
    batch_size=8,
    accumulation=2,
    **schedule,
    stopper=EarlyStopping("val_loss", "min", patience=2),
    metrics=["accuracy"],
    max_epochs=12,
    seed=3,
    deterministic=True,
    run_dir=run_dir,
    checkpoint_every="4 steps",
    keep_last=2,
    resume="auto",
    callbacks=[Killer()],
)
torch.save(result.model.state_dict(), out_file)
with open(out_file + ".json", "w") as fh:
    json.dump(
        {
            "history": result.history,
            "stopped_epoch": result.stopped_epoch,
            "best_epoch": result.best_epoch,
            "stop_reason": result.stop_reason.value,
            "branches": result.branches,
            "kept_from": result.kept_from,
        },
        fh,
    )

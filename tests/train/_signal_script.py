"""Train a tiny deterministic model with resume="auto"; the signal tests run it as a real subprocess.

Usage: python _signal_script.py RUN_DIR OUT_FILE [WHEN] [CATCH]
WHEN (optional) makes the process send itself a signal at one point:
  INT:N / TERM:N     SIGINT / SIGTERM right after optimizer update N (mid-epoch)
  INT:eE / TERM:eE   at the end of epoch E (after its checkpoint was asked for)
  INT2:N             SIGINT twice after update N (the second one stops at once)
CATCH "exit" catches the interruption and exits with its ``exit_code`` (the documented pattern); otherwise
it is left uncaught.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys

import numpy as np
import torch

torch.set_num_threads(1)

from epochpilot.core.schedules import Cosine  # noqa: E402
from epochpilot.core.stopping import EarlyStopping  # noqa: E402
from epochpilot.train import Callback, fit  # noqa: E402
from epochpilot.train.signals import TrainingTerminated  # noqa: E402

run_dir, out_file = sys.argv[1], sys.argv[2]
when = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] != "-" else ""
catch = len(sys.argv) > 4 and sys.argv[4] == "exit"
kind, _, at = when.partition(":")
SIGNUM = signal.SIGTERM if kind == "TERM" else signal.SIGINT
TIMES = 2 if kind == "INT2" else 1


class Noisy(torch.utils.data.Dataset):
    """Items with numpy and python-random noise, so the RNG states must survive a resume."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor) -> None:
        self.X, self.y = X, y

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, i: int):
        noise = torch.from_numpy(np.random.normal(0, 0.05, self.X.shape[1]).astype(np.float32))
        return self.X[i] + noise * random.random(), self.y[i]


class Sender(Callback):
    state_key = "sender"

    def _send(self) -> None:
        for _ in range(TIMES):
            os.kill(os.getpid(), SIGNUM)

    def on_step_end(self, state):
        if at == str(state.step):
            self._send()

    def on_epoch_end(self, state):
        if at == f"e{state.epoch}":
            self._send()


g = torch.Generator().manual_seed(0)
X = torch.randn(90, 6, generator=g)
y = (X[:, 0] + 0.5 * X[:, 1] > 0).long() + (X[:, 2] > 1).long()
torch.manual_seed(1)
model = torch.nn.Sequential(
    torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(16, 3)
)
try:
    result = fit(
        model,
        Noisy(X[:66], y[:66]),
        (X[66:], y[66:]),
        batch_size=8,
        accumulation=2,
        schedule=Cosine(0.05, total_steps=40),
        stopper=EarlyStopping("val_loss", "min", patience=3),
        metrics=["accuracy"],
        max_epochs=8,
        seed=3,
        deterministic=True,
        run_dir=run_dir,
        checkpoint_every=1,
        keep_last=2,
        resume="auto",
        callbacks=[Sender()],
    )
except (KeyboardInterrupt, TrainingTerminated) as exc:
    if not catch:
        raise
    sys.exit(exc.exit_code)
torch.save(result.model.state_dict(), out_file)
with open(out_file + ".json", "w") as fh:
    json.dump(
        {
            "history": result.history,
            "stopped_epoch": result.stopped_epoch,
            "best_epoch": result.best_epoch,
            "stop_reason": result.stop_reason.value,
        },
        fh,
    )

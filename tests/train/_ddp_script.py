"""Run under torchrun (2 CPU processes): train with a rank-dependent stop policy and write each rank's result.

Usage: torchrun --nproc_per_node=2 --standalone _ddp_script.py RUN_DIR OUT_PREFIX MAX_EPOCHS [sweep]
The policy wants to stop at epoch 3 on rank 0 but at epoch 2 on rank 1: only rank 0's decision may count.
With ``sweep``: no policy, ``cooldown="sweep"`` (each rank must take the same branch decisions).
"""

from __future__ import annotations

import json
import os
import sys

import torch

torch.set_num_threads(1)

from epochpilot.core.stopping import Decision, Policy, Reason  # noqa: E402
from epochpilot.train import fit  # noqa: E402

run_dir, prefix, max_epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
sweep = len(sys.argv) > 4 and sys.argv[4] == "sweep"
rank = int(os.environ["RANK"])


class RankStop(Policy):
    monitor = "val_loss"
    mode = "min"
    _state_keys = ("best",)

    def __init__(self) -> None:
        self._init_state()

    def _init_state(self) -> None:
        self.best = None

    def update(self, epoch, metrics):
        value = float(metrics["val_loss"])
        improved = self.best is None or value < self.best[0]
        if improved:
            self.best = [value, epoch]
        stop = epoch >= (3 if rank == 0 else 2)
        return Decision(
            stop,
            Reason.USER if stop else Reason.CONTINUE,
            improved,
            self.best[1],
            self.best[0],
            f"rank {rank} says stop" if stop else "",
        )


g = torch.Generator().manual_seed(0)
X = torch.randn(75, 5, generator=g)
y = (X[:, 0] > 0).long()
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
result = fit(
    model,
    (X[:55], y[:55]),
    (X[55:], y[55:]),
    batch_size=8,
    metrics=["accuracy"],
    max_epochs=max_epochs,
    seed=0,
    **(
        dict(stopper=False, schedule="wsd", cooldown="sweep", sweep_start=1, lr=0.05)
        if sweep
        else dict(stopper=RankStop())
    ),
    run_dir=run_dir,
    resume="auto",
    checkpoint_every="5 steps",
)
flat = torch.cat([p.detach().flatten() for p in result.model.parameters()])
with open(f"{prefix}-{rank}.json", "w") as fh:
    json.dump(
        {
            "stopped_epoch": result.stopped_epoch,
            "reason": result.stop_reason.value,
            "message": result.stop_message,
            "history": result.history,
            "weights": flat.tolist(),
            "world_size": result.summary["world_size"],
            "branches": result.branches,
            "kept_from": result.kept_from,
        },
        fh,
    )

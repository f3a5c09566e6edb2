"""Run under torchrun (2 CPU processes): staged training, general data then a MixedSampler stage, under DDP.

Usage: torchrun --nproc_per_node=2 --standalone _stages_ddp_script.py RUN_DIR OUT_PREFIX
The first stage's stopper wants to end the stage after its epoch 2 on rank 0 but after epoch 1 on rank 1:
only rank 0's decision may count, or the ranks would serve different stages' data. Each rank writes the
sample indices it read per epoch, its history and weights.
"""

from __future__ import annotations

import json
import os
import sys

import torch
from torch.utils.data import TensorDataset

torch.set_num_threads(1)

from epochpilot.core.stopping import Decision, Policy, Reason  # noqa: E402
from epochpilot.finetune.mixed import MixedSampler, Stage, Stages  # noqa: E402
from epochpilot.train import Callback  # noqa: E402

run_dir, prefix = sys.argv[1], sys.argv[2]
rank = int(os.environ["RANK"])
seen: list = []


class Recorded(TensorDataset):
    """A TensorDataset that logs every index read (ids are global: offset + index)."""

    def __init__(self, offset: int, *tensors: torch.Tensor) -> None:
        super().__init__(*tensors)
        self.offset = offset

    def __getitem__(self, index: int):
        seen[-1].append(self.offset + int(index))
        return super().__getitem__(index)


class EpochMarks(Callback):
    state_key = "epoch_marks"

    def on_epoch_start(self, state) -> None:
        seen.append([])


class RankStop(Policy):
    """Ends its stage after epoch 2 on rank 0, after epoch 1 on rank 1."""

    def update(self, epoch, metrics):
        stop = epoch >= (2 if rank == 0 else 1)
        reason = Reason.USER if stop else Reason.CONTINUE
        return Decision(stop, reason, False, None, None, f"rank {rank}: stage over" if stop else "")


g = torch.Generator().manual_seed(0)
X = torch.randn(75, 4, generator=g)
y = (X[:, 0] > 0).long()
general = Recorded(0, X[:45], y[:45])
task = Recorded(45, X[45:55], y[45:55])  # ids 45..54 in the mix's concatenation
mix = MixedSampler({"general": general, "task": task}, weights={"task": 2.0}, seed=3)
torch.manual_seed(0)
model = torch.nn.Linear(4, 2)
result = Stages(
    [
        Stage(general, epochs=3, stopper=RankStop(), name="general"),
        Stage(mix, epochs=2, name="mixed"),
    ]
).fit(
    model,
    (X[55:], y[55:]),
    batch_size=8,
    metrics=["accuracy"],
    seed=0,
    run_dir=run_dir,
    callbacks=[EpochMarks()],
    progress=False,
)
flat = torch.cat([p.detach().flatten() for p in result.model.parameters()])
with open(f"{prefix}-{rank}.json", "w") as fh:
    json.dump(
        {
            "stopped_epoch": result.stopped_epoch,
            "reason": result.stop_reason.value,
            "history": result.history,
            "weights": flat.tolist(),
            "seen": seen,
            "world_size": result.summary["world_size"],
        },
        fh,
    )

"""Train with an injected out-of-memory (a forward pre-hook that raises above a micro-batch limit from
epoch 2), for the shrink + SIGKILL + resume test and the DDP agreement test.

Usage: python _oom_script.py RUN_DIR OUT.json [KILL_AT_STEP]            (one process)
       torchrun --nproc_per_node=2 --standalone _oom_script.py RUN_DIR OUT_PREFIX ddp   (rank 1 runs out)
       ... ddp-none (no out-of-memory, on_oom="shrink"), ddp-raise (no out-of-memory, on_oom="raise": DDP's
       own reducer), to compare the hand-made gradient averaging with DDP's
"""

from __future__ import annotations

import json
import os
import signal
import sys

import torch

torch.set_num_threads(1)

from epochpilot.train import Callback, fit  # noqa: E402

run_dir, out = sys.argv[1], sys.argv[2]
mode = sys.argv[3] if len(sys.argv) > 3 else ""
ddp = mode.startswith("ddp")
kill_at = int(mode) if mode and not ddp else None
rank = int(os.environ.get("RANK", "0"))
LIMIT = 6  # the largest micro-batch that "fits" from epoch 2 (on rank 1 only under DDP)
epoch = {"now": 0}


class Track(Callback):
    def on_epoch_start(self, state):
        epoch["now"] = state.epoch

    def on_step_end(self, state):
        if kill_at is not None and state.step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


def hook(module, inputs):
    if mode in ("ddp-none", "ddp-raise"):
        return
    if epoch["now"] >= 2 and inputs[0].shape[0] > LIMIT and (not ddp or rank == 1):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")


g = torch.Generator().manual_seed(0)
X = torch.randn(90, 5, generator=g)
y = (X[:, 0] + X[:, 1] > 0).long()
torch.manual_seed(0)
model = torch.nn.Sequential(
    torch.nn.Linear(5, 16), torch.nn.Dropout(0.2), torch.nn.ReLU(), torch.nn.Linear(16, 2)
)
model[0].register_forward_pre_hook(hook)
result = fit(
    model,
    (X[:70], y[:70]),
    (X[70:], y[70:]),
    batch_size=8,
    effective_batch=32 if ddp else 16,
    max_epochs=4,
    stopper=False,
    seed=0,
    run_dir=run_dir,
    resume="auto",
    checkpoint_every="2 steps",
    callbacks=[Track()],
    report=False,
    on_oom="raise" if mode == "ddp-raise" else "shrink",
)
flat = torch.cat([p.detach().flatten() for p in result.model.parameters()])
with open(f"{out}-{rank}.json" if ddp else out, "w") as fh:
    json.dump(
        {
            "weights": flat.tolist(),
            "steps": result.total_steps,
            "batch": result.summary["batch"],
            "history": result.history,
        },
        fh,
    )

"""Run ``epochpilot ARGS`` and SIGKILL the process at the end of epoch N (the no-loss tests' real kill).

Usage: python _no_loss_kill.py N [hold] -- ARGS...
``hold`` keeps a replaced run's old copy although the new run has checkpoints (as a kill between the first
checkpoint and the removal of the old copy would leave it).
"""

from __future__ import annotations

import os
import signal
import sys

from epochpilot.train import loop, trainer

split = sys.argv.index("--")
N = int(sys.argv[1])
if "hold" in sys.argv[2:split]:
    trainer.settle = lambda *args, **kwargs: None
calls = {"n": 0}
real_end_epoch = loop.Loop._end_epoch


def end_epoch(self) -> None:
    calls["n"] += 1
    if calls["n"] == N:
        if self.ckpts is not None:
            self.ckpts.wait()  # the checkpoints of the earlier epochs are on disk
        os.kill(os.getpid(), signal.SIGKILL)
    real_end_epoch(self)


loop.Loop._end_epoch = end_epoch
from epochpilot.cli.main import main  # noqa: E402

sys.exit(main(sys.argv[split + 1 :]))

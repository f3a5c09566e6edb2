"""Two CPU processes (Lightning ddp_spawn, gloo): rank 1's policy stops at epoch 2, rank 0's would not.

Prints rank 0's summary.json as JSON. Run by test_lightning.py::test_ddp_ranks_stop_together.
"""

from __future__ import annotations

import json
import sys
import warnings

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from epochpilot.core.stopping import EarlyStopping
from epochpilot.integrations.lightning import EpochPilot


class Net(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, 2)

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        # not synced on purpose: rank 0 keeps improving, rank 1 gets worse from epoch 2
        epoch = self.current_epoch
        value = 1.0 - 0.1 * epoch if self.global_rank == 0 else 1.0 + 0.1 * epoch
        self.log("val_loss", torch.tensor(value))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class ReleaseProcessGroup(pl.Callback):
    """Destroys the gloo process group when fit ends, in each spawned worker.

    Without it, Lightning's ddp_spawn on CPU (gloo) sometimes aborts a worker at interpreter exit with "terminate
    called without an active exception", with or without epochpilot's callback: this script with ``pilot`` set to
    ``pl.callbacks.EarlyStopping("val_loss", patience=1)`` aborted in 2 of 15 runs without this callback and in
    0 of 15 with it.
    """

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    x = torch.randn(64, 4)
    y = (x[:, 0] > 0).long()
    run_dir = sys.argv[1]
    pilot = EpochPilot(EarlyStopping("val_loss", mode="min", patience=1), run_dir=run_dir)
    trainer = pl.Trainer(
        max_epochs=10,
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        callbacks=[pilot, ReleaseProcessGroup()],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    data = DataLoader(TensorDataset(x, y), batch_size=8)
    trainer.fit(Net(), data, data)
    print(json.dumps(json.load(open(f"{run_dir}/summary.json"))))

"""epochpilot inside Lightning: stop with a policy, warm up + cosine lr per optimizer step, restore the best
weights, keep the policy in Lightning checkpoints, write a run directory ``epochpilot report`` reads.

    python examples/lightning_example.py
"""

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from epochpilot.integrations.lightning import EpochPilot
from epochpilot.schedules import cosine_with_warmup
from epochpilot.stopping import EarlyStopping

torch.set_num_threads(1)
pl.seed_everything(0, verbose=False)
x = torch.randn(256, 8)
y = ((x[:, 0] + 0.8 * torch.randn(256)) > 0).long()
train = DataLoader(TensorDataset(x[:192], y[:192]), batch_size=32, shuffle=True)
val = DataLoader(TensorDataset(x[192:], y[192:]), batch_size=64)


class Classifier(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(8, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2)
        )

    def training_step(self, batch, batch_idx):
        xb, yb = batch
        return torch.nn.functional.cross_entropy(self.net(xb), yb)

    def validation_step(self, batch, batch_idx):
        xb, yb = batch
        logits = self.net(xb)
        self.log("val_loss", torch.nn.functional.cross_entropy(logits, yb))
        self.log("val_accuracy", (logits.argmax(1) == yb).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


max_epochs = 40
pilot = EpochPilot(
    EarlyStopping("val_loss", mode="min", patience=3),
    schedule=cosine_with_warmup(0.01, warmup_steps=12, total_steps=max_epochs * len(train)),
    run_dir="runs/lightning-example",
)
trainer = pl.Trainer(
    max_epochs=max_epochs,
    callbacks=[pilot],
    accelerator="cpu",
    logger=False,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
)
trainer.fit(Classifier(), train, val)
print(pilot.summary_["stop_message"])
print(f"best epoch {pilot.best_epoch_}: val_loss {pilot.best_value_:.4f} (weights restored)")
print("report: runs/lightning-example/report.html")

"""A Lightning digit classifier whose EarlyStopping and ModelCheckpoint are swapped for epochpilot's callback.

Before, the usual pair, then testing the best checkpoint::

    early = EarlyStopping("val_loss", patience=10, verbose=True)
    best = ModelCheckpoint(monitor="val_loss", save_top_k=1)
    trainer = L.Trainer(max_epochs=50, callbacks=[early, best])
    trainer.fit(model, train, val)
    trainer.test(model, test, ckpt_path="best")

After, one callback (``EpochPilot()`` with no policy is epochpilot.fit's default: patience 10 on val_loss):
it logs one line when it stops, puts the best epoch's weights back into the module whether or not it stopped,
keeps its state in Lightning's checkpoints (``fit(ckpt_path=...)`` resumes the policy too), and writes a run
directory with ``history.csv``, ``summary.json``, ``report.html`` and the kept model as ``model.ckpt``, a
Lightning checkpoint that ``trainer.test(ckpt_path=...)`` and ``load_from_checkpoint`` read.

Data: scikit-learn's 8x8 handwritten digits (shipped with scikit-learn: nothing is downloaded).

    python examples/lightning_example.py          # up to 50 epochs: under a minute on a CPU
    python examples/lightning_example.py --tiny   # 400 images, 3 epochs (the tests run this)
"""

import os
import sys

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

from epochpilot.integrations.lightning import EpochPilot

TINY = "--tiny" in sys.argv or os.environ.get("EPOCHPILOT_EXAMPLE_TINY") == "1"
EPOCHS = 3 if TINY else 50
RUN_DIR = "runs/lightning-example"


class DigitClassifier(L.LightningModule):
    """An MLP over the 64 pixels, with dropout; logs val/test loss and accuracy."""

    def __init__(self, lr: float = 3e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(64, 128),
            torch.nn.ReLU(),
            torch.nn.Dropout(0.2),
            torch.nn.Linear(128, 10),
        )

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def _evaluate(self, batch, stage: str) -> None:
        x, y = batch
        logits = self.net(x)
        self.log(f"{stage}_loss", F.cross_entropy(logits, y))
        self.log(f"{stage}_accuracy", (logits.argmax(1) == y).float().mean())

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test")

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def loaders() -> tuple[DataLoader, DataLoader, DataLoader]:
    """Train/validation/test loaders: 60/20/20 of the digits, shuffled once with a fixed seed."""
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    order = order[:400] if TINY else order
    fifth = len(order) // 5
    parts = order[2 * fifth :], order[:fifth], order[fifth : 2 * fifth]
    sets = [TensorDataset(x[i], y[i]) for i in parts]
    return (
        DataLoader(sets[0], batch_size=32, shuffle=True),
        DataLoader(sets[1], batch_size=256),
        DataLoader(sets[2], batch_size=256),
    )


if __name__ == "__main__":
    torch.set_num_threads(1)
    L.seed_everything(0, verbose=False)
    train, val, test = loaders()
    pilot = EpochPilot(run_dir=RUN_DIR)  # stops, keeps the best epoch, writes RUN_DIR/model.ckpt
    trainer = L.Trainer(
        max_epochs=EPOCHS,
        callbacks=[pilot],
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,  # no ModelCheckpoint needed: the kept model is RUN_DIR/model.ckpt
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    model = DigitClassifier()
    trainer.fit(model, train, val)
    (scores,) = trainer.test(model, test, ckpt_path=f"{RUN_DIR}/model.ckpt", verbose=False)
    print(
        f"test accuracy of the kept model (epoch {pilot.best_epoch_}): {scores['test_accuracy']:.3f}"
    )
    print(f"report: {RUN_DIR}/report.html")

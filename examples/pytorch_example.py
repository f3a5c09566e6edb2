"""A hand-written PyTorch training loop swapped for one call to ``epochpilot.fit``.

The loop below (``classic``) is the usual image-classification recipe: a small CNN, Adadelta at lr 1.0, the
lr multiplied by 0.7 after every epoch, a fixed number of epochs, a validation pass each epoch, and the last
epoch's weights saved whatever they were worth. ``with_epochpilot`` trains the same model with the same
optimizer and schedule, and adds what the loop leaves out: it stops when validation loss stops improving
(epochpilot's default policy, as the message says), keeps the best epoch's weights, and writes a run directory
(``config.toml``, ``history.csv``, ``summary.json``, ``report.html``, checkpoints to resume from).

Data: scikit-learn's 8x8 handwritten digits (1,797 images, shipped with scikit-learn: nothing is downloaded).

    python examples/pytorch_example.py            # epochpilot.fit
    python examples/pytorch_example.py --classic  # the hand-written loop it replaces
    python examples/pytorch_example.py --tiny     # 400 images, 3 epochs: seconds (the tests run this)
"""

import math
import os
import sys

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import epochpilot
from epochpilot.schedules import StepDecay

TINY = "--tiny" in sys.argv or os.environ.get("EPOCHPILOT_EXAMPLE_TINY") == "1"
EPOCHS = 3 if TINY else 30
BATCH_SIZE = 64
RUN_DIR = "runs/pytorch-example"


class Net(nn.Module):
    """Two 3x3 convolutions, max pooling, dropout and two linear layers; returns logits for 10 digits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.dropout = nn.Dropout(0.25)
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = self.dropout(torch.flatten(x, 1))
        return self.fc2(F.relu(self.fc1(x)))


def digits() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """(train, validation) as (images, labels): 80/20, shuffled once with a fixed seed."""
    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(data.target)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    order = order[:400] if TINY else order
    val, train = order[: len(order) // 5], order[len(order) // 5 :]
    return (images[train], labels[train]), (images[val], labels[val])


def classic(train: tuple, val: tuple) -> nn.Module:
    """Before: the loop by hand (what ``with_epochpilot`` replaces)."""
    torch.manual_seed(0)
    loader = DataLoader(TensorDataset(*train), batch_size=BATCH_SIZE, shuffle=True)
    model = Net()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    for epoch in range(1, EPOCHS + 1):
        model.train()
        for xb, yb in loader:
            optimizer.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            logits = model(val[0])
        loss = F.cross_entropy(logits, val[1]).item()
        accuracy = (logits.argmax(1) == val[1]).float().mean().item()
        print(f"epoch {epoch}: val_loss {loss:.4f}, val_accuracy {accuracy:.3f}")
        scheduler.step()
    torch.save(model.state_dict(), "digits_cnn.pt")  # the last epoch's weights, best or not
    return model


def with_epochpilot(train: tuple, val: tuple) -> epochpilot.FitResult:
    """After: one call. Same model, optimizer and per-epoch decay (StepLR is StepDecay per update)."""
    steps_per_epoch = math.ceil(len(train[1]) / BATCH_SIZE)
    result = epochpilot.fit(
        Net(),
        train,
        val,
        optimizer=lambda params: torch.optim.Adadelta(params, lr=1.0),
        schedule=StepDecay(1.0, step_size=steps_per_epoch, gamma=0.7),
        max_epochs=EPOCHS,  # a cap: the default stop policy may end sooner
        batch_size=BATCH_SIZE,
        metrics=["accuracy"],
        seed=0,
        run_dir=RUN_DIR,
        overwrite=True,  # this example may be run again
        progress=False,
    )
    best = result.best_row or {}
    print(result.stop_message)
    print(
        f"kept epoch {result.best_epoch} of {result.stopped_epoch}: val_loss {best.get('val_loss'):.4f}, "
        f"val_accuracy {best.get('val_accuracy'):.3f} (the model holds these weights)"
    )
    print(f"run directory: {result.run_dir} (report.html, summary.json, history.csv, checkpoints/)")
    return result


if __name__ == "__main__":
    torch.set_num_threads(1)
    train, val = digits()
    if "--classic" in sys.argv:
        classic(train, val)
    else:
        with_epochpilot(train, val)

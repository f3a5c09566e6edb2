"""Non-finite losses: on_nan="stop" ends with NOT_FINITE and the best weights; "rollback" retries with half the lr."""

from __future__ import annotations

import math

import torch

from epochpilot.core.stopping import Reason
from epochpilot.train import fit


class Poisoned(torch.nn.Module):
    """An MLP whose training forward returns NaN on the training calls listed in ``bad`` (0-based)."""

    def __init__(self, bad) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)
        )
        self.bad = bad
        self.calls = 0

    def forward(self, x):
        out = self.net(x)
        if self.training:
            self.calls += 1
            if self.bad(self.calls - 1):
                out = out * float("nan")
        return out


def test_stop_keeps_best_weights(blobs):
    X, y = blobs  # 3 batches per epoch: calls 6.. are epoch 3
    model = Poisoned(lambda call: call >= 6)
    result = fit(model, (X, y), (X, y), max_epochs=10, on_nan="stop", seed=0)
    assert result.stop_reason is Reason.NOT_FINITE and result.stopped_epoch == 3
    assert "not finite in epoch 3" in result.stop_message
    assert result.best_epoch in (1, 2) and math.isnan(result.history[-1]["train_loss"])
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_rollback_recovers_and_halves_lr(blobs):
    X, y = blobs
    model = Poisoned(lambda call: call == 7)  # one bad batch in epoch 3, first attempt only
    result = fit(
        model, (X, y), (X, y), max_epochs=4, on_nan="rollback", lr=0.01, stopper=False, seed=0
    )
    assert result.stop_reason is Reason.MAX_EPOCHS
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    assert all(math.isfinite(r["train_loss"]) for r in result.history)
    assert result.history[1]["lr"] == 0.01 and result.history[2]["lr"] == 0.005


def test_rollback_gives_up_after_three_tries(blobs):
    X, y = blobs
    model = Poisoned(lambda call: call >= 3)  # every try at epoch 2 fails
    result = fit(model, (X, y), (X, y), max_epochs=5, on_nan="rollback", stopper=False, seed=0)
    assert result.stop_reason is Reason.NOT_FINITE
    assert "after 3 rollbacks" in result.stop_message and result.stopped_epoch == 2
    assert result.best_epoch == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_rollback_with_mid_epoch_validations_keeps_checks_consistent(blobs, tmp_path):
    import json

    X, y = (
        blobs  # batch 16: 6 updates per epoch; the bad batch is in epoch 2 after a mid-epoch validation
    )
    model = Poisoned(lambda call: call == 10)
    result = fit(
        model,
        (X, y),
        (X, y),
        batch_size=16,
        val_every_steps=2,
        max_epochs=3,
        on_nan="rollback",
        stopper=False,
        seed=0,
        run_dir=tmp_path / "run",
    )
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    checks = [
        json.loads(line) for line in (tmp_path / "run" / "checks.jsonl").read_text().splitlines()
    ]
    assert [c["step"] for c in checks] == [2, 4, 6, 8, 10, 12, 14, 16, 18]

"""``val_every_steps``: validation (and stop decisions) several times per epoch."""

from __future__ import annotations

import json

import pytest
import torch

from epochpilot.core.stopping import Reason
from epochpilot.errors import ConfigError
from epochpilot.train import Callback, fit


class Weights(Callback):
    """The weights at every validation, keyed by (epoch, step)."""

    def __init__(self, model):
        self.model = model
        self.seen = {}

    def on_validation_end(self, state):
        self.seen[(state.epoch, state.step)] = {
            k: v.clone() for k, v in self.model.state_dict().items()
        }


def test_mid_epoch_validations_feed_the_stopper_and_restore_best(
    blobs, make_mlp, scripted, tmp_path
):
    X, y = (
        blobs  # 96 samples / 16 = 6 updates per epoch; validations at updates 2, 4 (mid) and 6 (end)
    )
    model = make_mlp()
    log = Weights(model)
    policy = scripted({5: {"stop": True, "reason": Reason.PATIENCE, "message": "enough"}})
    result = fit(
        model,
        (X, y),
        (X[:40], y[:40]),
        batch_size=16,
        val_every_steps=2,
        stopper=policy,
        max_epochs=5,
        seed=0,
        run_dir=tmp_path / "run",
        callbacks=[log],
    )
    assert policy.seen == [1, 2, 3, 4, 5]  # one update per validation, numbered 1, 2, ...
    assert result.stop_reason is Reason.PATIENCE and "one every 2 updates" in result.stop_message
    assert result.stopped_epoch == 2 and [r["step"] for r in result.history] == [
        6,
        10,
    ]  # cut short at 10
    checks = [
        json.loads(line) for line in (tmp_path / "run" / "checks.jsonl").read_text().splitlines()
    ]
    assert [(c["epoch"], c["step"]) for c in checks] == [(1, 2), (1, 4), (1, 6), (2, 8), (2, 10)]
    best = min(checks, key=lambda c: c["val_loss"])
    assert result.best_value == best["val_loss"] and result.best_epoch == best["epoch"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, log.seen[(best["epoch"], best["step"])][key])


def test_val_every_steps_needs_val_data(blobs, make_mlp):
    X, y = blobs
    with pytest.raises(ConfigError, match="val_every_steps needs val_data"):
        fit(make_mlp(), (X, y), val_every_steps=2)


def test_resume_with_mid_epoch_validations(blobs, make_mlp, tmp_path):
    X, y = blobs
    args = dict(batch_size=16, val_every_steps=4, stopper=False, seed=0, checkpoint_every="3 steps")
    fit(make_mlp(), (X, y), (X[:40], y[:40]), max_epochs=2, run_dir=tmp_path / "a", **args)
    resumed = fit(
        make_mlp(),
        (X, y),
        (X[:40], y[:40]),
        max_epochs=4,
        run_dir=tmp_path / "a",
        resume="auto",
        **args,
    )
    straight = fit(
        make_mlp(), (X, y), (X[:40], y[:40]), max_epochs=4, run_dir=tmp_path / "b", **args
    )
    assert resumed.best_epoch == straight.best_epoch and resumed.best_value == straight.best_value
    for key, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value)
    a = (tmp_path / "a" / "checks.jsonl").read_text().splitlines()
    b = (tmp_path / "b" / "checks.jsonl").read_text().splitlines()
    assert [json.loads(x)["val_loss"] for x in a] == [json.loads(x)["val_loss"] for x in b]

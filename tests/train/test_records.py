"""TensorBoard scalars, the progress bar and log messages."""

from __future__ import annotations

import logging

from epochpilot.train import fit
from epochpilot.train.progress import want_progress


def test_tensorboard_scalars(blobs, make_mlp, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    X, y = blobs
    fit(
        make_mlp(),
        (X, y),
        (X, y),
        metrics=["accuracy"],
        max_epochs=3,
        seed=0,
        run_dir=tmp_path / "run",
        tensorboard=True,
    )
    acc = EventAccumulator(str(tmp_path / "run" / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"loss/train", "loss/val", "accuracy/train", "accuracy/val", "lr", "grad_norm"} <= tags
    assert [e.step for e in acc.Scalars("loss/val")] == [1, 2, 3]


def test_progress_bar_runs_and_reports(blobs, make_mlp, capsys):
    X, y = blobs
    result = fit(make_mlp(), (X, y), (X, y), max_epochs=2, seed=0, progress=True)
    err = capsys.readouterr().err
    assert "epoch 2/2" in err and "best val_loss" in err
    assert len(result.history) == 2


def test_progress_auto_is_off_without_a_tty():
    assert want_progress(None) is False  # pytest captures stderr: not a terminal
    assert want_progress(True) is True


def test_epoch_messages_go_through_logging(blobs, make_mlp, caplog):
    X, y = blobs
    with caplog.at_level(logging.INFO, logger="epochpilot"):
        fit(make_mlp(), (X, y), max_epochs=2, seed=0)
    assert any(r.name == "epochpilot" and "epoch 2/2" in r.getMessage() for r in caplog.records)

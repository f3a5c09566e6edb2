"""Checkpoints: atomic layout, rotation, safe loading (malicious, truncated, foreign files), resume="auto"."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch

from epochpilot.errors import CheckpointError
from epochpilot.train import fit, list_checkpoints, load_checkpoint
from epochpilot.train.checkpoint import read_meta, recover, save_checkpoint


def _train(blobs, make_mlp, run_dir: Path, **kw):
    X, y = blobs
    args = dict(max_epochs=3, seed=0, run_dir=run_dir, stopper=False)
    args.update(kw)
    return fit(make_mlp(), (X[:64], y[:64]), (X[64:], y[64:]), **args)


class Payload:
    """Unpickling this would run a shell command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_layout_rotation_and_contents(blobs, make_mlp, tmp_path):
    result = _train(blobs, make_mlp, tmp_path / "run", max_epochs=5, keep_last=2)
    root = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["best", "epoch-0004", "epoch-0005"]
    assert [p.name for p in list_checkpoints(root)] == ["epoch-0004", "epoch-0005"]
    ckpt = load_checkpoint(root / "epoch-0005")
    meta = ckpt["meta"]
    assert meta["format_version"] == 1 and meta["torch_version"] == torch.__version__
    assert meta["counters"]["epochs_done"] == 5 and meta["counters"]["step"] == 10
    assert [r["epoch"] for r in meta["history"]] == [1, 2, 3, 4, 5]
    assert set(ckpt["state"]) >= {"callbacks", "rng", "data", "acc"}
    assert "best_tracker" in ckpt["state"]["callbacks"] and "state" in ckpt["optimizer"]
    best = load_checkpoint(root / "best")
    assert best["meta"]["counters"]["best_epoch"] == result.best_epoch
    for key, value in result.model.state_dict().items():
        assert torch.equal(best["model"][key], value)


def test_checkpoint_every_steps_names_and_summary(blobs, make_mlp, tmp_path):
    _train(blobs, make_mlp, tmp_path / "run", checkpoint_every="3 steps", keep_last=3)
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == ["best", "step-0000003", "step-0000006"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stopped_epoch"] == 3


def test_resume_auto_on_a_finished_run_trains_no_more(blobs, make_mlp, tmp_path):
    first = _train(blobs, make_mlp, tmp_path / "run")
    again = _train(blobs, make_mlp, tmp_path / "run", resume="auto")
    assert again.history == first.history and again.best_epoch == first.best_epoch
    for key, value in first.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[key], value)
    assert len((tmp_path / "run" / "history.jsonl").read_text().splitlines()) == 3


def test_resume_auto_continues_with_more_epochs(blobs, make_mlp, tmp_path):
    _train(blobs, make_mlp, tmp_path / "run", max_epochs=2)
    longer = _train(blobs, make_mlp, tmp_path / "run", max_epochs=4, resume="auto")
    straight = _train(blobs, make_mlp, tmp_path / "other", max_epochs=4)
    strip = [
        {k: v for k, v in r.items() if k not in ("epoch_time_s", "samples_per_s")}
        for r in longer.history
    ]
    assert strip == [
        {k: v for k, v in r.items() if k not in ("epoch_time_s", "samples_per_s")}
        for r in straight.history
    ]


def test_malicious_pickle_is_refused_and_does_not_run(blobs, make_mlp, tmp_path, caplog):
    _train(blobs, make_mlp, tmp_path / "run", max_epochs=2)
    latest = list_checkpoints(tmp_path / "run" / "checkpoints")[-1]
    marker = tmp_path / "pwned"
    torch.save({"weight": Payload(marker)}, latest / "model.pt")
    # resume="auto" skips it with one warning line and resumes from the checkpoint before it
    with caplog.at_level(logging.WARNING, logger="epochpilot"):
        _train(blobs, make_mlp, tmp_path / "run", max_epochs=2, resume="auto")
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert f"{latest / 'model.pt'} was refused" in warning and "resuming from epoch-0001" in warning
    assert not marker.exists()
    # a checkpoint named explicitly is never swapped for another one
    torch.save({"weight": Payload(marker)}, latest / "model.pt")
    with pytest.raises(CheckpointError, match=r"model\.pt was refused") as err:
        _train(blobs, make_mlp, None, max_epochs=2, resume=latest)
    assert str(latest / "model.pt") in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(latest)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("victim", "damage", "match"),
    [
        ("state.pt", "truncate", r"state\.pt is truncated or not a torch checkpoint"),
        ("optimizer.pt", "foreign", r"optimizer\.pt is truncated or not a torch checkpoint"),
        ("meta.json", "truncate", r"meta\.json is unreadable or truncated"),
        ("meta.json", "delete", r"meta\.json is missing"),
        ("model.pt", "delete", r"model\.pt is missing"),
    ],
)
def test_damaged_checkpoint_names_the_file(blobs, make_mlp, tmp_path, victim, damage, match):
    _train(blobs, make_mlp, tmp_path / "run", max_epochs=1)
    ckpt = tmp_path / "run" / "checkpoints" / "epoch-0001"
    file = ckpt / victim
    if damage == "truncate":
        data = file.read_bytes()
        file.write_bytes(data[: len(data) // 2])
    elif damage == "foreign":
        file.write_text("not a checkpoint at all\n")
    else:
        file.unlink()
    with pytest.raises(CheckpointError, match=match) as err:
        load_checkpoint(ckpt)
    assert str(ckpt) in str(err.value)


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path):
    root = tmp_path / "checkpoints"
    save_checkpoint(
        root, "best", model={"w": torch.ones(2)}, optimizer=None, state={}, meta={"counters": {}}
    )
    # a kill between "move the old one aside" and "rename the new one in" leaves only .old-best and a temp dir
    os.replace(root / "best", root / ".old-best")
    (root / ".tmp-best-dead").mkdir()
    recover(root)
    assert sorted(p.name for p in root.iterdir()) == ["best"]
    assert torch.equal(load_checkpoint(root / "best")["model"]["w"], torch.ones(2))
    save_checkpoint(
        root, "best", model={"w": torch.zeros(2)}, optimizer=None, state={}, meta={"counters": {}}
    )
    assert torch.equal(load_checkpoint(root / "best")["model"]["w"], torch.zeros(2))
    assert sorted(p.name for p in root.iterdir()) == ["best"]


def test_newer_format_is_refused(tmp_path):
    root = tmp_path / "c"
    path = save_checkpoint(
        root, "epoch-0001", model={}, optimizer=None, state={}, meta={"counters": {}}
    )
    meta = json.loads((path / "meta.json").read_text())
    meta["format_version"] = 99
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="newer than this epochpilot"):
        load_checkpoint(path)


def test_plateau_schedule_and_stopper_state_survive_resume(blobs, make_mlp, tmp_path):
    from epochpilot.core.schedules import Cosine, ReduceOnPlateau
    from epochpilot.core.stopping import EarlyStopping

    def run(run_dir, max_epochs, resume=False):
        plateau = ReduceOnPlateau(
            "val_loss", mode="max", patience=0, factor=0.5
        )  # "max": reduces every epoch
        X, y = blobs
        return fit(
            make_mlp(),
            (X[:64], y[:64]),
            (X[64:], y[64:]),
            max_epochs=max_epochs,
            seed=0,
            run_dir=run_dir,
            resume=resume,
            schedule=plateau.wrap(Cosine(0.05, total_steps=40)),
            stopper=EarlyStopping("val_loss", "min", patience=50),
        )

    run(tmp_path / "a", 2)
    resumed = run(tmp_path / "a", 5, resume="auto")
    straight = run(tmp_path / "b", 5)
    assert [r["lr"] for r in resumed.history] == [r["lr"] for r in straight.history]
    assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in straight.history]
    state = load_checkpoint(list_checkpoints(tmp_path / "a" / "checkpoints")[-1])["state"][
        "callbacks"
    ]
    assert state["schedule"]["plateaus"][0]["state"]["num_reductions"] == 4
    assert state["stopper"]["policy"] == "EarlyStopping"


def test_fsync_only_when_asked(blobs, make_mlp, tmp_path, monkeypatch):
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd) or real(fd))

    def count(name, epochs, **kw):
        before = len(calls)
        _train(blobs, make_mlp, tmp_path / name, max_epochs=epochs, **kw)
        return len(calls) - before

    # by default only once-per-run files (config, final summary) are fsynced, not the checkpoints
    assert count("fast2", 2) == count("fast4", 4)
    # durable: each checkpoint fsyncs its files (4), its directory and checkpoints/
    assert count("durable", 2, checkpoint_fsync=True) - count("fast", 2) >= 2 * 6


def test_checkpoint_fsync_must_be_a_bool():
    from epochpilot.errors import ConfigError
    from epochpilot.train import Trainer

    with pytest.raises(ConfigError, match="checkpoint_fsync must be True or False"):
        Trainer(checkpoint_fsync="yes")


def test_background_queue_is_bounded(tmp_path, monkeypatch):
    """A slow disk makes save() wait: never more than MAX_PENDING snapshots held in memory."""
    import threading
    import time

    from epochpilot.train import checkpoint as ck

    gate = threading.Semaphore(0)
    real = ck.save_checkpoint

    def slow(*args, **kwargs):
        gate.acquire()
        return real(*args, **kwargs)

    monkeypatch.setattr(ck, "save_checkpoint", slow)
    cd = ck.CheckpointDir(tmp_path / "c", keep_last=5, background=True)
    weights = {"w": torch.zeros(3)}
    done = threading.Event()

    def producer():
        for i in range(4):
            cd.save(f"epoch-{i:04d}", model=weights, optimizer=None, state=None, meta={})
        done.set()

    thread = threading.Thread(target=producer, daemon=True)
    thread.start()
    try:
        time.sleep(0.3)
        assert not done.is_set()  # blocked: the first write is stuck, the queue is full
        assert len(cd._pending) < 4
    finally:
        for _ in range(4):
            gate.release()
    thread.join(10)
    cd.close()
    assert done.is_set()
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [
        f"epoch-{i:04d}" for i in range(4)
    ]


def test_meta_with_non_finite_values_is_strict_json(tmp_path):
    path = save_checkpoint(
        tmp_path,
        "epoch-0001",
        model={"w": torch.ones(2)},
        optimizer=None,
        state=None,
        meta={"history": [{"epoch": 1, "val_loss": float("nan"), "lr": 0.1}]},
    )
    text = (path / "meta.json").read_text()
    assert "NaN" not in text
    assert json.loads(text)["history"][0] == {"epoch": 1, "val_loss": None, "lr": 0.1}


def test_rng_state_round_trip_and_old_format():
    import random

    from epochpilot.train.rng import get_rng, set_rng

    random.seed(3)
    state = get_rng()
    assert isinstance(state["python"][1], torch.Tensor)  # pickled as one tensor, not 625 ints
    expected = [random.random() for _ in range(3)]
    set_rng(state)
    assert [random.random() for _ in range(3)] == expected
    version, internal, gauss = state["python"]
    set_rng(
        dict(state, python=(version, tuple(internal.tolist()), gauss))
    )  # format of older checkpoints
    assert [random.random() for _ in range(3)] == expected


def test_best_is_written_lazily_from_the_checkpoint_that_holds_it(tmp_path):
    from epochpilot.train.checkpoint import CheckpointDir
    from epochpilot.train.checkpoint_check import best_weights

    root = tmp_path / "c"
    cd = CheckpointDir(root, keep_last=2)

    def save(epoch, holds_best, best_epoch):
        meta = {"counters": {"epochs_done": epoch, "batch": 0, "best_epoch": best_epoch}}
        w = {"w": torch.full((2,), float(epoch))}
        cd.save(
            f"epoch-{epoch:04d}", holds_best=holds_best, model=w, optimizer={}, state={}, meta=meta
        )

    save(1, True, 1)
    save(2, False, 1)
    assert not (root / "best").exists()  # epoch-0001 holds the best weights
    parts = load_checkpoint(root / "epoch-0002")
    weights, source = best_weights(root / "epoch-0002", parts)
    assert weights["w"].tolist() == [1.0, 1.0] and source == root / "epoch-0001"
    save(3, False, 1)  # rotates epoch-0001 out: best/ is linked from it first
    assert sorted(p.name for p in root.iterdir()) == ["best", "epoch-0002", "epoch-0003"]
    assert load_checkpoint(root / "best")["model"]["w"].tolist() == [1.0, 1.0]
    assert read_meta(root / "best")["counters"]["best_epoch"] == 1
    save(4, True, 4)
    cd.close()  # the end of a run brings best/ up to date
    assert load_checkpoint(root / "best")["model"]["w"].tolist() == [4.0, 4.0]
    assert (
        os.stat(root / "best" / "model.pt").st_ino
        == os.stat(root / "epoch-0004" / "model.pt").st_ino
    )

"""Resume falls back: a damaged newest checkpoint (truncated, empty, malicious, wrong shape, garbled meta) costs
one warning line and the run resumes from the newest good one, bitwise as that checkpoint would have resumed;
only when no checkpoint is usable does resume fail, with one CheckpointError line."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
import torch

from epochpilot.core.stopping.base import Decision, Policy, Reason
from epochpilot.errors import CheckpointError
from epochpilot.train import fit, load_checkpoint
from epochpilot.train.checkpoint import CheckpointDir, list_checkpoints
from epochpilot.train.checkpoint_check import best_weights, find_best, newest_best

TIMING = ("epoch_time_s", "samples_per_s")


class Payload:
    """Unpickling this would run a shell command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _fit(blobs, make_mlp, run_dir: Path, **kw):
    X, y = blobs
    args = dict(max_epochs=4, seed=0, run_dir=run_dir, stopper=False, keep_last=2)
    args.update(kw)
    return fit(make_mlp(), (X[:64], y[:64]), (X[64:], y[64:]), **args)


def _history(result) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in result.history]


def _damage(file: Path, how: str, tmp_path: Path) -> None:
    """Damage ``file`` in place (a new inode: a hard-linked ``best/model.pt`` keeps the old bytes)."""
    data = file.read_bytes()
    file.unlink()
    if how == "truncate":
        file.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        file.write_bytes(b"")
    elif how == "flip":  # bytes flipped in the zip's central directory
        tail = bytes(b ^ 0xFF for b in data[-64:])
        file.write_bytes(data[:-64] + tail)
    elif how == "malicious":
        torch.save({"weight": Payload(tmp_path / "pwned")}, file)
    elif how == "garbled":
        file.write_text('{"format_version": 1, "counters": ')
    elif how == "foreign":  # a valid torch file, but not what a checkpoint holds
        torch.save({"hello": torch.zeros(3)}, file)
    elif how == "wrong_shape":  # the same file from a run of a wider model
        other = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
        if file.name == "model.pt":
            torch.save(other.state_dict(), file)
        else:
            opt = torch.optim.AdamW(other.parameters())
            other(torch.randn(2, 4)).sum().backward()
            opt.step()
            torch.save(opt.state_dict(), file)
    else:  # pragma: no cover
        raise AssertionError(how)


@pytest.fixture
def finished(blobs, make_mlp, tmp_path):
    """A run trained for 4 epochs (checkpoints epoch-0003 and epoch-0004), and a copy whose newest checkpoint
    was deleted and that then resumed to 6 epochs: the reference a fallback must reproduce bitwise."""
    _fit(blobs, make_mlp, tmp_path / "run")
    reference = tmp_path / "reference"
    shutil.copytree(tmp_path / "run", reference)
    shutil.rmtree(reference / "checkpoints" / "epoch-0004")
    expected = _fit(blobs, make_mlp, reference, max_epochs=6, resume="auto")
    return tmp_path / "run", expected


@pytest.mark.parametrize(
    ("victim", "how"),
    [
        ("model.pt", "truncate"),
        ("model.pt", "flip"),
        ("optimizer.pt", "empty"),
        ("state.pt", "malicious"),
        ("state.pt", "foreign"),
        ("meta.json", "garbled"),
        ("meta.json", "empty"),
        ("model.pt", "wrong_shape"),
        ("optimizer.pt", "wrong_shape"),
    ],
)
def test_damaged_newest_checkpoint_falls_back_bitwise(
    blobs, make_mlp, tmp_path, caplog, finished, victim, how
):
    run, expected = finished
    file = run / "checkpoints" / "epoch-0004" / victim
    _damage(file, how, tmp_path)
    with caplog.at_level(logging.INFO, logger="epochpilot"):
        resumed = _fit(blobs, make_mlp, run, max_epochs=6, resume="auto")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert str(file) in warnings[0] and "resuming from epoch-0003" in warnings[0]
    assert "\n" not in warnings[0]
    assert not (tmp_path / "pwned").exists()
    assert _history(resumed) == _history(expected)
    assert resumed.best_epoch == expected.best_epoch
    for key, value in expected.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    # the damaged checkpoint was replaced by a good one as training went past it
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["epoch-0005", "epoch-0006"]


def test_no_usable_checkpoint_is_one_line(blobs, make_mlp, tmp_path):
    run = tmp_path / "run"
    _fit(blobs, make_mlp, run)
    for name in ("epoch-0003", "epoch-0004"):
        _damage(run / "checkpoints" / name / "state.pt", "malicious", tmp_path)
    with pytest.raises(CheckpointError, match="no usable checkpoint in") as err:
        _fit(blobs, make_mlp, run, max_epochs=6, resume="auto")
    text = str(err.value)
    assert "\n" not in text and "epoch-0004/state.pt was refused" in text
    assert "overwrite=True" in text  # Python wording; the CLI says --overwrite (tests/cli)
    assert not (tmp_path / "pwned").exists()


def test_wrong_shape_everywhere_is_one_line(blobs, make_mlp, tmp_path):
    run = tmp_path / "run"
    _fit(blobs, make_mlp, run)
    with pytest.raises(CheckpointError, match="no usable checkpoint") as err:
        _fit(
            blobs,
            lambda: make_mlp(n_in=4, n_out=3).append(torch.nn.Linear(3, 3)),
            run,
            max_epochs=6,
            resume=True,
        )
    assert "does not match the model" in str(err.value) and "\n" not in str(err.value)


def test_an_explicit_checkpoint_does_not_fall_back(blobs, make_mlp, tmp_path):
    run = tmp_path / "run"
    _fit(blobs, make_mlp, run)
    newest = run / "checkpoints" / "epoch-0004"
    _damage(newest / "model.pt", "wrong_shape", tmp_path)
    with pytest.raises(CheckpointError, match=r"epoch-0004/model\.pt does not match the model"):
        _fit(blobs, make_mlp, None, resume=newest)
    _damage(newest / "optimizer.pt", "truncate", tmp_path)
    with pytest.raises(CheckpointError, match=r"optimizer\.pt is truncated"):
        _fit(blobs, make_mlp, None, resume=newest)


class FirstBest(Policy):
    """Epoch 1 is the best and nothing improves afterwards (never stops)."""

    _state_keys = ("seen",)

    def __init__(self) -> None:
        self.monitor, self.mode = "val_loss", "min"
        self._init_state()

    def _init_state(self) -> None:
        self.seen: list[int] = []

    def update(self, epoch, metrics) -> Decision:
        self.seen.append(epoch)
        return Decision(
            stop=False,
            reason=Reason.CONTINUE,
            improved=epoch == 1,
            best_epoch=1,
            best_value=1.0,
            message="",
        )


def test_lost_best_weights_fall_back_to_an_older_checkpoint_or_warn(
    blobs, make_mlp, tmp_path, caplog
):
    run = tmp_path / "run"
    first = _fit(blobs, make_mlp, run, max_epochs=3, stopper=FirstBest())
    assert first.best_epoch == 1 and (run / "checkpoints" / "best").is_dir()
    _damage(run / "checkpoints" / "best" / "model.pt", "truncate", tmp_path)
    with caplog.at_level(logging.WARNING, logger="epochpilot"):
        resumed = _fit(blobs, make_mlp, run, max_epochs=5, stopper=FirstBest(), resume="auto")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "best weights (epoch 1) cannot be read" in warnings[0]
    assert (
        "best/model.pt" in warnings[0]
        and "resuming from epoch-0003 without its best weights" in warnings[0]
    )
    assert len(resumed.history) == 5


def test_best_weights_skip_a_damaged_or_stale_source(tmp_path):
    root = tmp_path / "c"
    cd = CheckpointDir(root, keep_last=3)

    def save(epoch, holds_best, best_epoch, best_value):
        meta = {
            "counters": {
                "epochs_done": epoch,
                "batch": 0,
                "best_epoch": best_epoch,
                "best_value": best_value,
            }
        }
        w = {"w": torch.full((2,), float(epoch))}
        cd.save(
            f"epoch-{epoch:04d}", holds_best=holds_best, model=w, optimizer={}, state={}, meta=meta
        )

    save(1, True, 1, 0.5)
    cd.close()  # best/ now holds epoch 1
    save(2, True, 2, 0.4)
    save(3, False, 2, 0.4)  # epoch-0002 holds the best; best/ is stale (epoch 1)
    parts = load_checkpoint(root / "epoch-0003")
    assert best_weights(root / "epoch-0003", parts)[1] == root / "epoch-0002"
    (root / "epoch-0002" / "model.pt").unlink()
    (root / "epoch-0002" / "model.pt").write_bytes(b"PK\x03\x04garbage")
    weights, source, why = find_best(root / "epoch-0003", parts)
    assert weights is None and source is None
    assert "epoch-0002/model.pt is truncated" in why and "holds another best (not epoch 2)" in why
    assert best_weights(root / "epoch-0003", parts) == (None, None)
    with pytest.raises(CheckpointError, match="best weights \\(epoch 2\\) cannot be read"):
        newest_best(root)


def test_listing_skips_a_checkpoint_with_unreadable_meta(tmp_path):
    root = tmp_path / "c"
    cd = CheckpointDir(root, keep_last=2)
    for epoch in (1, 2):
        meta = {"counters": {"epochs_done": epoch, "batch": 0, "step": epoch}}
        cd.save(
            f"epoch-{epoch:04d}", model={"w": torch.zeros(1)}, optimizer={}, state={}, meta=meta
        )
    (root / "epoch-0002" / "meta.json").write_text("{")
    assert [p.name for p in list_checkpoints(root)] == ["epoch-0001"]
    # a new save rotates the damaged one out first
    cd2 = CheckpointDir(root, keep_last=2)
    meta = {"counters": {"epochs_done": 3, "batch": 0, "step": 3}}
    cd2.save("epoch-0003", model={"w": torch.zeros(1)}, optimizer={}, state={}, meta=meta)
    assert sorted(p.name for p in root.iterdir()) == ["epoch-0001", "epoch-0003"]

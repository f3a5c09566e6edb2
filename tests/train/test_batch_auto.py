"""``fit(batch_size="auto", effective_batch=N)``, ``on_oom="shrink"`` and ``lr_scaling`` (issue 17): the
effective batch and the number of updates stay what the user asked, an injected out-of-memory is survived
(on the first and on a later epoch, and across a SIGKILL + resume, bitwise), and bad input is one line."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from epochpilot.errors import ConfigError, DataError
from epochpilot.train import Callback, fit

SCRIPT = Path(__file__).with_name("_oom_script.py")
ROOT = Path(__file__).resolve().parents[2]


def _data(n: int = 150) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    X = torch.randn(n, 8, generator=g)
    return X, (X[:, 0] > X[:, 1]).long() + (X[:, 2] > 1).long()


def _model() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


class _Epoch(Callback):
    """Tells the out-of-memory hook which epoch runs."""

    def __init__(self) -> None:
        self.now = 0

    def on_epoch_start(self, state):
        self.now = state.epoch


def _oom_above(model: torch.nn.Module, limit: int, from_epoch: int, clock: _Epoch) -> None:
    """A forward pre-hook that raises torch's out-of-memory error for a batch above ``limit``."""

    def hook(module, inputs):
        if clock.now >= from_epoch and inputs[0].shape[0] > limit:
            raise torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 1.00 GiB (injected)"
            )

    model[0].register_forward_pre_hook(hook)


def _fit(limit=None, from_epoch=1, **kw):
    X, y = _data()
    model, clock = _model(), _Epoch()
    if limit is not None:
        _oom_above(model, limit, from_epoch, clock)
    kw = {"max_epochs": 3, "stopper": False, "seed": 0, "report": False, **kw}
    result = fit(model, (X[:120], y[:120]), (X[120:], y[120:]), callbacks=[clock], **kw)
    return model, result


def _gap(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.fit_report
def test_auto_keeps_the_effective_batch_and_the_updates(tmp_path):
    plain, r0 = _fit(batch_size=48)
    auto, r1 = _fit(batch_size="auto", effective_batch=48, run_dir=tmp_path / "run", report=True)
    batch = r1.summary["batch"]
    assert batch["chosen"] == "auto" and batch["effective_batch"] == 48
    assert batch["micro_batch"] * batch["accumulation"] == 48
    assert batch["samples_per_s"] > 0
    assert r1.total_steps == r0.total_steps == 3 * math.ceil(120 / 48)
    assert _gap(plain, auto) < 1e-5  # the same updates, up to float summation order
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written["batch"]["micro_batch"] == batch["micro_batch"]
    assert all(row["micro_batch"] == batch["micro_batch"] for row in r1.history)
    page = (tmp_path / "run" / "report.html").read_text()
    assert f"{batch['micro_batch']} x {batch['accumulation']} = effective batch 48 (auto)" in page


@pytest.mark.parametrize("from_epoch", [1, 2])
def test_out_of_memory_halves_the_micro_batch_and_keeps_the_updates(from_epoch, caplog):
    plain, r0 = _fit(batch_size=16, accumulation=2)
    with caplog.at_level("WARNING", logger="epochpilot"):
        shrunk, r1 = _fit(limit=5, from_epoch=from_epoch, batch_size=16, accumulation=2)
    batch = r1.summary["batch"]
    assert [s["micro_batch"] for s in batch["shrinks"]] == [8, 4]
    assert all(s["epoch"] == from_epoch for s in batch["shrinks"])
    assert batch["micro_batch"] == 4 and batch["accumulation"] == 8
    assert batch["effective_batch"] == 32
    assert r1.total_steps == r0.total_steps
    assert _gap(plain, shrunk) < 1e-5
    lines = [r.getMessage() for r in caplog.records if "out of memory" in r.getMessage()]
    assert len(lines) == 2 and "effective batch 32 unchanged" in lines[0]
    assert r1.history[-1]["micro_batch"] == 4
    assert "micro_batch" not in r0.history[-1]  # a run without batching events keeps its columns


def test_on_oom_raise_and_a_model_that_never_fits():
    with pytest.raises(torch.OutOfMemoryError):
        _fit(limit=5, batch_size=16, on_oom="raise")
    with pytest.raises(ConfigError, match="micro-batch of 1 sample") as info:
        _fit(limit=0, batch_size=16)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="does not fit in memory at min_batch=1"):
        _fit(limit=0, from_epoch=0, batch_size="auto", effective_batch=16)


def test_a_non_oom_error_is_not_swallowed():
    X, y = _data()
    model = _model()

    def hook(module, inputs):
        if module.training and inputs[0].shape[0] > 5:
            raise RuntimeError("a bug in the model")

    model[0].register_forward_pre_hook(hook)
    with pytest.raises((RuntimeError, DataError), match="a bug in the model"):
        fit(model, (X, y), batch_size=16, max_epochs=1, report=False)


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"batch_size": "auto"}, "batch_size='auto' needs effective_batch"),
        ({"batch_size": "big"}, "batch_size must be an int >= 1 or 'auto'"),
        ({"batch_size": 0}, "batch_size must be an int >= 1 or 'auto'"),
        (
            {"batch_size": 32, "effective_batch": 16},
            "effective_batch=16 is smaller than batch_size=32",
        ),
        ({"batch_size": 32, "effective_batch": 48}, "not a multiple of batch_size=32"),
        ({"batch_size": 8, "effective_batch": 0}, "effective_batch must be an int >= 1"),
        ({"batch_size": "auto", "effective_batch": 32, "accumulation": 2}, "drop accumulation"),
        ({"batch_size": 8, "effective_batch": 32, "accumulation": 2}, "not both"),
        ({"on_oom": "retry"}, "on_oom='retry' is unknown"),
        ({"lr_scaling": "cubic", "reference_batch": 32}, "lr_scaling='cubic' is unknown"),
        ({"lr_scaling": "linear"}, "go together"),
        ({"reference_batch": 0}, "reference_batch must be an int >= 1"),
    ],
)
def test_bad_settings_are_one_line(kw, words):
    X, y = _data()
    with pytest.raises(ConfigError) as info:
        fit(_model(), (X, y), max_epochs=1, **kw)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_auto_refuses_data_it_cannot_batch():
    X, y = _data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=8)
    with pytest.raises(DataError, match="cannot change a DataLoader's batch size"):
        fit(_model(), loader, batch_size="auto", effective_batch=32, max_epochs=1)

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(zip(X, y))

    with pytest.raises(DataError, match="needs data with a length"):
        fit(_model(), Stream(), batch_size="auto", effective_batch=32, max_epochs=1)


@pytest.mark.parametrize(("rule", "factor"), [("linear", 4.0), ("sqrt", 2.0)])
def test_lr_scaling_goes_through_the_schedule(rule, factor):
    _, plain = _fit(batch_size=32, lr=1e-3, schedule="cosine")
    _, scaled = _fit(batch_size=32, lr=1e-3, schedule="cosine", lr_scaling=rule, reference_batch=8)
    for a, b in zip(plain.history, scaled.history):
        assert b["lr"] == pytest.approx(a["lr"] * factor, rel=1e-9)
    assert scaled.summary["batch"]["lr_factor"] == factor
    assert scaled.summary["schedule"]["peak_lr"] == pytest.approx(1e-3 * factor)
    _, constant = _fit(batch_size=32, lr=1e-3, lr_scaling=rule, reference_batch=8)
    assert all(row["lr"] == pytest.approx(1e-3 * factor) for row in constant.history)


def test_a_resumed_auto_run_does_not_search_again(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    _, first = _fit(batch_size="auto", effective_batch=40, run_dir=run_dir, max_epochs=2)
    import epochpilot.train.batch_size as search

    def refuse(*args, **kwargs):
        raise AssertionError("searched again on resume")

    monkeypatch.setattr(search, "find_batch_size", refuse)
    _, second = _fit(
        batch_size="auto", effective_batch=40, run_dir=run_dir, max_epochs=3, resume="auto"
    )
    assert second.summary["batch"]["micro_batch"] == first.summary["batch"]["micro_batch"]
    assert second.summary["batch"]["samples_per_s"] == first.summary["batch"]["samples_per_s"]
    assert len(second.history) == 3


def _run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=240
    )
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_sigkill_after_a_shrink_resumes_bitwise(tmp_path):
    whole = tmp_path / "whole.json"
    _run(str(tmp_path / "a"), str(whole))
    # 70 samples, batches of 8, 2 per update: 5 updates per epoch; the shrink is at update 6 (epoch 2)
    killed = _run(str(tmp_path / "b"), str(tmp_path / "unused.json"), "8", ok=False)
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = tmp_path / "resumed.json"
    _run(str(tmp_path / "b"), str(resumed))
    a, b = json.loads(whole.read_text()), json.loads(resumed.read_text())
    assert [s["micro_batch"] for s in a["batch"]["shrinks"]] == [4]
    assert a["batch"] == b["batch"]
    assert a["steps"] == b["steps"] == 20
    assert a["weights"] == b["weights"]  # bitwise
    assert a["history"][-1]["train_loss"] == b["history"][-1]["train_loss"]


def _torchrun(tmp_path: Path, mode: str) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    prefix = tmp_path / mode
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone"]
    cmd += [str(SCRIPT), str(tmp_path / f"run-{mode}"), str(prefix), mode]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(Path(f"{prefix}-{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.slow
def test_under_ddp_every_rank_shrinks_together(tmp_path):
    ranks = _torchrun(tmp_path, "ddp")  # only rank 1 runs out of memory
    assert ranks[0]["batch"] == ranks[1]["batch"]
    assert [s["micro_batch"] for s in ranks[0]["batch"]["shrinks"]] == [4]
    assert ranks[0]["batch"]["effective_batch"] == 32
    assert ranks[0]["weights"] == ranks[1]["weights"]
    assert ranks[0]["history"] == ranks[1]["history"]


@pytest.mark.slow
def test_ddp_gradient_averaging_by_hand_matches_ddps_reducer(tmp_path):
    """on_oom="shrink" under DDP averages the gradients itself (after the ranks agree none ran out of
    memory); on_oom="raise" keeps DDP's reducer. Without an out-of-memory both train the same model."""
    ours, theirs = _torchrun(tmp_path, "ddp-none"), _torchrun(tmp_path, "ddp-raise")
    assert ours[0]["weights"] == ours[1]["weights"] and theirs[0]["weights"] == theirs[1]["weights"]
    assert ours[0]["steps"] == theirs[0]["steps"]
    torch.testing.assert_close(
        torch.tensor(ours[0]["weights"]), torch.tensor(theirs[0]["weights"]), rtol=1e-5, atol=1e-6
    )


def test_out_of_memory_in_validation_splits_the_validation_batches():
    X, y = _data()
    model = _model()

    def hook(module, inputs):
        if not module.training and inputs[0].shape[0] > 10:
            raise torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 1.00 GiB (injected)"
            )

    model[0].register_forward_pre_hook(hook)
    result = fit(
        model, (X[:120], y[:120]), (X[120:], y[120:]), batch_size=30, max_epochs=2, report=False
    )
    batch = result.summary["batch"]
    assert [s["micro_batch"] for s in batch["shrinks"]] == [15, 8]
    assert batch["effective_batch"] == 30 and result.total_steps == 8
    assert all(math.isfinite(row["val_loss"]) for row in result.history)

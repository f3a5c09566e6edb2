"""Exact resume: SIGKILL a real training process at several points, rerun the same command, compare bitwise."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).with_name("_resume_script.py")
ROOT = Path(__file__).resolve().parents[2]
TIMING = ("epoch_time_s", "samples_per_s")


def _start(run_dir: Path, out: Path, kill: str = "-", data: str = "dataset") -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(run_dir), str(out), kill, data],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run(
    run_dir: Path, out: Path, kill: str = "-", data: str = "dataset"
) -> subprocess.CompletedProcess:
    proc = _start(run_dir, out, kill, data)
    _, err = proc.communicate(timeout=180)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", err)


def _result(out: Path) -> tuple[dict, dict]:
    weights = torch.load(out, weights_only=True)
    info = json.loads(Path(str(out) + ".json").read_text())
    for row in info["history"]:
        for key in TIMING:
            row.pop(key)
    return weights, info


def _files_history(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    for row in rows:
        for key in TIMING:
            row.pop(key)
    return rows


def _assert_same(run_dir: Path, out: Path, ref_dir: Path, ref_out: Path) -> None:
    weights, info = _result(out)
    ref_weights, ref_info = _result(ref_out)
    assert weights.keys() == ref_weights.keys()
    for key in weights:
        assert torch.equal(weights[key], ref_weights[key]), (
            f"{key} differs from the uninterrupted run"
        )
    assert info == ref_info  # history rows (timing aside), stop epoch, best epoch, reason
    assert _files_history(run_dir) == _files_history(ref_dir)
    assert (run_dir / "history.csv").read_text().count("\n") == len(ref_info["history"]) + 1
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stopped_epoch"] == ref_info["stopped_epoch"]


def _in_flight(run_dir: Path, name: str) -> None:
    """After an ``inflight:NAME`` kill: NAME was being written (its temporary directory holds a partial
    ``state.pt``) and never renamed into place."""
    ckpts = run_dir / "checkpoints"
    tmps = [p for p in ckpts.iterdir() if p.name.startswith(f".tmp-{name}-")]
    assert not (ckpts / name).exists(), f"{name} was completed: the kill was not during its write"
    assert len(tmps) == 1 and (tmps[0] / "state.pt").is_file(), sorted(
        p.name for p in ckpts.iterdir()
    )


def _campaign(base: Path, kills: list[str], data: str) -> tuple[Path, Path]:
    """Run the same command once per kill (each resuming the last), then to the end; return (run_dir, out)."""
    run_dir, out = base / "run", base / "out.pt"
    for kill in kills:
        proc = _run(run_dir, out, kill, data)
        assert proc.returncode == -signal.SIGKILL, f"{kill}: rc={proc.returncode}\n{proc.stderr}"
        assert not out.exists()
        if kill.startswith("inflight:"):
            _in_flight(run_dir, kill.split(":", 1)[1])
    proc = _run(run_dir, out, "-", data)
    assert proc.returncode == 0, proc.stderr
    return run_dir, out


@pytest.mark.slow
def test_sigkill_resume_matrix(tmp_path: Path) -> None:
    """SIGKILL real training processes at several points, rerun the same command, compare bitwise.

    Lane A (a Dataset drawing numpy/python randomness per item) is killed four times in a row: mid-epoch,
    inside validation, halfway through writing a checkpoint, and while ``best`` is being replaced; each rerun
    resumes from what the previous kill left. Lane B (a user DataLoader with shuffle=True) is killed
    mid-epoch, then in the training thread while the background writer is halfway through a checkpoint (the
    write is in flight: training had gone on past it). Both lanes and the uninterrupted references run side by side to keep the test short.
    """
    kills_a = [
        "step:7",  # mid-epoch 2: resumes from the mid-epoch checkpoint at update 4
        "val:3",  # inside validation of epoch 3
        "ckpt:step-0000016",  # halfway through writing a checkpoint's state.pt
        "bestswap",  # between moving the old checkpoints/best aside and renaming the new one in
    ]
    jobs = {
        "a": lambda: _campaign(tmp_path / "a", kills_a, "dataset"),
        "b": lambda: (
            _campaign(tmp_path / "ref-a", [], "dataset"),
            _campaign(tmp_path / "ref-b", [], "loader"),
            _campaign(tmp_path / "b", ["step:13", "inflight:step-0000016"], "loader"),
        ),
    }
    with ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        results = {name: f.result() for name, f in futures.items()}
    run_a = results["a"]
    ref_a, ref_b, run_b = results["b"]
    _assert_same(*run_a, *ref_a)
    _assert_same(*run_b, *ref_b)
    names = sorted(p.name for p in (run_a[0] / "checkpoints").iterdir())
    assert "best" in names and not [n for n in names if n.startswith(".")]


@pytest.mark.slow
def test_sigkill_inside_cooldown_branches(tmp_path: Path) -> None:
    """``cooldown="sweep"``: killed inside branch 3 (mid-epoch), inside the last branch, and halfway through a
    checkpoint written inside it; each rerun resumes in the branch with the trunk's copy from the checkpoint
    and the run ends bitwise as the uninterrupted one (the branches, the kept model and its origin too)."""
    kills = ["step:33", "step:53", "ckpt:step-0000056"]
    with ThreadPoolExecutor(2) as pool:
        cut = pool.submit(_campaign, tmp_path / "cut", kills, "sweep")
        ref = pool.submit(_campaign, tmp_path / "ref", [], "sweep")
        run, reference = cut.result(), ref.result()
    _assert_same(*run, *reference)
    info = _result(reference[1])[1]
    assert [b["fork_step"] for b in info["branches"]] == [
        5,
        15,
        30,
        50,
    ]  # the kills were in branches
    assert info["history"][-1]["branch"] == 4

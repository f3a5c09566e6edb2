"""DDP under torchrun with 2 CPU (gloo) processes: one stop decision, one history, resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("_ddp_script.py")
ROOT = Path(__file__).resolve().parents[2]


def _torchrun(run_dir: Path, prefix: Path, max_epochs: int, *extra: str) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--standalone",
        str(SCRIPT),
        str(run_dir),
        str(prefix),
        str(max_epochs),
        *extra,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(Path(f"{prefix}-{rank}.json").read_text()) for rank in (0, 1)]


@pytest.mark.slow
def test_two_processes_stop_together_write_once_and_resume(tmp_path):
    run_dir = tmp_path / "run"
    first = _torchrun(run_dir, tmp_path / "a", max_epochs=2)
    assert [r["stopped_epoch"] for r in first] == [2, 2] and first[0]["reason"] == "max_epochs"
    # resume under DDP: the policy wants rank 1 to stop at epoch 2 and rank 0 at epoch 3; rank 0 decides
    ranks = _torchrun(run_dir, tmp_path / "b", max_epochs=10)
    assert [r["stopped_epoch"] for r in ranks] == [3, 3]
    assert ranks[0]["message"] == ranks[1]["message"] == "rank 0 says stop"
    assert ranks[0]["world_size"] == 2
    assert ranks[0]["weights"] == ranks[1]["weights"]  # DDP kept the replicas identical
    assert ranks[0]["history"] == ranks[1]["history"]  # metrics were averaged over both ranks
    rows = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [
        1,
        2,
        3,
    ]  # written once, by rank 0, and not repeated on resume
    assert rows[0] == {k: first[0]["history"][0][k] for k in rows[0]}
    # 55 samples over 2 ranks -> 28 each -> 4 batches of 8 -> 4 updates per epoch
    assert [r["step"] for r in rows] == [4, 8, 12]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stopped_epoch"] == 3 and summary["stop_reason"] == "user"


@pytest.mark.slow
def test_two_processes_take_the_same_cooldown_branches(tmp_path):
    """cooldown="sweep" under DDP: every rank forks, joins and keeps the same epochs (rows are all-reduced,
    branch points count updates), so the replicas stay identical and rank 0 writes one history."""
    ranks = _torchrun(tmp_path / "run", tmp_path / "s", 14, "sweep")
    assert len(ranks[0]["branches"]) >= 3
    assert ranks[0]["branches"] == ranks[1]["branches"]
    assert ranks[0]["history"] == ranks[1]["history"]
    assert ranks[0]["kept_from"] == ranks[1]["kept_from"]
    assert ranks[0]["weights"] == ranks[1]["weights"]
    assert [r["branch"] for r in ranks[0]["history"]].count(0) < 14
    rows = (tmp_path / "run" / "history.jsonl").read_text().splitlines()
    assert len(rows) == len(ranks[0]["history"]) <= 14

"""Stages with a MixedSampler stage under DDP (torchrun, 2 CPU/gloo processes): every rank reads a disjoint
share of the same epoch draw, the ranks agree on the stage and the stop, one history is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from epochpilot.finetune.mixed import MixedSampler, shard_order

SCRIPT = Path(__file__).with_name("_stages_ddp_script.py")
ROOT = Path(__file__).resolve().parents[2]


def test_shard_order_splits_one_draw_like_distributed_sampler():
    order = torch.arange(10, 21)  # 11 entries over 3 ranks: padded to 12 with the first entry
    shares = [shard_order(order, r, 3).tolist() for r in range(3)]
    assert shares == [[10, 13, 16, 19], [11, 14, 17, 20], [12, 15, 18, 10]]
    assert shard_order(order, 0, 1) is order
    assert shard_order(torch.arange(2), 4, 5).tolist() == [0]  # more ranks than samples


def test_mixed_sampler_ranks_take_disjoint_shares_of_the_same_draw():
    data = {"a": (torch.zeros(30, 1), torch.zeros(30)), "b": (torch.ones(7, 1), torch.ones(7))}
    whole = MixedSampler(data, {"b": 3.0}, seed=1).indices(epoch=2)
    shares = []
    for rank in (0, 1):
        s = MixedSampler(data, {"b": 3.0}, seed=1)
        s.set_distributed(rank, 2)
        s.set_epoch(2)
        shares.append(list(s))
        assert len(s) == len(shares[-1]) == 19  # 37 draws -> 19 per rank (one padded)
    assert shares[0] + shares[1] != whole and sorted(shares[0][:18] + shares[1][:18]) == sorted(
        whole[:36]
    )
    assert Counter(shares[0] + shares[1]) == Counter(whole + whole[:1])
    with pytest.raises(ValueError, match="rank must be"):
        MixedSampler(data).set_distributed(2, 2)


@pytest.mark.slow
def test_stages_with_a_mixed_stage_under_torchrun(tmp_path):
    run_dir = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           str(SCRIPT), str(run_dir), str(tmp_path / "out")]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"out-{r}.json").read_text()) for r in (0, 1)]

    # rank 0's stopper ended the general stage after 2 epochs (rank 1's wanted 1): both ranks followed it
    stages = ["general", "general", "mixed", "mixed"]
    for r in ranks:
        assert [row["stage"] for row in r["history"]] == stages
        assert (r["stopped_epoch"], r["reason"], r["world_size"]) == (4, "max_epochs", 2)
    assert ranks[0]["history"] == ranks[1]["history"] and ranks[0]["weights"] == ranks[1]["weights"]
    rows = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [row["stage"] for row in rows] == stages  # one history, written once by rank 0

    # each epoch, the ranks read disjoint shares of the same draw, as shard_order splits it
    mix = MixedSampler(
        {
            "general": (torch.zeros(45, 1), torch.zeros(45)),
            "task": (torch.ones(10, 1), torch.ones(10)),
        },
        weights={"task": 2.0},
        seed=3,
    )
    for epoch, stage in enumerate(stages, start=1):
        if stage == "general":
            draw = torch.randperm(45, generator=torch.Generator().manual_seed(0 + epoch))
        else:
            draw = torch.tensor(mix.indices(epoch))
        for r in (0, 1):
            assert ranks[r]["seen"][epoch - 1] == shard_order(draw, r, 2).tolist(), (epoch, r)
        both = ranks[0]["seen"][epoch - 1] + ranks[1]["seen"][epoch - 1]
        assert Counter(both) == Counter(draw.tolist() + draw.tolist()[: len(both) - len(draw)])
    task_reads = sum(i >= 45 for i in ranks[0]["seen"][2] + ranks[1]["seen"][2])
    padded = int(mix.indices(3)[0] >= 45)  # the one padding draw repeats the epoch's first
    assert task_reads - padded == mix.counts()["task"] == 17  # task at 2x its share: 20/65 of 55

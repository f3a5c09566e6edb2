"""bench/overhead.py --lockstep: the runners really take turns, one epoch each, and every epoch is timed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parents[1] / "bench" / "overhead.py"


def _bench():
    threads = torch.get_num_threads()
    spec = importlib.util.spec_from_file_location("bench_overhead", BENCH)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)  # it pins torch to one thread, as its figures need
    finally:
        torch.set_num_threads(threads)
    return module


def test_lockstep_runs_one_epoch_of_each_runner_in_turn():
    bench = _bench()
    data = tuple(t[:256] for t in bench.load())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        clocks = bench.lockstep("mlp", data, 4, list(bench.LOCKSTEP))
    finally:
        torch.set_num_threads(threads)
    assert list(clocks) == list(bench.LOCKSTEP)
    spans = {name: clock.spans for name, clock in clocks.items()}
    assert all(len(s) == 4 for s in spans.values()), spans
    # epoch e of every runner, in the runners' order, before epoch e + 1 of any
    order = [
        (span[0][0], span[1][0], e, i)
        for i, name in enumerate(bench.LOCKSTEP)
        for e, span in enumerate(spans[name])
    ]
    order.sort()
    assert [(e, i) for _, _, e, i in order] == sorted((e, i) for _, _, e, i in order)
    assert all(a[1] <= b[0] for a, b in zip(order, order[1:])), "two runners ran at once"
    wall, cpu = clocks[bench.LOCKSTEP[2]].epochs()
    assert len(wall) == len(cpu) == 3 and all(c > 0 for c in cpu)
    assert not bench.GATES and not bench.PENDING

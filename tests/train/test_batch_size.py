"""Tests for epochpilot.train.batch_size: the search, accumulation, restore, goals and input checks (CPU)."""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from epochpilot.errors import ConfigError
from epochpilot.train import batch_size as bs
from epochpilot.train.batch_size import (
    BatchChoice,
    find_batch_size,
    fit_to_effective,
    search_largest,
)

LIMIT = 48
OOM = getattr(
    torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError
)  # torch.OutOfMemoryError: 2.5+


@pytest.fixture(autouse=True)
def _quick_timing(monkeypatch):
    """Time only the 3 minimum steps per try (the real floor of 0.05 s per try is for benchmarks)."""
    monkeypatch.setattr(bs, "_MIN_TIMED_S", 0.0)


def _data(n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


def _net(
    limit: int | None = LIMIT,
    exc: type[BaseException] = OOM,
) -> nn.Module:
    """A small MLP (BatchNorm + Dropout) that "runs out of memory" above ``limit`` rows."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3)
    )
    if limit is not None:

        def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            if args[0].shape[0] > limit:
                raise exc(f"CUDA out of memory. Tried to allocate {args[0].shape[0]} rows")

        model.register_forward_pre_hook(hook)
    return model


LOSS = nn.functional.cross_entropy


def test_binary_search_finds_the_largest_fitting_batch_exactly():
    choice = find_batch_size(_net(), _data(), LOSS, min_batch=2)
    assert choice.batch_size == LIMIT and choice.accumulation == 1
    assert choice.effective_batch == LIMIT
    assert [(t.batch, t.outcome) for t in choice.tried] == [
        (2, "ok"), (4, "ok"), (8, "ok"), (16, "ok"), (32, "ok"), (64, "oom"),
        (48, "ok"), (56, "oom"), (52, "oom"), (50, "oom"), (49, "oom"),
    ]  # fmt: skip
    assert all(t.samples_per_s is None for t in choice.tried if t.outcome == "oom")
    assert choice.samples_per_s is not None and choice.samples_per_s > 0
    assert choice.peak_memory_bytes is None and choice.device == "cpu"


def test_cap_is_the_dataset_size_and_max_batch():
    assert find_batch_size(_net(None), _data(40), LOSS, min_batch=2).batch_size == 40
    choice = find_batch_size(_net(None), _data(), LOSS, min_batch=2, max_batch=20)
    assert choice.batch_size == 20 and max(t.batch for t in choice.tried) == 20


def test_runtime_error_saying_out_of_memory_counts_as_oom():
    choice = find_batch_size(_net(exc=RuntimeError), _data(), LOSS, min_batch=2)
    assert choice.batch_size == LIMIT


@pytest.mark.parametrize(
    ("effective", "batch", "accumulation"), [(128, 32, 4), (96, 48, 2), (30, 30, 1)]
)
def test_accumulation_reaches_the_effective_batch_exactly(effective, batch, accumulation):
    choice = find_batch_size(_net(), _data(), LOSS, min_batch=2, effective_batch=effective)
    assert (choice.batch_size, choice.accumulation) == (batch, accumulation)
    assert choice.effective_batch == effective == batch * accumulation
    assert all(t.batch <= effective for t in choice.tried)


def test_callers_model_optimizer_and_rng_are_unchanged():
    model = _net()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-3)
    X, y = _data()
    LOSS(model(X[:16]), y[:16]).backward()
    opt.step()  # optimizer state exists
    opt.zero_grad()
    model.eval()
    before_model = {k: v.clone() for k, v in model.state_dict().items()}
    before_opt = opt.state_dict()
    before_opt = {
        "param_groups": [dict(g) for g in before_opt["param_groups"]],
        "state": {k: {n: t.clone() for n, t in s.items()} for k, s in before_opt["state"].items()},
    }
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    choice = find_batch_size(model, (X, y), LOSS, optimizer=opt, min_batch=2)
    assert choice.batch_size == LIMIT
    after = model.state_dict()
    assert before_model.keys() == after.keys()
    assert all(torch.equal(before_model[k], after[k]) for k in after)
    assert not model.training and all(p.grad is None for p in model.parameters())
    now = opt.state_dict()
    assert now["param_groups"] == before_opt["param_groups"]
    for k, s in before_opt["state"].items():
        assert all(torch.equal(t, now["state"][k][n]) for n, t in s.items())
    assert random.getstate() == rng[0]
    assert all(
        np.array_equal(a, b) for a, b in zip(np.random.get_state(), rng[1]) if hasattr(a, "shape")
    )
    assert torch.equal(torch.get_rng_state(), rng[2])


def test_optimizer_copy_keeps_class_and_group_hyperparameters():
    model = _net(None)
    opt = torch.optim.SGD(
        [{"params": model[0].parameters(), "lr": 0.5}, {"params": model[4].parameters()}],
        lr=0.1,
        momentum=0.9,
    )
    opt.add_param_group({"params": model[1].parameters(), "lr": 0.01})
    work = copy.deepcopy(model)
    made = bs._optimizer_factory(model, work, opt)()
    assert type(made) is torch.optim.SGD
    assert [g["lr"] for g in made.param_groups] == [0.5, 0.1, 0.01]
    assert all(g["momentum"] == 0.9 for g in made.param_groups)
    mine = {id(p) for p in work.parameters()}
    assert all(id(p) in mine for g in made.param_groups for p in g["params"])
    with pytest.raises(ConfigError, match="not the model's"):
        bs._optimizer_factory(_net(None), work, opt)


def test_throughput_goal_picks_the_best_measured_samples_per_s(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(bs, "_now", lambda: clock[0])

    class Costly(nn.Module):  # each forward "takes" 1 + (b / 8)^2 seconds: samples/s peaks at b = 8
        def __init__(self) -> None:
            super().__init__()
            self.net = _net(None)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            clock[0] += 1 + (x.shape[0] / 8) ** 2
            return self.net(x)

    choice = find_batch_size(Costly(), _data(64), LOSS, min_batch=2, goal="throughput")
    assert [t.batch for t in choice.tried] == [2, 4, 8, 16, 32, 64]
    assert choice.batch_size == 8 and choice.goal == "throughput"
    assert choice.samples_per_s == pytest.approx(8 / 2)
    memory = find_batch_size(Costly(), _data(64), LOSS, min_batch=2)
    assert memory.batch_size == 64


def test_time_budget_ends_the_search_with_the_best_so_far(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(bs, "_now", lambda: clock[0])

    class Slow(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = _net(None)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            clock[0] += 1.0
            return self.net(x)

    choice = find_batch_size(Slow(), _data(), LOSS, min_batch=2, time_budget_s=10)
    assert [t.batch for t in choice.tried] == [2, 4, 8]  # 4 s per try: over budget after the third
    assert choice.batch_size == 8


def test_dataset_dataloader_and_numpy_inputs():
    X, y = _data(64)
    ds = torch.utils.data.TensorDataset(X, y)
    assert find_batch_size(_net(), ds, LOSS, min_batch=2).batch_size == LIMIT
    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    assert find_batch_size(_net(), loader, LOSS, min_batch=2).batch_size == LIMIT
    Xn, yn = X.double().numpy(), y.numpy().astype(np.int32)
    assert find_batch_size(_net(), (Xn, yn), LOSS, min_batch=2).batch_size == LIMIT


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"goal": "speed"}, "goal"),
        ({"headroom": 1.0}, "headroom"),
        ({"headroom": -0.1}, "headroom"),
        ({"max_batch": 0}, "max_batch"),
        ({"min_batch": 0}, "min_batch"),
        ({"min_batch": 8, "effective_batch": 4}, "effective_batch"),
        ({"min_batch": 8, "max_batch": 4}, "max_batch"),
        ({"time_budget_s": 0}, "time_budget_s"),
    ],
)
def test_bad_arguments_give_one_line_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name) as info:
        find_batch_size(_net(), _data(), LOSS, **kwargs)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ConfigError)


def test_data_without_a_length_is_refused():
    X, y = _data(16)
    with pytest.raises(ValueError, match="batch_size='auto'") as info:
        find_batch_size(_net(), ((X[i : i + 4], y[i : i + 4]) for i in range(0, 16, 4)), LOSS)
    assert "\n" not in str(info.value) and "explicit batch_size" in str(info.value)


def test_a_model_that_does_not_fit_at_min_batch_is_refused():
    with pytest.raises(ConfigError, match="does not fit in memory at min_batch=1") as info:
        find_batch_size(_net(limit=0), _data(), LOSS)
    assert "\n" not in str(info.value)


def test_a_bug_in_the_loss_is_raised_not_taken_for_oom():
    def bad_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise KeyError("my bug")

    rng = torch.get_rng_state()
    with pytest.raises(KeyError, match="my bug"):
        find_batch_size(_net(), _data(), bad_loss, min_batch=2)
    assert torch.equal(torch.get_rng_state(), rng)


def test_str_shows_choice_and_a_table_of_tries():
    text = str(find_batch_size(_net(), _data(), LOSS, min_batch=2, effective_batch=128))
    lines = text.splitlines()
    assert lines[0].startswith("batch_size=32 x accumulation=4 = effective batch 128")
    assert "samples/s" in lines[2] and len(lines) == 3 + 11
    assert any(" oom " in line for line in lines)
    assert isinstance(BatchChoice(4, 1, 4, None, None), BatchChoice)


@given(st.integers(1, 40), st.integers(1, 600), st.integers(1, 600))
def test_search_largest_is_exact(low, limit, extra):
    cap = low + extra
    calls: list[int] = []

    def fits(b: int) -> bool:
        calls.append(b)
        return b <= limit

    got = search_largest(fits, low, cap)
    assert got == (None if limit < low else min(limit, cap))
    assert all(low <= b <= cap for b in calls) and len(calls) == len(set(calls))
    assert len(calls) <= 2 * (cap.bit_length() + 1)


@given(st.integers(1, 500), st.integers(1, 500))
def test_fit_to_effective_divides_exactly_and_is_largest(largest, effective):
    batch, accumulation = fit_to_effective(largest, effective)
    assert batch * accumulation == effective and 1 <= batch <= min(largest, effective)
    assert not any(effective % d == 0 for d in range(batch + 1, min(largest, effective) + 1))
    assert fit_to_effective(largest, None) == (largest, 1)


def test_fit_to_effective_without_a_divisor_in_range_is_refused():
    with pytest.raises(ConfigError, match="effective_batch=7 has no divisor"):
        fit_to_effective(6, 7, min_batch=2)


def test_tiny_steps_are_timed_for_at_least_the_floor(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(bs, "_now", lambda: clock[0])
    monkeypatch.setattr(bs, "_MIN_TIMED_S", 0.05)

    class Quick(nn.Module):  # 0.004 "seconds" a step: 13 timed steps reach the 0.05 s floor
        def __init__(self) -> None:
            super().__init__()
            self.net = _net(None)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            clock[0] += 0.004
            return self.net(x)

    choice = find_batch_size(Quick(), _data(8), LOSS, min_batch=8)
    assert choice.tried == (bs.Trial(8, "ok", pytest.approx(14 * 0.004), pytest.approx(8 / 0.004)),)
    assert hash(choice) == hash(choice)  # frozen and hashable: tried is a tuple


def test_another_error_after_a_fit_counts_as_not_fitting():
    model = _net(None)

    def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        if args[0].shape[0] > 20:
            raise ValueError("cuDNN error: CUDNN_STATUS_NOT_SUPPORTED")

    model.register_forward_pre_hook(hook)
    choice = find_batch_size(model, _data(), LOSS, min_batch=2)
    assert choice.batch_size == 20
    assert ("error" in {t.outcome for t in choice.tried}) and "oom" not in {
        t.outcome for t in choice.tried
    }

"""budget: counts checked against a real DataLoader + DistributedSampler + accumulation loop."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from epochpilot.core import budget


def count_updates(n: int, batch: int, accumulation: int, world_size: int, drop_last: bool) -> int:
    """Optimizer updates that rank 0 of a real loop makes in one epoch (the oracle)."""
    data = TensorDataset(torch.arange(n, dtype=torch.float32))
    sampler = (
        DistributedSampler(data, num_replicas=world_size, rank=0, shuffle=False)
        if world_size > 1
        else None
    )
    loader = DataLoader(data, batch_size=batch, sampler=sampler, drop_last=drop_last)
    updates = 0
    pending = 0
    for _ in loader:
        pending += 1  # loss.backward() on this batch
        if pending == accumulation:
            updates += 1  # optimizer.step()
            pending = 0
    if pending:
        updates += 1  # the partial window is flushed at epoch end
    return updates


GRID = list(
    itertools.product(
        [1, 7, 31, 100, 101, 1000],
        [1, 3, 8, 32, 100],
        [1, 2, 3, 4, 8],
        [1, 2, 3],
        [False, True],
    )
)


@pytest.mark.parametrize("n,batch,accumulation,world_size,drop_last", GRID)
def test_steps_per_epoch_matches_real_loop(n, batch, accumulation, world_size, drop_last):
    expected = count_updates(n, batch, accumulation, world_size, drop_last)
    if expected == 0:
        with pytest.raises(ValueError, match="batch_size"):
            budget.steps_per_epoch(
                n, batch, accumulation=accumulation, world_size=world_size, drop_last=drop_last
            )
        return
    got = budget.steps_per_epoch(
        n, batch, accumulation=accumulation, world_size=world_size, drop_last=drop_last
    )
    assert got == expected


@given(
    n=st.integers(1, 100_000),
    batch=st.integers(1, 512),
    accumulation=st.integers(1, 16),
    world_size=st.integers(1, 8),
    epochs=st.integers(1, 200),
)
def test_total_and_inverse_agree(n, batch, accumulation, world_size, epochs):
    kw = {"accumulation": accumulation, "world_size": world_size}
    per_epoch = budget.steps_per_epoch(n, batch, **kw)
    steps = budget.total_steps(n, batch, epochs, **kw)
    assert steps == per_epoch * epochs
    assert budget.epochs_for_steps(n, batch, steps, **kw) == epochs
    # One update more than the budget needs one epoch more.
    assert budget.epochs_for_steps(n, batch, steps + 1, **kw) == epochs + 1


@given(n=st.integers(1, 10_000), batch=st.integers(1, 256), accumulation=st.integers(1, 8))
def test_more_accumulation_never_adds_updates(n, batch, accumulation):
    assert budget.steps_per_epoch(
        n, batch, accumulation=accumulation + 1
    ) <= budget.steps_per_epoch(n, batch, accumulation=accumulation)


def test_describe_words():
    assert budget.describe(1000, 100, epochs=15) == (
        "1000 samples / batch 100 = 10 iterations per epoch; 15 epochs = 150 updates; "
        "each sample is seen 15 times"
    )
    text = budget.describe(1000, 32, epochs=2, accumulation=4, world_size=2)
    assert text.startswith("1000 samples over 2 processes = 500 per process")
    assert "16 iterations per epoch" in text
    assert "accumulating 4 batches = 4 updates per epoch" in text
    assert "2 epochs = 8 updates" in text
    assert "(the last update uses" not in text
    assert "the last update uses 2 batches" in budget.describe(100, 10, accumulation=4)
    assert "4 samples dropped each epoch" in budget.describe(100, 32, drop_last=True)


@pytest.mark.parametrize(
    "call,field",
    [
        (lambda: budget.steps_per_epoch(0, 32), "n_samples"),
        (lambda: budget.steps_per_epoch(100, 0), "batch_size"),
        (lambda: budget.steps_per_epoch(100, 32, accumulation=0), "accumulation"),
        (lambda: budget.steps_per_epoch(100, 32, world_size=0), "world_size"),
        (lambda: budget.total_steps(100, 32, 0), "epochs"),
        (lambda: budget.epochs_for_steps(100, 32, 0), "steps"),
        (lambda: budget.steps_per_epoch(10, 32, drop_last=True), "batch_size"),
    ],
)
def test_bad_input_names_the_argument(call, field):
    with pytest.raises(ValueError, match=field):
        call()


def test_non_int_is_a_type_error():
    with pytest.raises(TypeError, match="batch_size"):
        budget.steps_per_epoch(100, 32.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="n_samples"):
        budget.steps_per_epoch(True, 32)  # type: ignore[arg-type]

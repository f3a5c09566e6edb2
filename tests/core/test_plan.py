"""Tests for epochpilot.plan: tables, effective samples, budget arithmetic, warmup, schedule, errors, CLI."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from epochpilot.cli import plan as cli_plan
from epochpilot.core import budget
from epochpilot.core.plan import (
    CALIBRATED,
    DEFAULT_LR,
    LR_EXPONENT,
    SEEDS,
    DataProfile,
    EpochPlan,
    calibrated_epochs,
    default_batch_size,
    plan,
    seed_epochs,
)
from epochpilot.core.schedules import Cosine, Warmup, simulate
from epochpilot.data.audit.report import audit
from epochpilot.errors import DataError


@pytest.mark.parametrize(
    "n, mode, expected",
    [
        (500, "full", 30),
        (5_000, "full", 15),
        (50_000, "full", 5),
        (5_000, "lora", 20),
        (500_000, "lora", 5),
    ],
)
def test_seeds_table_uses_the_upper_typical_value(n, mode, expected):
    assert plan(n, mode=mode, table="seeds").max_epochs == expected
    assert plan(n, mode="mixed", table="seeds").max_epochs == 15


def test_seed_rows_match_the_issue():
    assert seed_epochs(999) == (10, 50, 15, 30)
    assert seed_epochs(1_000) == (5, 20, 8, 15)
    assert seed_epochs(10_000) == (1, 10, 2, 5)
    assert [row[0] for row in SEEDS["full"]] == [1_000, 10_000, math.inf]


def test_calibrated_table_hits_its_anchors_and_is_monotone():
    for n, epochs in CALIBRATED:
        assert calibrated_epochs(n) == epochs
        assert plan(n).max_epochs == epochs
    sizes = np.unique(np.logspace(1, 6, 60).astype(int))
    values = [calibrated_epochs(int(n)) for n in sizes]
    assert all(a >= b for a, b in zip(values, values[1:]))  # more data, fewer passes
    assert (
        calibrated_epochs(10) == CALIBRATED[0][1] and calibrated_epochs(10**7) == CALIBRATED[-1][1]
    )


def test_calibrated_budget_scales_with_the_learning_rate():
    n, base = CALIBRATED[1]
    assert plan(n, lr=DEFAULT_LR["full"]).max_epochs == base
    slow = plan(n, lr=DEFAULT_LR["full"] / 4)
    assert slow.max_epochs == round(base * 4**LR_EXPONENT)
    assert any("x2.00" in line for line in slow.rationale) or LR_EXPONENT != 0.5
    assert plan(n, lr=10.0).max_epochs == max(1, round(base * 0.25))  # clipped at 1/4
    assert plan(n, lr=1e-9).max_epochs == round(base * 4)  # clipped at 4
    assert plan(n, lr=1e-5, table="seeds").max_epochs == plan(n, table="seeds").max_epochs


def test_duplicates_shrink_the_budget_through_effective_samples():
    distinct = plan(100)
    repeated = plan(DataProfile(n_samples=1_000, n_effective=100))
    assert repeated.n_effective == 100
    assert repeated.max_epochs == math.ceil(distinct.max_epochs / 10)
    assert "repeated 10x" in repeated.rationale[0]
    # the same budget in passes over distinct samples
    assert repeated.max_epochs * 10 >= distinct.max_epochs


def test_plan_from_an_audit_report_uses_effective_samples():
    X = np.repeat(np.random.default_rng(0).normal(size=(300, 3)), 4, axis=0)
    y = np.repeat(np.arange(300) % 2, 4)
    report = audit((X, y))
    p = plan(report)
    assert (p.n_samples, p.n_effective) == (1_200, 300)
    assert p.max_epochs == math.ceil(calibrated_epochs(300) / 4)


def test_steps_and_schedule_match_budget_arithmetic():
    p = plan(5_000, batch_size=100, accumulation=3, world_size=2, lr=0.01)
    per = budget.steps_per_epoch(5_000, 100, accumulation=3, world_size=2)
    assert p.steps_per_epoch == per and p.total_steps == per * p.max_epochs
    assert p.schedule == Warmup(
        Cosine(0.01, p.total_steps - p.warmup_steps, min_lr=1e-4), p.warmup_steps
    )
    lrs = simulate(p.schedule, p.total_steps + 1)
    assert max(lrs) == pytest.approx(0.01)
    assert lrs[-1] == pytest.approx(1e-4)
    assert lrs[0] < lrs[p.warmup_steps]


def test_warmup_is_five_percent_doubled_for_large_batches_and_high_lr():
    base = plan(20_000, batch_size=64, lr=1e-3)
    assert base.warmup_steps == round(0.05 * base.total_steps)
    big = plan(20_000, batch_size=512, lr=1e-3)
    assert big.warmup_steps == round(0.10 * big.total_steps)
    hot = plan(20_000, batch_size=512, lr=1e-2)
    assert hot.warmup_steps == min(hot.total_steps // 4, round(0.20 * hot.total_steps))


def test_lr_from_an_lr_find_result_is_used():
    class Found:
        suggestion = 3e-3

    p = plan(1_000, lr=Found())
    assert p.lr == 3e-3 and p.lr_source == "lr_find suggestion"
    assert plan(1_000).lr_source.startswith("default")


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 2_000_000),
    repeats=st.integers(1, 20),
    batch=st.one_of(st.none(), st.integers(1, 1024)),
    accumulation=st.integers(1, 8),
    world=st.integers(1, 8),
    mode=st.sampled_from(["full", "lora", "mixed"]),
)
def test_plan_invariants(n, repeats, batch, accumulation, world, mode):
    total = n * repeats
    p = plan(
        DataProfile(total, n_effective=n),
        mode=mode,
        batch_size=batch,
        accumulation=accumulation,
        world_size=world,
    )
    assert p.max_epochs >= 1 and 1 <= p.patience <= max(1, p.max_epochs - 1) or p.max_epochs == 1
    assert 0 <= p.warmup_steps <= max(0, p.total_steps // 4)
    assert p.total_steps == p.steps_per_epoch * p.max_epochs
    assert 1 <= p.batch_size <= max(1, n // 4) or batch is not None
    assert all(isinstance(s, str) and s for s in p.rationale)
    json.dumps(p.to_dict())


def test_default_batch_sizes():
    assert [default_batch_size(n) for n in (8, 100, 5_000, 50_000, 500_000)] == [
        2,
        25,
        64,
        128,
        256,
    ]
    assert default_batch_size(10_000, "lora") == 16


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: plan(0), DataError, "empty"),
        (lambda: plan(DataProfile(100, n_classes=1)), DataError, "1 class"),
        (lambda: plan(100, mode="qlora"), ValueError, "mode"),
        (lambda: plan(100, lr=-1.0), ValueError, "lr"),
        (lambda: plan("many"), TypeError, "sample count"),
        (lambda: plan(DataProfile(100, n_effective=200)), ValueError, "n_effective"),
        (lambda: plan(100, batch_size=0), ValueError, "batch_size"),
    ],
)
def test_bad_input_raises_named_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_str_shows_numbers_and_rationale():
    text = str(plan(1_000))
    assert text.startswith("max_epochs=") and "Patience" in text and "updates" in text
    assert isinstance(plan(1_000), EpochPlan)


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cli_plan.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_plan_from_csv_count_and_builtin(tmp_path, capsys):
    X = np.repeat(np.arange(400.0).reshape(200, 2), 5, axis=0)
    path = tmp_path / "train.csv"
    import pandas as pd

    pd.DataFrame(X, columns=["a", "b"]).assign(y=np.arange(1_000) % 2).to_csv(path, index=False)
    assert _cli(["plan", str(path), "--target", "y", "--json", "-"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["n_effective"] == 200 and data["n_samples"] == 1_000
    assert _cli(["plan", "5000", "--mode", "lora", "--batch-size", "8"]) == 0
    assert "batch_size=8" in capsys.readouterr().out
    assert _cli(["plan", "wine"]) == 0
    assert "178" in capsys.readouterr().out


def test_cli_plan_errors_exit_2(tmp_path, capsys):
    assert _cli(["plan", "nonsense"]) == 2
    assert capsys.readouterr().err.startswith("epochpilot plan: error: 'nonsense' is neither")
    one = tmp_path / "one.csv"
    one.write_text("a,y\n1,0\n2,0\n3,0\n")
    assert _cli(["plan", str(one), "--target", "y"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"epochpilot plan: error: {one}: ") and "class" in err


@pytest.mark.parametrize(
    "content, args, message",
    [
        ("a,b,label\n", ["--target", "label"], "the data is empty (0 rows)"),
        ("a,b,label\n1,2,0\n3,4,1\n", ["--target", ""], "target column '' not found (--target)"),
    ],
)
def test_cli_plan_csv_errors_name_the_command_and_the_file(
    tmp_path, capsys, content, args, message
):
    """Every plan error is the CLI's one line: "epochpilot plan: error: FILE: ...", not a split name."""
    path = tmp_path / "data.csv"
    path.write_text(content)
    assert _cli(["plan", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"epochpilot plan: error: {path}: {message}"), err
    assert err.count("\n") == 1 and "train" not in err

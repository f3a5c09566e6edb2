"""k-fold epoch selection and refit: fold checks, curve alignment, the two rules, end to end on wine."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_wine

from epochpilot.select.kfold import (
    EpochSelection,
    _curves,
    _folds,
    choose_epoch,
    kfold_epochs,
    refit,
)

torch.set_num_threads(1)


def wine() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_wine(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    return X.astype(np.float32), y


def small_mlp() -> torch.nn.Module:
    """Top level, so spawned fold processes can unpickle it."""
    return torch.nn.Sequential(torch.nn.Linear(13, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


FAST = {"max_epochs": 4, "lr": 0.01, "checkpoint_every": None, "stopper": False}


# -- folds and bad input -----------------------------------------------------------------------------------


def test_folds_are_stratified_and_cover_every_row_once():
    y = np.array([0] * 9 + [1] * 6)
    folds = _folds(y, 3, True, seed=0)
    val = np.concatenate([va for _, va in folds])
    assert sorted(val) == list(range(15))
    for tr, va in folds:
        assert set(tr).isdisjoint(va)
        assert (y[va] == 1).sum() == 2 and (y[va] == 0).sum() == 3


@pytest.mark.parametrize("k", [1, 0, -3])
def test_k_below_two_is_refused(k):
    with pytest.raises(ValueError, match=rf"k={k}.*k >= 2"):
        _folds(np.arange(10) % 2, k, True, 0)


def test_k_larger_than_smallest_class_names_k_and_the_fix():
    y = np.array([0] * 20 + [1] * 3)
    with pytest.raises(
        ValueError,
        match=r"k=5 is larger than the smallest class \(3 rows of class 1\).*k <= 3.*stratify=False",
    ):
        _folds(y, 5, True, 0)
    assert len(_folds(y, 5, False, 0)) == 5  # unstratified folds are fine


def test_k_must_be_an_int_and_fit_the_rows():
    with pytest.raises(TypeError, match="k must be an int"):
        _folds(np.arange(10) % 2, 2.5, True, 0)
    with pytest.raises(ValueError, match="larger than the 4 rows"):
        _folds(np.arange(4), 5, False, 0)


def test_stratify_refuses_continuous_targets():
    with pytest.raises(ValueError, match="stratify=False"):
        _folds(np.linspace(0, 1, 20), 2, True, 0)


def test_bad_rule_workers_and_data():
    X, y = wine()
    with pytest.raises(ValueError, match="rule="):
        kfold_epochs(small_mlp, (X, y), rule="median")
    with pytest.raises(ValueError, match="workers"):
        kfold_epochs(small_mlp, (X, y), workers=0)
    with pytest.raises(ValueError, match="X has 178 rows but y has 10"):
        kfold_epochs(small_mlp, (X, y[:10]))
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        kfold_epochs(small_mlp, (X, y), config={"epochs": 3})


# -- curves and rules (pure) -------------------------------------------------------------------------------


def test_curves_of_different_lengths_average_the_folds_that_reached_each_epoch():
    h1 = [{"epoch": e, "val_loss": v} for e, v in enumerate([1.0, 0.8, 0.7, 0.75], 1)]
    h2 = [{"epoch": e, "val_loss": v} for e, v in enumerate([1.2, 0.6], 1)]
    h3 = [
        {"epoch": 1, "val_loss": 0.8},
        {"epoch": 2, "val_loss": float("nan")},
        {"epoch": 3, "val_loss": 0.5},
    ]
    mean, std, counts = _curves([h1, h2, h3], "val_loss")
    assert counts.tolist() == [3, 2, 2, 1]
    assert mean[:4].tolist() == pytest.approx([1.0, 0.7, 0.6, 0.75])
    assert std[0] == pytest.approx(0.2)  # sample std of 1.0, 1.2, 0.8
    assert std[3] == 0.0


def test_min_rule_and_one_se_rule_by_hand():
    mean = [1.0, 0.6, 0.52, 0.5, 0.55]
    std = [0.1, 0.1, 0.1, 0.1, 0.1]
    counts = [4, 4, 4, 4, 4]
    assert choose_epoch(mean, std, counts, mode="min", rule="min", k=4) == (4, 4)
    # se = 0.1 / 2 = 0.05: epochs within 0.55 of the best -> epoch 3 (0.52) is the smallest
    assert choose_epoch(mean, std, counts, mode="min", rule="one_se", k=4) == (3, 4)
    acc = [0.5, 0.8, 0.9, 0.92]
    assert choose_epoch(acc, [0.04] * 4, [4] * 4, mode="max", rule="one_se", k=4) == (3, 4)


def test_epochs_reached_by_fewer_than_half_the_folds_are_not_chosen():
    mean = [1.0, 0.8, 0.1]
    assert choose_epoch(mean, [0, 0, 0], [5, 5, 2], mode="min", rule="min", k=5) == (2, 2)
    with pytest.raises(ValueError, match="no epoch has a finite"):
        choose_epoch([math.nan], [0.0], [0], mode="min", rule="min", k=2)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.01, 10.0), min_size=1, max_size=30),
    st.floats(0.0, 2.0),
    st.sampled_from(["min", "max"]),
)
def test_one_se_never_later_than_min_and_within_one_se(mean, sd, mode):
    counts = [4] * len(mean)
    std = [sd] * len(mean)
    chosen, best = choose_epoch(mean, std, counts, mode=mode, rule="one_se", k=4)
    assert choose_epoch(mean, std, counts, mode=mode, rule="min", k=4) == (best, best)
    assert 1 <= chosen <= best
    sign = 1 if mode == "min" else -1
    assert sign * mean[chosen - 1] <= sign * mean[best - 1] + sd / 2 + 1e-12
    assert all(sign * m >= sign * mean[best - 1] for m in mean)


# -- end to end --------------------------------------------------------------------------------------------


def test_kfold_epochs_on_wine_writes_runs_and_aligns_curves(tmp_path):
    X, y = wine()
    sel = kfold_epochs(small_mlp, (X, y), k=3, config=FAST, run_dir=tmp_path, rule="one_se")
    assert isinstance(sel, EpochSelection) and sel.k == 3
    assert sel.monitor == "val_loss" and sel.mode == "min"
    assert len(sel.mean_curve) == 4 and sel.counts == [3, 3, 3, 3]
    assert 1 <= sel.epochs <= sel.best_epoch <= 4
    assert all(1 <= b <= 4 for b in sel.per_fold_best)
    by_hand = np.mean([[r["val_loss"] for r in h] for h in sel.fold_histories], axis=0)
    assert sel.mean_curve == pytest.approx(by_hand.tolist())
    assert sel.mean_curve[sel.best_epoch - 1] == min(sel.mean_curve)
    for i, path in enumerate(sel.run_dirs, 1):
        assert path == tmp_path / f"fold-{i}"
        assert len((path / "history.jsonl").read_text().splitlines()) == 4
    json.dumps(sel.to_dict())  # JSON-safe


def test_default_stopper_is_generous_and_schedule_follows_the_fold_length():
    X, y = wine()
    config = {k: v for k, v in FAST.items() if k != "stopper"}
    sel = kfold_epochs(small_mlp, (X, y), k=2, config=config, schedule="cosine")
    # patience max(10, 4 // 3) > 4 epochs: every fold runs its whole budget, cosine ends at ~0
    assert sel.counts == [2, 2, 2, 2]
    for hist in sel.fold_histories:
        assert hist[-1]["lr"] == pytest.approx(0.0, abs=1e-12)
        assert hist[0]["lr"] > 0.005


def test_refit_trains_all_rows_for_the_chosen_epochs_with_a_schedule_of_that_length():
    X, y = wine()
    sel = EpochSelection(
        3, "min", "val_loss", "min", 3, [3], [1.0, 0.9, 0.8], [0, 0, 0], [2, 2, 2], [[]], [None]
    )
    result = refit(small_mlp, (X, y), sel, config={"lr": 0.01, "batch_size": 32}, schedule="cosine")
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert "val_loss" not in result.history[-1]
    assert result.history[-1]["step"] == 3 * math.ceil(178 / 32)  # all rows each epoch
    assert result.history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine sized for 3 epochs
    with pytest.raises(ValueError, match="epochs must be an int >= 1"):
        refit(small_mlp, (X, y), 0)


@pytest.mark.slow
def test_parallel_folds_match_sequential_folds():
    X, y = wine()
    seq = kfold_epochs(small_mlp, (X, y), k=2, config=FAST, seed=3)
    par = kfold_epochs(small_mlp, (X, y), k=2, config=FAST, seed=3, workers=2)
    assert par.mean_curve == pytest.approx(seq.mean_curve, rel=1e-5)
    assert par.per_fold_best == seq.per_fold_best


def test_an_auto_batch_schedule_follows_the_effective_batch():
    """batch_size="auto": the schedule counts the updates of the effective batch (it ends at ~0 exactly)."""
    X, y = wine()
    config = {k: v for k, v in FAST.items() if k not in ("stopper", "batch_size")}
    config.update(batch_size="auto", effective_batch=16)
    sel = kfold_epochs(small_mlp, (X, y), k=2, config=config, schedule="cosine")
    for hist in sel.fold_histories:
        assert hist[-1]["lr"] == pytest.approx(0.0, abs=1e-12)

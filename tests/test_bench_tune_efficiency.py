"""bench/tune_efficiency.py on a tiny budget: the replayed studies equal real ones, the table pairs seeds, the
top-k baseline prunes what it says."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import optuna
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bench(monkeypatch):
    spec = importlib.util.spec_from_file_location(
        "tune_efficiency", ROOT / "bench" / "tune_efficiency.py"
    )
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "tune_efficiency", module)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "EPOCHS", 6)
    monkeypatch.setattr(module, "TRIALS", 5)
    monkeypatch.setattr(module, "REFIT_SEEDS", 1)
    return module


@pytest.mark.parametrize("problem", ["digits", "breast_cancer-cv"])
def test_a_replayed_study_is_the_real_study(bench, tmp_path, problem):
    for sub in ("data", "cache"):
        (tmp_path / sub).mkdir()
    text = bench.verify(problem, tmp_path, {"min_epochs": 2})
    assert text.startswith("replay check ok")


def test_units_pair_each_pruned_study_with_the_unpruned_one_of_its_seed(bench, tmp_path):
    for sub in ("data", "cache"):
        (tmp_path / sub).mkdir()
    rows = ["none", "top5_epoch1", "epochpilot"]
    units = [bench.run_unit("digits", s, tmp_path, rows, ["random"], {}) for s in (0, 1)]
    for u in units:
        none = u["result"]["random"]["none"]
        assert none["pruned"] == [] and len(none["params"]) == 5
        for row in rows:  # the random sampler draws the same configurations whatever prunes them
            assert u["result"]["random"][row]["params"] == none["params"]
            assert u["result"]["random"][row]["epochs"] <= none["epochs"]
            assert 0.0 <= u["result"]["random"][row]["refit_accuracy"] <= 1.0
    again = bench.run_unit("digits", 0, tmp_path, rows, ["random"], {})
    assert again["trained"] == 0  # every curve and refit came from the cache
    assert again["result"] == units[0]["result"]
    table = bench.table(units, rows, ["random"])
    assert "| digits (chosen) | none | 1.00 | 0/2 | +0.00 ± 0.00 |" in table
    assert table.count("\n") == 1 + len(rows) and "random: winner cut" in table


def test_top_k_after_the_first_epoch(bench):
    study = optuna.create_study(pruner=bench.TopKAfterFirstEpoch(2))
    kept = []
    for value in (0.5, 0.4, 0.6, 0.3, 0.45, math.nan):
        trial = study.ask()
        trial.report(value, 1)
        kept.append(not trial.should_prune())
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    # 0.6 has two better (0.5, 0.4); 0.45 has two better (0.4, 0.3); NaN is always cut
    assert kept == [True, True, False, True, False, False]

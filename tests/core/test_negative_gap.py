"""A negative generalization gap (validation better than training) is explained in the curve advice."""

from __future__ import annotations

import math

import pytest

from epochpilot.core.curves.analysis import analyze


def _history(n: int = 20, gap: float = -0.2) -> list[dict]:
    """val_loss = train_loss + gap, both falling and levelling off."""
    return [
        {"epoch": e, "train_loss": 1 / e + 0.3, "val_loss": 1 / e + 0.3 + gap}
        for e in range(1, n + 1)
    ]


def _gap_sentences(report) -> list[str]:
    return [a for a in report.advice if "is better than" in a]


def test_named_regulariser_explains_val_below_train():
    r = analyze(
        _history(), "val_loss", "min", regularisers=["dropout 0.1 (job.toml [model] dropout)"]
    )
    [sentence] = _gap_sentences(r)
    assert sentence.startswith(
        "val_loss is better than train_loss (generalization gap -0.2 at epoch"
    )
    assert (
        "this run's dropout 0.1 (job.toml [model] dropout), which acts in training only" in sentence
    )
    assert "averaged over each epoch" in sentence and "no sign of leakage" in sentence
    # the old sentence, "how much worse val is than train ... was -0.2", is not said any more
    assert not any("how much worse val is" in a for a in r.advice)


def test_without_a_named_regulariser_the_causes_and_the_leak_check_are_listed():
    [sentence] = _gap_sentences(analyze(_history(), "val_loss", "min"))
    assert "dropout, augmentation or label smoothing/noise act in training only" in sentence
    assert "epochpilot audit TRAIN.csv --val VAL.csv" in sentence


@pytest.mark.parametrize("n", [3, 12], ids=["too few epochs", "converged"])
def test_short_and_long_runs_both_explain_it(n):
    r = analyze(_history(n), "val_loss", "min", regularisers=("dropout 0.3",))
    assert len(_gap_sentences(r)) == 1, r.advice


def test_underfitting_run_explains_it_too():
    rows = [
        {"epoch": e, "train_loss": 3.0 - 0.1 * e, "val_loss": 2.8 - 0.1 * e} for e in range(1, 16)
    ]
    r = analyze(rows, "val_loss", "min", regularisers="dropout 0.1")
    assert r.diagnosis == "underfitting" and "dropout 0.1, which acts" in _gap_sentences(r)[0]


def test_accuracy_monitor_mode_max():
    rows = [
        {"epoch": e, "train_accuracy": 0.8 - 0.5 / e, "val_accuracy": 0.85 - 0.5 / e}
        for e in range(1, 16)
    ]
    r = analyze(rows, "val_accuracy", "max", regularisers=["augment on"])
    assert _gap_sentences(r)[0].startswith("val_accuracy is better than train_accuracy")


def test_positive_gap_and_diverged_runs_say_nothing_of_it():
    assert (
        _gap_sentences(analyze(_history(gap=0.1), "val_loss", "min", regularisers=["dropout 0.1"]))
        == []
    )
    rows = _history()
    rows[-1]["train_loss"] = math.nan
    r = analyze(rows, "val_loss", "min", regularisers=["dropout 0.1"])
    assert r.diagnosis == "diverged" and _gap_sentences(r) == []
    # no train series: no gap to explain
    assert (
        _gap_sentences(analyze([{"val_loss": 1 / e} for e in range(1, 10)], "val_loss", "min"))
        == []
    )


def test_a_gap_within_the_noise_is_not_explained():
    """val a hair below train at the kept epoch, against an epoch-to-epoch noise 20x larger: nothing said."""
    import numpy as np

    rng = np.random.default_rng(0)
    rows = []
    for e in range(1, 25):
        train = 1 / e + 0.3
        rows.append(
            {"epoch": e, "train_loss": train, "val_loss": train - 0.001 + rng.normal(0, 0.02)}
        )
    r = analyze(rows, "val_loss", "min", regularisers=["dropout 0.1"])
    assert r.noise > 0.01 and _gap_sentences(r) == [], r.advice

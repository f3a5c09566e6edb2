"""Tests for epochpilot.curves: synthetic curves per diagnosis, properties, bad input, and a real torch run."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from epochpilot.core.curves.analysis import DIAGNOSES, PHASES, CurveReport, analyze

E = np.arange(1, 41)


def _hist(train, val, key="loss"):
    return [
        {"epoch": int(e), f"train_{key}": float(t), f"val_{key}": None if v is None else float(v)}
        for e, t, v in zip(E[: len(val)], train, val, strict=True)
    ]


def _noise(seed, scale, n=40):
    return np.random.default_rng(seed).normal(0.0, scale, n)


def overfitting(seed=0):
    """val bottoms near epoch 20 then rises steadily while train keeps falling."""
    train = 2.0 * np.exp(-E / 5) + 0.1 + _noise(seed, 0.005)
    val = 2.0 * np.exp(-E / 5) + 0.3 + 0.02 * np.maximum(0, E - 20) ** 1.3 + _noise(seed + 1, 0.01)
    return _hist(train, val)


def good_fit(seed=0):
    train = 2.0 * np.exp(-E / 5) + 0.1 + _noise(seed, 0.005)
    val = 2.0 * np.exp(-E / 5) + 0.3 + _noise(seed + 1, 0.01)
    return _hist(train, val)


def underfitting(seed=0):
    return _hist(2 - 0.03 * E + _noise(seed, 0.005), 2.1 - 0.028 * E + _noise(seed + 1, 0.01))


def diverged_nan(seed=0):
    val = list(2.0 * np.exp(-E / 5) + 0.3 + _noise(seed, 0.005))
    val[30:] = [None] * 10
    return _hist(2.0 * np.exp(-E / 5) + 0.1, val)


def diverged_explode(seed=0):
    train = 2.0 * np.exp(-E / 5) + 0.1 + _noise(seed, 0.005)
    train[25:] += np.exp((E[25:] - 25) / 2.0)
    return _hist(train, train + 0.2)


def noise_only(seed=0):
    return _hist(1 + _noise(seed, 0.05), 1 + _noise(seed + 1, 0.05))


CASES = {
    # name: (factory, diagnosis, sweet-spot range, onset range or None)
    "overfitting": (overfitting, "overfitting", (18, 23), (19, 26)),
    "good_fit": (good_fit, "good_fit", (20, 40), None),
    "underfitting": (underfitting, "underfitting", (37, 40), None),
    "diverged_nan": (diverged_nan, "diverged", (25, 30), None),
    "diverged_explode": (diverged_explode, "diverged", (20, 26), None),
    "too_noisy": (noise_only, "too_noisy_to_tell", (1, 40), None),
}


def _check_phases(r: CurveReport) -> None:
    names = [p.name for p in r.phases]
    assert names == [n for n in PHASES if n in names], names  # canonical order, no repeats
    if r.phases:
        assert r.phases[0].start == r.epochs[0]
        assert r.phases[-1].end == r.epochs[-1]
    for a, b in zip(r.phases, r.phases[1:], strict=False):
        assert b.start == a.end + 1
    assert all(p.length >= 1 for p in r.phases)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synthetic_diagnosis(name, seed):
    factory, diagnosis, (lo, hi), onset = CASES[name]
    r = analyze(factory(seed), "val_loss", "min")
    assert r.diagnosis == diagnosis, r.advice
    assert lo <= r.sweet_spot <= hi
    if onset is None:
        assert r.overfit_onset is None
    else:
        assert onset[0] <= r.overfit_onset <= onset[1]
        assert r.overfit_onset > r.sweet_spot
        assert r.phases[-1].name == "overfitting_risk" and r.phases[-1].start == r.overfit_onset
    _check_phases(r)
    assert r.advice and all(
        any(ch.isdigit() for ch in a) for a in r.advice
    )  # advice carries numbers
    json.dumps(r.to_dict(), allow_nan=False)


def test_overfitting_advice_names_epochs_budget_and_patience():
    r = analyze(overfitting(), "val_loss", "min")
    first = r.advice[0]
    assert f"epoch {r.sweet_spot}" in first and "by epoch 40" in first
    assert r.suggested_epochs == r.sweet_spot + r.suggested_patience
    assert f"budget of {r.suggested_epochs} epochs with patience {r.suggested_patience}" in first
    assert any("train_loss kept improving" in a for a in r.advice)
    assert r.phases[0].name == "fast_descent" and r.phases[1].name == "slow_optimization"


def test_underfitting_advice_has_slope_and_budget():
    r = analyze(underfitting(), "val_loss", "min")
    assert "still falling" in r.advice[0] and "last 5 epochs" in r.advice[0]
    assert "0.028" in r.advice[0] or "0.027" in r.advice[0] or "0.029" in r.advice[0]
    assert r.suggested_epochs == 80
    assert [p.name for p in r.phases] == ["fast_descent"]


def test_diverged_reports_first_nonfinite_epoch():
    r = analyze(diverged_nan(), "val_loss", "min")
    assert "epoch 31" in r.advice[0] and "learning rate" in r.advice[0]
    assert r.to_dict()["generalization_gap"][35] is None
    assert math.isfinite(r.best_value)


def test_float_nan_and_inf_count_as_nonfinite():
    h = good_fit()
    h[-1]["train_loss"] = float("inf")
    assert analyze(h, "val_loss", "min").diagnosis == "diverged"
    h = good_fit()
    h[-1]["val_loss"] = float("nan")
    assert analyze(h, "val_loss", "min").diagnosis == "diverged"


def test_missing_keys_are_gaps_not_divergence():
    h = good_fit()
    for row in h[1::2]:
        del row["val_loss"]  # validation every other epoch
    r = analyze(h, "val_loss", "min")
    assert r.diagnosis == "good_fit"
    assert r.sweet_spot % 2 == 1  # only odd epochs have val values


def test_max_mode_mirror_of_min_mode():
    h = overfitting()
    neg = [{k: (v if k == "epoch" else -v) for k, v in row.items()} for row in h]
    a, b = analyze(h, "val_loss", "min"), analyze(neg, "val_loss", "max")
    assert (a.sweet_spot, a.overfit_onset, a.phases, a.diagnosis) == (
        b.sweet_spot,
        b.overfit_onset,
        b.phases,
        b.diagnosis,
    )
    assert (
        a.generalization_gap == b.generalization_gap
    )  # gap is "how much worse val is" in both modes
    assert "peaked" in b.advice[0] and "fell" in b.advice[0]


def test_accuracy_curve_max_mode():
    acc = 0.95 - 0.85 * np.exp(-E / 4)
    h = [
        {"epoch": int(e), "train_accuracy": a + 0.03, "val_accuracy": a}
        for e, a in zip(E, acc, strict=True)
    ]
    r = analyze(h, "val_accuracy", "max")
    assert r.train_monitor == "train_accuracy"
    assert r.diagnosis == "good_fit"
    assert r.generalization_gap[0] == pytest.approx(0.03)


def test_dict_of_lists_equals_list_of_rows_and_keras_names():
    h = overfitting()
    cols = {k: [row[k] for row in h] for k in h[0]}
    assert analyze(cols, "val_loss", "min") == analyze(h, "val_loss", "min")
    keras = {"loss": cols["train_loss"], "val_loss": cols["val_loss"]}  # Keras History.history
    r = analyze(keras, "val_loss", "min")
    assert r.train_monitor == "loss" and r.epochs == tuple(range(1, 41))
    assert r.diagnosis == "overfitting"


def test_short_history_is_too_noisy_not_an_error():
    r = analyze([{"val_loss": 1.0}, {"val_loss": 0.5}], "val_loss", "min")
    assert r.diagnosis == "too_noisy_to_tell" and r.sweet_spot == 2
    assert "only 2 epochs" in r.advice[0]
    one = analyze([{"epoch": 1, "val_loss": 1.0}], "val_loss", "min")
    assert one.sweet_spot == 1
    _check_phases(one)


def test_all_nonfinite_is_diverged_without_sweet_spot():
    r = analyze([{"val_loss": None}] * 5, "val_loss", "min")
    assert r.diagnosis == "diverged" and r.sweet_spot is None and r.best_value is None
    json.dumps(r.to_dict(), allow_nan=False)


@pytest.mark.parametrize(
    "history, kwargs, match",
    [
        ([], {}, "history is empty"),
        ({"val_loss": []}, {}, "history is empty"),
        (
            [{"train_loss": 1.0, "epoch": 1}],
            {},
            r"monitor 'val_loss' is not in the history \(keys: train_loss\)",
        ),
        ([{"val_loss": 1.0}], {"mode": "down"}, "mode must be 'min' or 'max'"),
        ([{"val_loss": 1.0}], {"train_monitor": "trn"}, "train_monitor 'trn'"),
        (
            {"val_loss": [1.0, 2.0], "train_loss": [1.0]},
            {},
            r"history\['train_loss'\] has 1 values",
        ),
        ([{"val_loss": "abc"}], {}, r"history\['val_loss'\] at epoch row 1"),
        ([{"val_loss": 1.0, "epoch": 2}, {"val_loss": 1.0, "epoch": 1}], {}, "'epoch' values"),
        ("val_loss", {}, "history must be a list"),
        ([1.0, 2.0], {}, r"history\[0\] must be a dict"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(history, kwargs, match):
    args = {"monitor": "val_loss", "mode": "min", **kwargs}
    with pytest.raises(ValueError, match=match):
        analyze(history, **args)


# ---------------------------------------------------------------------------------------- properties

values = st.lists(st.integers(0, 1000), min_size=1, max_size=60)


@settings(max_examples=150, deadline=None)
@given(values, st.sampled_from(["min", "max"]))
def test_property_sweet_spot_in_range_and_phases_contiguous(vals, mode):
    r = analyze({"val_loss": [float(v) for v in vals]}, "val_loss", mode)
    assert 1 <= r.sweet_spot <= len(vals)
    assert 1 <= r.best_epoch <= len(vals)
    assert r.diagnosis in DIAGNOSES
    _check_phases(r)
    if r.overfit_onset is not None:
        assert r.sweet_spot < r.overfit_onset <= len(vals)


@settings(max_examples=150, deadline=None)
@given(
    values,
    st.lists(st.integers(0, 1000), min_size=60, max_size=60),
    st.floats(0.01, 100.0),
    st.floats(-1000.0, 1000.0),
    st.sampled_from(["min", "max"]),
)
def test_property_affine_rescaling_keeps_the_sweet_spot(vals, train, a, b, mode):
    n = len(vals)
    h = {"val_loss": [float(v) for v in vals], "train_loss": [float(t) for t in train[:n]]}
    scaled = {k: [a * v + b for v in vs] for k, vs in h.items()}
    r, s = analyze(h, "val_loss", mode), analyze(scaled, "val_loss", mode)
    assert s.sweet_spot == r.sweet_spot
    assert s.best_epoch == r.best_epoch


# ---------------------------------------------------------------------------------------- real run


def _train_digits_mlp(epochs: int = 40) -> list[dict]:
    """A tiny MLP on 60 digits images with a high learning rate: it memorises them and overfits."""
    torch = pytest.importorskip("torch")
    datasets = pytest.importorskip("sklearn.datasets")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    X, y = datasets.load_digits(return_X_y=True)
    idx = np.random.default_rng(0).permutation(len(X))
    tr, va = idx[:60], idx[60:460]
    Xt, yt = torch.tensor(X[tr] / 16.0, dtype=torch.float32), torch.tensor(y[tr])
    Xv, yv = torch.tensor(X[va] / 16.0, dtype=torch.float32), torch.tensor(y[va])
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        for batch in torch.randperm(len(tr)).split(10):
            opt.zero_grad()
            loss_fn(model(Xt[batch]), yt[batch]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            out_t, out_v = model(Xt), model(Xv)
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": loss_fn(out_t, yt).item(),
                    "val_loss": loss_fn(out_v, yv).item(),
                    "train_accuracy": (out_t.argmax(1) == yt).float().mean().item(),
                    "val_accuracy": (out_v.argmax(1) == yv).float().mean().item(),
                }
            )
    return history


def test_real_torch_run_on_digits_overfits_and_is_diagnosed():
    h = _train_digits_mlp()
    val = np.array([row["val_loss"] for row in h])
    train = np.array([row["train_loss"] for row in h])
    r = analyze(h, "val_loss", "min")
    assert r.train_monitor == "train_loss"
    assert r.diagnosis == "overfitting", r.advice
    assert 3 <= r.sweet_spot <= 30
    assert val[r.sweet_spot - 1] <= val.min() * 1.05  # the sweet spot is (near) the real best epoch
    assert r.overfit_onset is not None and r.overfit_onset > r.sweet_spot
    assert val[-1] > val[r.sweet_spot - 1] and train[-1] < train[r.sweet_spot - 1]
    assert r.phases[-1].name == "overfitting_risk" and r.phases[-1].end == 40
    assert r.suggested_epochs < 40  # the run was longer than it needed to be
    assert all(g is not None and g > 0 for g in r.generalization_gap[r.sweet_spot :])
    acc = analyze(h, "val_accuracy", "max")
    val_acc = np.array([row["val_accuracy"] for row in h])
    assert val_acc[acc.sweet_spot - 1] >= val_acc.max() - 0.03
    _check_phases(acc)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(st.none(), st.floats(-1e6, 1e6), st.just(float("nan"))), min_size=1, max_size=40
    ),
    st.sampled_from(["min", "max"]),
)
def test_property_any_curve_with_gaps_and_nans_gets_a_consistent_report(vals, mode):
    train = [None if v is None else v * 0.5 for v in vals]
    r = analyze({"val_loss": vals, "train_loss": train}, "val_loss", mode)
    assert r.diagnosis in DIAGNOSES
    if any(v is None or not math.isfinite(v) for v in vals):
        assert r.diagnosis == "diverged"
    if r.sweet_spot is not None:
        assert math.isfinite(vals[r.sweet_spot - 1])
    _check_phases(r)
    json.dumps(r.to_dict(), allow_nan=False)


def _short_converged(n: int, seed: int):
    rng = np.random.default_rng(seed)
    e = np.arange(1, n + 1)
    val = 2 * np.exp(-e / 2.5) + 0.3 + rng.normal(0, 0.004, n)
    train = 2 * np.exp(-e / 2.5) + 0.1 + rng.normal(0, 0.002, n)
    return [
        {"epoch": int(i), "train_loss": float(t), "val_loss": float(v)}
        for i, t, v in zip(e, train, val, strict=True)
    ]


def test_advice_never_names_a_budget_the_run_did_not_reach():
    # a 17-epoch run that converged around epoch 15: patience 3 would stop at 18, after the run ended, so
    # "a budget of 18 epochs would have been enough" contradicted the run it was about
    r = analyze(_short_converged(17, seed=0), "val_loss", "min")
    assert (r.diagnosis, r.sweet_spot, r.suggested_patience) == ("good_fit", 15, 3)
    assert r.suggested_epochs == 17
    assert "budget of 18" not in r.advice[0]
    assert r.advice[0].endswith(
        "it has converged; the 17 epochs run here were enough (a stopper with patience 3 would not "
        "have stopped before epoch 18)."
    )


def test_a_shorter_budget_is_advised_only_when_it_is_shorter():
    r = analyze(overfitting(), "val_loss", "min")
    last = r.epochs[-1]
    assert r.suggested_epochs == r.sweet_spot + r.suggested_patience < last
    assert (
        f"next time a budget of {r.suggested_epochs} epochs with patience {r.suggested_patience} is "
        f"enough ({last - r.suggested_epochs} fewer than the {last} run here)"
    ) in r.advice[0]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(8, 40), seed=st.integers(0, 10_000), overfit=st.booleans())
def test_converged_or_overfit_advice_stays_within_the_run(n, seed, overfit):
    rows = _short_converged(n, seed)
    if overfit:
        for row in rows:
            row["val_loss"] += 0.03 * max(0, row["epoch"] - n + 4)
    r = analyze(rows, "val_loss", "min")
    if r.diagnosis not in ("good_fit", "overfitting") or r.suggested_epochs is None:
        return
    last = r.epochs[-1]
    named = [int(b) for b in re.findall(r"budget of (\d+) epochs", " ".join(r.advice))]
    if r.diagnosis == "good_fit" and r.sweet_spot == last:  # best at the last epoch: more may help
        return
    assert r.suggested_epochs <= last and all(b < last for b in named), r.advice

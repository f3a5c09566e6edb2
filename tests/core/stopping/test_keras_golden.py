"""Golden test: our EarlyStopping against the real Keras 3 callback on the same random curves.

The Keras callback is driven directly (set_model + on_train_begin + on_epoch_end) with no training. Values
are multiples of 1/64 so that Keras' float32 comparisons and our float64 ones are exact, ties included.
Keras numbers epochs from 0, we from 1.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

from epochpilot.core.stopping import EarlyStopping, Reason  # noqa: E402

GRID = 64.0

# keras' get_weights() trips a numpy 2 copy-keyword DeprecationWarning inside keras; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def model():
    return keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])


def keras_run(model, values, *, mode, patience, min_delta, baseline, start):
    """(stop epoch or None, best epoch or None, best value) from Keras, epochs 1-based."""
    callback = keras.callbacks.EarlyStopping(
        monitor="val_loss",
        mode=mode,
        patience=patience,
        min_delta=min_delta,
        baseline=baseline,
        start_from_epoch=start,
        restore_best_weights=True,
    )
    callback.set_model(model)
    model.stop_training = False
    callback.on_train_begin()
    stop = None
    for epoch0, value in enumerate(values):
        callback.on_epoch_end(epoch0, {"val_loss": value})
        if model.stop_training:
            stop = epoch0 + 1
            break
    model.stop_training = False
    if callback.best is None:
        return stop, None, None
    return stop, callback.best_epoch + 1, float(callback.best)


def ours_run(values, **kwargs):
    """(stop epoch or None, best epoch, best value, last decision) from a streamed EarlyStopping."""
    policy = EarlyStopping("val_loss", **kwargs)
    decision = None
    for epoch, value in enumerate(values, start=1):
        decision = policy.update(epoch, {"val_loss": value})
        if decision.stop:
            return epoch, decision.best_epoch, decision.best_value, decision
    return None, decision.best_epoch, decision.best_value, decision


def random_case(rng: np.random.Generator, *, nans: bool = False):
    n = int(rng.integers(1, 41))
    mode = str(rng.choice(["min", "max"]))
    trend = rng.choice([-1, 0, 1]) * rng.uniform(0, 1.5)
    steps = np.round(rng.normal(trend, 2.0, size=n)).astype(int)
    ints = 200 + np.cumsum(steps)
    values = [float(v) / GRID for v in ints]
    start = int(rng.choice([0, 0, 0, 1, 2, 3, 5, 8]))
    if nans and n > start + 1:
        for index in rng.choice(np.arange(start + 1, n), size=min(3, n - start - 1), replace=False):
            values[int(index)] = (
                math.nan
            )  # never at the first monitored epoch (see the module docs)
    baseline = None
    if rng.random() < 0.35:
        baseline = (int(ints[0]) + int(rng.integers(-8, 9))) / GRID
    params = {
        "mode": mode,
        "patience": int(rng.integers(0, 7)),
        "min_delta": float(rng.choice([0, 0, 1, 2, 4])) / GRID,
        "baseline": baseline,
        "start": start,
    }
    return values, params


def compare(model, values, params, *, check_finite=True):
    expected = keras_run(model, values, **params)
    got = ours_run(
        values,
        mode=params["mode"],
        patience=params["patience"],
        min_delta=params["min_delta"],
        baseline=params["baseline"],
        start_from_epoch=params["start"],
        check_finite=check_finite,
    )
    assert got[:3] == expected, f"values={values} params={params}: ours {got[:3]} keras {expected}"
    return got


@pytest.mark.parametrize("seed", range(4))
def test_same_stop_and_best_epoch_as_keras(model, seed):
    rng = np.random.default_rng(1000 + seed)
    reasons = {}
    stops = 0
    for _ in range(150):
        values, params = random_case(rng)
        stop, _, _, decision = compare(model, values, params)
        stops += stop is not None
        reasons[decision.reason] = reasons.get(decision.reason, 0) + 1
    # the random cases must exercise both outcomes and the baseline rule, or the test proves little
    assert 30 < stops < 140
    assert reasons.get(Reason.BASELINE, 0) > 0 and reasons.get(Reason.PATIENCE, 0) > 0


def test_nan_counts_as_no_improvement_like_keras_when_check_finite_is_off(model):
    rng = np.random.default_rng(7)
    for _ in range(200):
        values, params = random_case(rng, nans=True)
        compare(model, values, params, check_finite=False)


@pytest.mark.parametrize(
    ("values", "params", "stop", "best"),
    [
        # patience=0 stops at the first epoch that does not improve
        ([3.0, 2.0, 2.0], dict(mode="min", patience=0), 3, 2),
        # ties are not improvements
        ([1.0, 1.0, 1.0, 1.0], dict(mode="max", patience=2), 3, 1),
        # an epoch that improves never stops, even past patience when the baseline is not beaten
        ([5.0, 4.0, 3.0, 2.5, 2.6], dict(mode="min", patience=1, baseline=1.0), 5, 4),
        # warm-up epochs are ignored entirely: the best can be worse than a warm-up value
        ([0.1, 0.2, 0.9, 0.8, 0.85, 0.86], dict(mode="min", patience=2, start=2), 6, 4),
        # min_delta: 0.75 -> 0.703125 is not an improvement by more than 0.0625
        ([1.0, 0.75, 0.703125, 0.7], dict(mode="min", patience=1, min_delta=0.0625), 3, 2),
    ],
)
def test_hand_picked_cases_match_keras(model, values, params, stop, best):
    full = {"mode": "min", "patience": 0, "min_delta": 0.0, "baseline": None, "start": 0, **params}
    got = compare(model, values, full)
    assert got[0] == stop and got[1] == best

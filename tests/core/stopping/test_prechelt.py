"""Prechelt's GL, PQ and UP criteria on hand-computed curves, plus their bad inputs."""

from __future__ import annotations

import math

import pytest

from epochpilot.core.stopping import GeneralizationLoss, ProgressQuotient, Reason, UpStrips
from epochpilot.core.stopping.prechelt import generalization_loss, training_progress


def run(policy, rows):
    """Feed rows (dicts) until a stop; return the decisions."""
    decisions = []
    for epoch, metrics in enumerate(rows, start=1):
        decisions.append(policy.update(epoch, metrics))
        if decisions[-1].stop:
            break
    return decisions


def val(values):
    return [{"val_loss": v} for v in values]


def test_formulas():
    assert generalization_loss(1.5, 1.2) == pytest.approx(25.0)
    assert generalization_loss(0.0, 0.0) == 0.0 and generalization_loss(0.1, 0.0) == math.inf
    # 1000 * (sum / (k * min) - 1)
    assert training_progress([1.0, 0.8, 0.6]) == pytest.approx(1000 * (2.4 / 1.8 - 1))
    assert training_progress([0.44, 0.44]) == 0.0
    assert training_progress([0.0, 0.0]) == 0.0 and training_progress([0.0, 0.1]) == math.inf


def test_generalization_loss_stops_at_the_first_epoch_above_alpha():
    # E_opt: 2, 1.6, 1.5, 1.5, 1.5 -> GL: 0, 0, 0, 3.33, 6.67
    decisions = run(GeneralizationLoss(5.0, "val_loss"), val([2.0, 1.6, 1.5, 1.55, 1.6, 1.0]))
    assert len(decisions) == 5
    assert [d.improved for d in decisions] == [True, True, True, False, False]
    assert "GL(val_loss) = 3.333 <= alpha 5" in decisions[3].details
    assert decisions[3].message.startswith(
        "validation loss is 3.333% above its best, stops above 5%"
    )
    last = decisions[-1]
    assert (last.stop, last.reason, last.best_epoch, last.best_value) == (
        True,
        Reason.GENERALIZATION_LOSS,
        3,
        1.5,
    )
    assert last.details.startswith("GeneralizationLoss(val_loss): GL(val_loss) = 6.667 > alpha 5")
    assert last.message == (
        "Stopped at epoch 5: validation loss is 6.667% above its best, more than the 5% allowed. "
        "Kept epoch 3 (val_loss 1.5)."
    )


def test_generalization_loss_is_strict_and_handles_zero_errors():
    assert not run(GeneralizationLoss(6.25, "val_loss"), val([1.0, 1.0625]))[-1].stop
    assert not run(GeneralizationLoss(1.0, "val_loss"), val([0.0, 0.0]))[-1].stop
    assert run(GeneralizationLoss(1.0, "val_loss"), val([0.0, 0.01]))[-1].stop


def pq_rows(train, valid):
    return [{"loss": t, "val_loss": v} for t, v in zip(train, valid)]


def test_progress_quotient_on_strip_ends_only():
    policy = ProgressQuotient(1.0, strip=3, monitor="val_loss", train_monitor="loss")
    train = [1.0, 0.8, 0.6, 0.55, 0.5, 0.45, 0.44, 0.44, 0.44]
    valid = [1.0, 0.9, 0.85, 10.0, 0.88, 0.9, 0.95, 0.96, 0.97]
    decisions = run(policy, pq_rows(train, valid))
    # epoch 4 has GL ~ 1076 but is mid-strip: PQ is only measured at strip ends
    assert not decisions[3].stop and "checked at strip ends (update 1 of 3" in decisions[3].details
    assert "checked at the end of each 3-epoch strip (1 of 3)" in decisions[3].message
    # strip 2: GL = 100 * (0.9 / 0.85 - 1) = 5.88, P = 1000 * (1.5 / 1.35 - 1) = 111.1 -> PQ 0.053
    assert "GL 5.882 / P 111.1 = 0.05294 <= alpha 1" in decisions[5].details
    assert "5.882% above its best while loss moved 11.11% over the last 3 epochs" in (
        decisions[5].message
    )
    # strip 3: training stalled (P = 0) while GL > 0 -> stop
    assert len(decisions) == 9
    last = decisions[-1]
    assert (last.reason, last.best_epoch, last.best_value) == (Reason.PROGRESS_QUOTIENT, 3, 0.85)


def test_progress_quotient_finite_stop():
    policy = ProgressQuotient(0.5, strip=2, monitor="val_loss", train_monitor="loss")
    decisions = run(policy, pq_rows([0.9, 0.5, 0.49, 0.48], [1.0, 0.8, 0.81, 0.86]))
    # GL(4) = 7.5, P = 1000 * (0.97 / 0.96 - 1) = 10.42, PQ = 0.72 > 0.5
    assert len(decisions) == 4 and decisions[-1].reason is Reason.PROGRESS_QUOTIENT
    assert "GL 7.5 / P 10.42 = 0.72 > alpha 0.5" in decisions[-1].details
    assert decisions[-1].message.startswith(
        "Stopped at epoch 4: validation loss is 7.5% above its best while loss moved only 1.042% "
        "over the last 2 epochs"
    )


def test_progress_quotient_needs_the_train_metric():
    policy = ProgressQuotient(1.0, monitor="val_loss", train_monitor="loss")
    with pytest.raises(KeyError, match="'loss' is not in the metrics"):
        policy.update(1, {"val_loss": 1.0})


def test_up_strips_counts_successive_rises_at_strip_ends():
    decisions = run(UpStrips(2, strip=2, monitor="val_loss"), val([1.0, 0.8, 0.7, 0.9, 0.6, 1.0]))
    assert len(decisions) == 6 and decisions[-1].reason is Reason.UP_STRIPS
    assert (decisions[-1].best_epoch, decisions[-1].best_value) == (5, 0.6)
    # a fall at a strip end resets the run: ends 0.8, 0.9 (up), 0.85 (reset), 1.0 (up)
    values = [1.0, 0.8, 0.7, 0.9, 0.95, 0.85, 0.9, 1.0]
    assert not any(d.stop for d in run(UpStrips(2, strip=2, monitor="val_loss"), val(values)))
    assert len(run(UpStrips(1, strip=2, monitor="val_loss"), val(values))) == 4


def test_up_strips_ignores_ties_and_mid_strip_rises():
    assert not any(d.stop for d in run(UpStrips(1, strip=1, monitor="val_loss"), val([1.0] * 6)))
    # rises inside strips (epochs 2, 5) do not count; strip ends 1.0, 0.9 fall
    assert not any(
        d.stop for d in run(UpStrips(1, strip=3, monitor="val_loss"), val([1, 5, 1, 1, 5, 0.9]))
    )


@pytest.mark.parametrize(
    "build",
    [
        lambda: GeneralizationLoss(5.0, "val_loss"),
        lambda: ProgressQuotient(1.0, strip=2, monitor="val_loss", train_monitor="loss"),
        lambda: UpStrips(2, strip=2, monitor="val_loss"),
    ],
)
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_stops(build, bad):
    decisions = run(build(), pq_rows([1.0, 0.9], [1.0, bad]))
    assert decisions[-1].stop and decisions[-1].reason is Reason.NOT_FINITE
    assert (decisions[-1].best_epoch, decisions[-1].best_value) == (1, 1.0)


def test_non_finite_train_error_stops_pq():
    policy = ProgressQuotient(1.0, monitor="val_loss", train_monitor="loss")
    decision = policy.update(1, {"val_loss": 1.0, "loss": math.nan})
    assert decision.reason is Reason.NOT_FINITE and "loss is nan" in decision.details
    assert decision.message.startswith("Stopped at epoch 1: loss is NaN (not a number)")


@pytest.mark.parametrize(
    "build",
    [
        lambda: GeneralizationLoss(5.0, "val_loss"),
        lambda: ProgressQuotient(1.0, monitor="val_loss", train_monitor="loss"),
    ],
)
def test_ratio_criteria_reject_negative_errors(build):
    with pytest.raises(ValueError, match="errors >= 0"):
        build().update(1, {"val_loss": -0.5, "loss": 1.0})


def test_up_strips_accepts_negative_values():
    assert not UpStrips(1, strip=1, monitor="v").update(1, {"v": -3.0}).stop


@pytest.mark.parametrize(
    ("build", "error", "name"),
    [
        (lambda: GeneralizationLoss(0.0, "val_loss"), ValueError, "alpha"),
        (lambda: GeneralizationLoss(-1.0, "val_loss"), ValueError, "alpha"),
        (lambda: GeneralizationLoss(math.nan, "val_loss"), ValueError, "alpha"),
        (lambda: GeneralizationLoss(5.0, ""), ValueError, "monitor"),
        (lambda: ProgressQuotient(0.0, monitor="v", train_monitor="t"), ValueError, "alpha"),
        (
            lambda: ProgressQuotient(1.0, strip=0, monitor="v", train_monitor="t"),
            ValueError,
            "strip",
        ),
        (
            lambda: ProgressQuotient(1.0, strip=2.5, monitor="v", train_monitor="t"),
            TypeError,
            "strip",
        ),
        (lambda: ProgressQuotient(1.0, monitor="v", train_monitor=""), ValueError, "train_monitor"),
        (lambda: ProgressQuotient(1.0, monitor="v"), TypeError, "train_monitor"),
        (lambda: UpStrips(0, monitor="v"), ValueError, "strips"),
        (lambda: UpStrips(2, strip=0, monitor="v"), ValueError, "strip"),
        (lambda: UpStrips(2, strip=2), TypeError, "monitor"),
    ],
)
def test_bad_arguments_name_the_argument(build, error, name):
    with pytest.raises(error, match=name):
        build()


def test_reprs():
    assert (
        repr(GeneralizationLoss(5.0, "val_loss"))
        == "GeneralizationLoss(alpha=5.0, monitor='val_loss')"
    )
    assert repr(UpStrips(3, monitor="val_loss")) == "UpStrips(strips=3, monitor='val_loss')"
    assert (
        repr(ProgressQuotient(0.5, strip=3, monitor="val_loss", train_monitor="loss"))
        == "ProgressQuotient(alpha=0.5, strip=3, monitor='val_loss', train_monitor='loss')"
    )

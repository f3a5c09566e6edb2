"""Every stop reason of every policy is told in one plain sentence (where, why, the epoch kept), with the
numbers on a separate details line; no jargon in the sentence itself."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from epochpilot.core.schedules.plateau import ReduceOnPlateau
from epochpilot.core.stopping import (
    AnyOf,
    EarlyStopping,
    Forecast,
    GeneralizationLoss,
    ProgressQuotient,
    Reason,
    Retention,
    UpStrips,
    auto_stopper,
)
from epochpilot.core.stopping.wording import chance, metric_words, percent, stop_sentence

#: what a stop sentence must never carry (it goes to ``details``)
JARGON = (
    "P(improve)",
    "GL(",
    "PQ(",
    "alpha",
    "fired",
    ": stop",
    "budget reached",
    "patience unit",
    "+-",
)


def run(policy, rows):
    """Feed rows (dicts, or floats for val_loss) until a stop; return the decisions."""
    out = []
    for epoch, row in enumerate(rows, start=1):
        metrics = row if isinstance(row, dict) else {"val_loss": row}
        out.append(policy.update(epoch, metrics))
        if out[-1].stop:
            break
    return out


def curve(kind: str, n: int = 40, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    t = np.arange(1, n + 1, dtype=float)
    if kind == "overfit":
        y = 0.3 + 1.0 / t + 0.01 * np.maximum(t - 15, 0)
    elif kind == "improving":
        y = 0.2 + 1.0 / np.sqrt(t)
    else:  # converged: flat after a quick descent
        y = 0.3 + 0.5 * np.exp(-t / 2)
    return list(y + 0.003 * rng.normal(size=n))


def check_plain(decision, epoch: int, monitor: str = "val_loss") -> None:
    """The shape every stop sentence has, whatever the policy."""
    assert decision.stop
    message = decision.message
    assert message.startswith(f"Stopped at epoch {epoch}: "), message
    assert "\n" not in message and not any(word in message for word in JARGON), message
    if decision.best_epoch is None:
        assert message.endswith(f"No epoch is kept (no best {monitor} yet)."), message
    else:
        kept = f"Kept epoch {decision.best_epoch} ({monitor} {decision.best_value:.4g})."
        assert message.endswith(kept), message
    assert decision.why and decision.why in message
    assert decision.details and any(ch.isdigit() for ch in decision.details)
    assert decision.policy.split("(")[0] in decision.details


# -- exact sentences, one per stop reason -----------------------------------------------------------------
EXACT = [
    (
        "early patience",
        lambda: EarlyStopping("val_loss", "min", patience=2),
        [0.5, 0.412, 0.42, 0.43],
        Reason.PATIENCE,
        "Stopped at epoch 4: validation loss has not improved for 2 epochs (patience 2). "
        "Kept epoch 2 (val_loss 0.412).",
    ),
    (
        "early patience, relative min_delta, smoothed",
        lambda: EarlyStopping(
            "val_loss", "min", patience=1, min_delta=0.1, min_delta_mode="rel", smoothing=0.5
        ),
        [1.0, 0.95, 0.97],
        Reason.PATIENCE,
        "Stopped at epoch 2: smoothed validation loss has not improved by more than 10% for 1 epoch "
        "(patience 1). Kept epoch 1 (val_loss 1).",
    ),
    (
        "early baseline",
        lambda: EarlyStopping("val_loss", "min", patience=4, baseline=0.3),
        [0.5, 0.6, 0.4, 0.45],
        Reason.BASELINE,
        "Stopped at epoch 4: validation loss did not get below the baseline 0.3 in 4 epochs "
        "(patience 4). Kept epoch 3 (val_loss 0.4).",
    ),
    (
        "early stopping_threshold",
        lambda: EarlyStopping("val_acc", "max", stopping_threshold=0.9),
        [{"val_acc": 0.5}, {"val_acc": 0.95}],
        Reason.STOPPING_THRESHOLD,
        "Stopped at epoch 2: validation accuracy reached 0.95, above the stopping_threshold of 0.9: "
        "good enough. Kept epoch 2 (val_acc 0.95).",
    ),
    (
        "early divergence_threshold",
        lambda: EarlyStopping("val_loss", "min", divergence_threshold=10.0),
        [3.0, 12.0],
        Reason.DIVERGENCE,
        "Stopped at epoch 2: validation loss rose to 12, above the divergence_threshold of 10: "
        "training has diverged. Kept epoch 1 (val_loss 3).",
    ),
    (
        "early not finite",
        lambda: EarlyStopping("val_loss", "min"),
        [1.0, math.nan],
        Reason.NOT_FINITE,
        "Stopped at epoch 2: validation loss is NaN (not a number): training has diverged. "
        "Kept epoch 1 (val_loss 1).",
    ),
    (
        "generalization loss",
        lambda: GeneralizationLoss(5.0, "val_loss"),
        [1.0, 0.8, 0.82, 0.85],
        Reason.GENERALIZATION_LOSS,
        "Stopped at epoch 4: validation loss is 6.25% above its best, more than the 5% allowed. "
        "Kept epoch 2 (val_loss 0.8).",
    ),
    (
        "progress quotient",
        lambda: ProgressQuotient(0.5, strip=2, monitor="val_loss", train_monitor="train_loss"),
        [
            {"val_loss": v, "train_loss": t}
            for v, t in [(1.0, 0.9), (0.8, 0.5), (0.81, 0.49), (0.86, 0.48)]
        ],
        Reason.PROGRESS_QUOTIENT,
        "Stopped at epoch 4: validation loss is 7.5% above its best while training loss moved only "
        "1.042% over the last 2 epochs: the model gets worse faster than training progresses. "
        "Kept epoch 2 (val_loss 0.8).",
    ),
    (
        "progress quotient, training loss not finite",
        lambda: ProgressQuotient(0.5, strip=2, monitor="val_loss", train_monitor="train_loss"),
        [{"val_loss": 1.0, "train_loss": 0.9}, {"val_loss": 0.9, "train_loss": math.inf}],
        Reason.NOT_FINITE,
        "Stopped at epoch 2: training loss is infinite: training has diverged. "
        "Kept epoch 1 (val_loss 1).",
    ),
    (
        "up strips",
        lambda: UpStrips(2, strip=2, monitor="val_loss"),
        [1.0, 0.8, 0.7, 0.9, 0.6, 1.0],
        Reason.UP_STRIPS,
        "Stopped at epoch 6: validation loss rose twice in a row, measured every 2 epochs "
        "(0.8 -> 0.9 -> 1). Kept epoch 5 (val_loss 0.6).",
    ),
    (
        "retention",
        lambda: Retention("retention", reference=1.0, max_drop=0.1),
        [{"retention": v} for v in [0.97, 0.93, 0.88]],
        Reason.RETENTION,
        "Stopped at epoch 3: retention fell to 0.88, 0.12 below the reference 1, more than the 0.1 "
        "allowed (max_drop). Kept epoch 1 (retention 0.97).",
    ),
    (
        "retention, relative, with patience, mode min",
        lambda: Retention("general_loss", 2.0, 0.1, mode="min", relative=True, patience=1),
        [{"general_loss": v} for v in [2.0, 2.3, 2.4]],
        Reason.RETENTION,
        "Stopped at epoch 3: general loss rose to 2.4, 0.4 above the reference 2, more than the 10% "
        "of it allowed (max_drop), for 2 epochs in a row. Kept epoch 1 (general_loss 2).",
    ),
    (
        "retention not finite",
        lambda: Retention("retention", reference=1.0, max_drop=0.1),
        [{"retention": 0.9}, {"retention": -math.inf}],
        Reason.NOT_FINITE,
        "Stopped at epoch 2: retention is minus infinity: training has diverged. "
        "Kept epoch 1 (retention 0.9).",
    ),
    (
        "auto: the blow-up guard, with the Forecast's best",
        lambda: auto_stopper("val_loss", "min", budget=30),
        [0.8, 0.5, 3.9, 4.1],
        Reason.DIVERGENCE,
        "Stopped at epoch 4: validation loss rose to 4.1, past 4 (5x its first value 0.8): training "
        "has diverged. Kept epoch 2 (val_loss 0.5).",
    ),
    (
        "any of: the fired policy's reason, the first policy's kept epoch",
        lambda: AnyOf(
            EarlyStopping("val_loss", "min", patience=10), GeneralizationLoss(5.0, "val_loss")
        ),
        [1.0, 0.8, 0.9],
        Reason.GENERALIZATION_LOSS,
        "Stopped at epoch 3: validation loss is 12.5% above its best, more than the 5% allowed. "
        "Kept epoch 2 (val_loss 0.8).",
    ),
]


@pytest.mark.parametrize(
    ("build", "rows", "reason", "sentence"),
    [case[1:] for case in EXACT],
    ids=[case[0] for case in EXACT],
)
def test_every_stop_reason_has_its_plain_sentence(build, rows, reason, sentence):
    decisions = run(build(), rows)
    last = decisions[-1]
    assert (last.stop, last.reason) == (True, reason)
    assert last.message == sentence
    monitor = sentence.rsplit("(", 1)[1].split()[0] if "Kept epoch" in sentence else "val_loss"
    check_plain(last, len(decisions), monitor)


def test_every_policy_s_details_keep_the_numbers():
    gl = run(GeneralizationLoss(5.0, "val_loss"), [1.0, 0.8, 0.85])[-1]
    assert gl.details == (
        "GeneralizationLoss(val_loss): GL(val_loss) = 6.25 > alpha 5: val_loss 0.85 is 6.25% above "
        "its best (best 0.8 at epoch 2)"
    )
    any_of = run(AnyOf(EarlyStopping("val_loss", "min", patience=10), GeneralizationLoss(5.0, "val_loss")),
                 [1.0, 0.8, 0.85])[-1]  # fmt: skip
    assert any_of.details.startswith("GeneralizationLoss(val_loss) fired: GL(val_loss) = 6.25")


# -- Forecast: every stop reason, checked by shape (the numbers come from the fitted prior) ---------------
EXPECT = r"improve by more than [\d.]+% in the next \d+ epochs \(an? (under |over )?\d+% chance"
ODDS = r"\)"  # when it continues, or might still improve
BELOW = r", under the [\d.]+% needed to go on\)"  # when it stops on the odds


def test_forecast_stop_says_what_it_expected():
    decisions = run(Forecast("val_loss", "min", budget=60), curve("overfit", 60))
    last = decisions[-1]
    assert last.reason is Reason.FORECAST
    check_plain(last, len(decisions))
    assert re.search(rf": validation loss has not improved for \d+ epochs and is unlikely to {EXPECT}{BELOW}\. Kept", last.message), last.message  # fmt: skip
    assert "P(improve) = " in last.details and "(1 - confidence)" in last.details


def test_forecast_patience_cap():
    policy = Forecast("val_loss", "min", budget=60, patience_cap=3, confidence=0.999999)
    decisions = run(policy, [1.0, 0.9, 0.8, 0.7, 0.6, 0.61, 0.62, 0.63, 0.64])
    last = decisions[-1]
    assert last.reason is Reason.PATIENCE and len(decisions) == 8
    assert last.message == (
        "Stopped at epoch 8: validation loss has not improved for 3 epochs, the longest this stopper "
        "waits (patience_cap 3). Kept epoch 5 (val_loss 0.6)."
    )
    check_plain(last, 8)


def test_forecast_at_its_budget_without_extension_says_a_larger_budget_may_help():
    # the default: the budget is a hard cap (max_extension 0), and the curve was still improving
    decisions = run(Forecast("val_loss", "min", budget=12), curve("improving", 12))
    last = decisions[-1]
    assert (len(decisions), last.reason, last.extend_by) == (12, Reason.BUDGET, 0)
    check_plain(last, 12)
    assert re.search(rf": the budget of 12 epochs is used up; validation loss might still {EXPECT}{ODDS}: a larger budget may help\. Kept epoch 12", last.message), last.message  # fmt: skip
    assert "budget reached" not in last.message and "max_extension" not in last.message


def test_forecast_asks_for_more_only_when_allowed_then_says_the_extension_is_used_up():
    policy = Forecast("val_loss", "min", budget=20, max_extension=0.5)
    decisions = run(policy, curve("improving", 60))
    asked = [d for d in decisions if d.extend_by]
    assert asked and all(not d.stop and d.reason is Reason.BUDGET for d in asked)
    assert re.fullmatch(rf"The budget of 20 epochs is used up, but validation loss may still {EXPECT}{ODDS}: asking for \d+ more epochs?", asked[0].message), asked[0].message  # fmt: skip
    last = decisions[-1]
    assert last.reason is Reason.BUDGET and len(decisions) == 30
    check_plain(last, 30)
    assert (
        "the budget of 20 epochs and the 10 epochs added to it (at most 0.5 of the budget may be "
        "added) are used up" in (last.message)
    )


def test_forecast_at_its_budget_with_room_but_no_gain_expected():
    policy = Forecast("val_loss", "min", budget=30, max_extension=0.5, min_fraction=1.0)
    decisions = run(policy, curve("converged", 40))
    last = decisions[-1]
    assert (len(decisions), last.reason) == (30, Reason.BUDGET)
    check_plain(last, 30)
    assert re.search(rf": the budget of 30 epochs is used up and validation loss is unlikely to {EXPECT}{BELOW}, so no extension was asked\.", last.message), last.message  # fmt: skip


def test_forecast_not_finite():
    last = run(Forecast("val_loss", "min", budget=30), [1.0, 0.8, math.nan])[-1]
    assert last.message == (
        "Stopped at epoch 3: validation loss is NaN (not a number): training has diverged. "
        "Kept epoch 2 (val_loss 0.8)."
    )
    check_plain(last, 3)


def test_forecast_continue_messages_are_plain_too():
    policy = Forecast("val_loss", "min", budget=60)
    messages = [d.message for d in run(policy, curve("overfit", 60))[:-1]]
    assert all("P(improve)" not in m and m.endswith(": continue") for m in messages)
    assert any("may still improve by more than" in m for m in messages)


# -- the other decisions that are told to the user --------------------------------------------------------
def test_plateau_reduction_is_one_sentence():
    plateau = ReduceOnPlateau("val_loss", mode="min", patience=2, factor=0.1)
    assert [plateau.step(v) for v in (1.0, 1.0, 1.0, 1.0)] == [False, False, False, True]
    assert plateau.reduction_message() == (
        "Lowered the learning rate to 0.1x the schedule (reduction 1, factor 0.1): validation loss has "
        "not improved by more than 0.01% for 3 evaluations (patience 2)."
    )


def test_words():
    assert [metric_words(m) for m in ("val_loss", "train_acc", "eval_f1", "val_r2", "loss")] == [
        "validation loss",
        "training accuracy",
        "validation F1",
        "validation R²",
        "loss",
    ]
    assert [chance(p) for p in (0.001, 0.03, 0.08, 0.5, 0.995)] == [
        "an under 1% chance",
        "a 3% chance",
        "an 8% chance",
        "a 50% chance",
        "an over 99% chance",
    ]
    assert [percent(f) for f in (0.015, 0.0004, 0.25)] == ["1.5%", "0.04%", "25%"]
    assert stop_sentence("epoch 3, validation 7", "why.", None, "val_loss", None) == (
        "Stopped at epoch 3, validation 7: why. No epoch is kept (no best val_loss yet)."
    )

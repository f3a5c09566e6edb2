"""AnyOf: every policy updated, the one that fired is named, state nests the children's."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest

from epochpilot.core.stopping import (
    AnyOf,
    Decision,
    EarlyStopping,
    GeneralizationLoss,
    Policy,
    Reason,
    UpStrips,
)


class Extend(Policy):
    """A test policy that never stops and asks for ``n`` more epochs."""

    _state_keys = ("seen_",)

    def __init__(self, n: int) -> None:
        self.n = n
        self._init_state()

    def _init_state(self) -> None:
        self.seen_ = 0

    def update(self, epoch: int, metrics: Mapping[str, float]) -> Decision:
        self.seen_ += 1
        return Decision(False, Reason.CONTINUE, False, None, None, "extend", self.name, self.n)


def feed(policy, values):
    decisions = []
    for epoch, value in enumerate(values, start=1):
        decisions.append(policy.update(epoch, {"val_loss": value}))
        if decisions[-1].stop:
            break
    return decisions


def test_names_the_policy_that_fired_and_takes_best_from_the_first():
    early = EarlyStopping("val_loss", "min", patience=10)
    gl = GeneralizationLoss(5.0, "val_loss")
    decisions = feed(AnyOf(early, gl), [1.0, 0.8, 0.82, 0.9])
    last = decisions[-1]
    assert (last.stop, last.reason, last.policy) == (
        True,
        Reason.GENERALIZATION_LOSS,
        "GeneralizationLoss(val_loss)",
    )
    assert last.details.startswith(
        "GeneralizationLoss(val_loss) fired: GL(val_loss) = 12.5 > alpha 5"
    )
    assert last.message == (
        "Stopped at epoch 4: validation loss is 12.5% above its best, more than the 5% allowed. "
        "Kept epoch 2 (val_loss 0.8)."
    )
    assert last.why == "validation loss is 12.5% above its best, more than the 5% allowed"
    assert (last.best_epoch, last.best_value, last.improved) == (2, 0.8, False)
    # every policy saw every epoch
    assert early.state_dict()["state"]["wait_"] == 2 and gl.count_ == 4


def test_continue_message_lists_every_policy():
    policy = AnyOf(EarlyStopping("val_loss", "min"), UpStrips(2, monitor="val_loss"))
    decision = policy.update(1, {"val_loss": 1.0})
    assert (
        not decision.stop
        and decision.policy == "AnyOf(EarlyStopping(val_loss), UpStrips(val_loss))"
    )
    assert decision.message.startswith("EarlyStopping(val_loss): val_loss improved to 1")
    assert (
        "; UpStrips(val_loss): validation loss is compared at the end of each" in decision.message
    )


def test_first_in_order_wins_when_several_fire():
    policy = AnyOf(
        EarlyStopping("val_loss", "min", patience=0),
        GeneralizationLoss(1.0, "val_loss"),
        UpStrips(1, strip=1, monitor="val_loss"),
    )
    last = feed(policy, [1.0, 2.0])[-1]
    assert last.reason is Reason.PATIENCE and last.policy == "EarlyStopping(val_loss)"
    assert last.details.startswith(
        "EarlyStopping(val_loss) fired (also: GeneralizationLoss(val_loss), UpStrips(val_loss)): "
    )
    assert last.message.startswith("Stopped at epoch 2: validation loss has not improved for 1")


def test_not_finite_from_a_child():
    decision = feed(
        AnyOf(GeneralizationLoss(5.0, "val_loss"), EarlyStopping("val_loss", "min")),
        [1.0, float("nan")],
    )[-1]
    assert (
        decision.reason is Reason.NOT_FINITE and decision.policy == "GeneralizationLoss(val_loss)"
    )


def test_nested_any_of_names_the_leaf():
    inner = AnyOf(UpStrips(1, strip=1, monitor="val_loss"))
    last = feed(AnyOf(EarlyStopping("val_loss", "min", patience=9), inner), [1.0, 2.0])[-1]
    assert last.policy == "UpStrips(val_loss)"
    assert last.details.startswith("UpStrips(val_loss) fired: val_loss rose at the end of 1")
    assert last.details.count("fired") == 1
    assert last.message == (
        "Stopped at epoch 2: validation loss rose once, measured every epoch (1 -> 2). "
        "Kept epoch 1 (val_loss 1)."
    )


def test_extend_by_is_the_largest_request():
    policy = AnyOf(EarlyStopping("val_loss", "min"), Extend(3), Extend(7))
    assert policy.update(1, {"val_loss": 1.0}).extend_by == 7


def test_state_dict_nests_children_and_round_trips_through_json():
    policy = AnyOf(
        EarlyStopping("val_loss", "min", patience=2), UpStrips(2, strip=2, monitor="val_loss")
    )
    feed(policy, [1.0, 0.9, 0.95])
    state = json.loads(json.dumps(policy.state_dict()))
    assert state["policy"] == "AnyOf" and [c["policy"] for c in state["state"]["policies"]] == [
        "EarlyStopping",
        "UpStrips",
    ]
    clone = AnyOf(
        EarlyStopping("val_loss", "min", patience=2), UpStrips(2, strip=2, monitor="val_loss")
    )
    clone.load_state_dict(state)
    assert clone.update(4, {"val_loss": 0.97}) == policy.update(4, {"val_loss": 0.97})


def test_load_state_dict_is_all_or_nothing():
    early, up = EarlyStopping("val_loss", "min"), UpStrips(2, monitor="val_loss")
    policy = AnyOf(early, up)
    feed(policy, [1.0, 0.5])
    before = policy.state_dict()
    bad = json.loads(json.dumps(before))
    bad["state"]["policies"][0]["state"]["wait_"] = 99
    bad["state"]["policies"][1]["policy"] = "GeneralizationLoss"
    with pytest.raises(ValueError, match="GeneralizationLoss"):
        policy.load_state_dict(bad)
    assert policy.state_dict() == before  # the first child was not changed either
    with pytest.raises(ValueError, match="holds 1 policies"):
        policy.load_state_dict({**before, "state": {"policies": before["state"]["policies"][:1]}})
    with pytest.raises(ValueError, match="'policies'"):
        policy.load_state_dict({**before, "state": {}})


def test_reset_resets_children():
    early = EarlyStopping("val_loss", "min")
    policy = AnyOf(early)
    feed(policy, [1.0, 2.0])
    policy.reset()
    assert early.best_epoch_ is None and early.wait_ == 0


def test_decide_leaves_the_children_untouched():
    early = EarlyStopping("val_loss", "min", patience=1)
    policy = AnyOf(early, GeneralizationLoss(50.0, "val_loss"))
    decision = policy.decide([{"val_loss": v} for v in [1.0, 0.9, 0.95]])
    assert decision.stop and decision.reason is Reason.PATIENCE and early.best_epoch_ is None


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((), ValueError, "at least one policy"),
        (("val_loss",), TypeError, r"policies\[0\]"),
    ],
)
def test_bad_arguments(args, error, match):
    with pytest.raises(error, match=match):
        AnyOf(*args)


def test_same_object_twice_is_rejected():
    early = EarlyStopping("val_loss", "min")
    with pytest.raises(ValueError, match="policies"):
        AnyOf(early, early)


def test_repr():
    policy = AnyOf(EarlyStopping("val_loss", "min"), GeneralizationLoss(5.0, "val_loss"))
    assert repr(policy) == (
        "AnyOf(EarlyStopping(monitor='val_loss', mode='min'), "
        "GeneralizationLoss(alpha=5.0, monitor='val_loss'))"
    )

"""``cooldown="sweep"``: cooldown branches forked off a constant-lr trunk; the best model over all is kept.

Data: the 96-point ``blobs`` (64 train rows, batch 8: 8 updates per epoch), so branch points and lengths are
known exactly: ``sweep_start=1`` puts the first branch point after epoch 1 (update 8), then 16, 32, ...
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from epochpilot.core.schedules import WSD
from epochpilot.core.stopping.base import Reason
from epochpilot.errors import ConfigError
from epochpilot.train import fit
from epochpilot.train.events import Callback

from .conftest import Improves, LrTrace

SPE = 8
TIMING = ("epoch_time_s", "samples_per_s")
STOP = {"stop": True, "reason": Reason.PATIENCE, "message": "val_loss stopped improving"}


def _fit(blobs, make_mlp, **kw):
    X, y = blobs
    args = dict(
        max_epochs=40,
        seed=0,
        batch_size=8,
        optimizer="sgd",
        lr=0.1,
        schedule=WSD(0.1, warmup_steps=4, shape="linear"),
        cooldown="sweep",
        cooldown_fraction=0.25,
        sweep_start=1,
        sweep_patience=50,
        stopper=False,
    )
    args.update(kw)
    return fit(make_mlp(), (X[:64], y[:64]), (X[64:], y[64:]), **args)


def _plain(rows, drop=("epoch", "step", "branch", "trunk_epoch", "grad_norm", *TIMING)):
    return [{k: v for k, v in row.items() if k not in drop} for row in rows]


def test_branches_fork_at_doubling_points_and_end_annealed(blobs, make_mlp):
    result = _fit(blobs, make_mlp, max_epochs=40)
    assert [b["fork_step"] for b in result.branches[:4]] == [8, 16 + 8, 32 + 16, 64 + 24]
    # each branch cools down over a quarter of the trunk's updates, rounded up to whole epochs
    assert [b["steps"] for b in result.branches[:4]] == [8, 8, 8, 16]
    rows = result.history
    assert len(rows) == 40 and [r["epoch"] for r in rows] == list(range(1, 41))
    assert result.epochs_trained == 40.0
    for b in result.branches:
        inside = [r for r in rows if r["branch"] == b["branch"]]
        assert [r["epoch"] for r in inside] == list(range(b["first_epoch"], b["last_epoch"] + 1))
        assert inside[-1]["lr"] == 0.0  # every branch ends annealed (linear to 0)
    trunk = [r for r in rows if r["branch"] == 0]
    assert [r["trunk_epoch"] for r in trunk] == list(range(1, len(trunk) + 1))
    assert all(r["lr"] == 0.1 for r in trunk[1:])  # the trunk stays at the peak
    assert result.branches[-1]["final"] and result.branches[-1]["last_epoch"] == 40
    assert result.stop_reason == Reason.MAX_EPOCHS
    assert "the last cooldown branch took its" in result.stop_message


def test_the_trunk_is_the_run_without_branches(blobs, make_mlp):
    """A branch leaves no trace on the trunk: model, optimizer, data order and RNG are put back."""
    sweep = _fit(blobs, make_mlp, max_epochs=30)
    plain = _fit(blobs, make_mlp, max_epochs=30, cooldown=None)
    trunk = [r for r in sweep.history if r["branch"] == 0]
    assert len(trunk) >= 10
    assert _plain(trunk) == _plain(plain.history[: len(trunk)])


def test_the_kept_model_is_the_best_over_trunk_and_branches(blobs, make_mlp):
    result = _fit(blobs, make_mlp, max_epochs=30)
    best = min(result.history, key=lambda r: r["val_loss"])
    assert result.best_epoch == best["epoch"]
    assert best["branch"] > 0
    fork = result.branches[best["branch"] - 1]["fork_epoch"]
    assert result.kept_from == f"cooldown from epoch {fork}"
    assert result.summary["kept_from"] == result.kept_from
    assert result.summary["branches"] == result.branches
    X, y = blobs
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(
            result.model(torch.tensor(X[64:], dtype=torch.float32)), torch.tensor(y[64:]).long()
        )
    assert math.isclose(float(loss), best["val_loss"], rel_tol=1e-5)


def test_branches_that_stop_improving_end_the_trunk(blobs, make_mlp):
    X, y = blobs
    shuffled = (X, np.random.default_rng(0).permutation(y))  # labels that cannot be learnt
    result = _fit(shuffled, make_mlp, max_epochs=200, sweep_patience=1, cooldown_fraction=0.2)
    values = [b["best_value"] for b in result.branches]
    assert values[-1] >= min(values[:-1])  # the last branch did not improve on an earlier one
    assert all(a > b for a, b in zip(values[:-2], values[1:-1]))  # every earlier one did
    assert result.stop_reason == Reason.PATIENCE
    assert (
        "did not beat an earlier one" in result.stop_message
        and "stop the trunk" in result.summary["stop_details"]
    )
    assert result.epochs_trained < 200


def test_never_more_than_max_epochs_in_all(blobs, make_mlp):
    for max_epochs in (3, 7, 12, 25):
        result = _fit(blobs, make_mlp, max_epochs=max_epochs, cooldown_fraction=0.5)
        assert len(result.history) <= max_epochs
        assert result.epochs_trained <= max_epochs
        assert result.total_steps <= max_epochs * SPE


def test_the_stopper_on_the_trunk(blobs, make_mlp, scripted):
    # before any branch: a last branch is cooled down from where the stopper fired
    early = _fit(blobs, make_mlp, sweep_start=20, stopper=scripted({4: STOP}))
    assert [b["fork_epoch"] for b in early.branches] == [4]
    assert early.branches[0]["final"] and early.stop_reason == Reason.PATIENCE
    assert early.stop_message.startswith("Stopped at epoch 5: val_loss stopped improving")
    # after a branch, with no trunk improvement since the last fork: the trunk ends there
    late = _fit(blobs, make_mlp, stopper=Improves((1,), 10))
    assert late.history[-1]["branch"] == 0 and late.stop_reason == Reason.PATIENCE
    assert all(not b["final"] for b in late.branches)


@pytest.mark.parametrize(
    ("improve", "stop_at", "start", "forks", "first"),
    # the policy counts trunk epochs: trunk epochs 9 and 14 are epochs 14 and 19 of the run
    [((3,), 8, 20, [3], 9), ((1, 9), 14, 1, [1, 3, 6, 11, 14], 20)],
)
def test_the_last_branch_cools_down_from_the_trunks_best_epoch(
    blobs, make_mlp, tmp_path, improve, stop_at, start, forks, first
):
    """When the policy ends the trunk after its best epoch (and after the last fork), the trunk is rewound to
    that epoch and the last branch cools down from there: not from a point the trunk had already overfit."""
    kw = dict(
        stopper=Improves(improve, stop_at),
        max_epochs=60,
        sweep_start=start,
        run_dir=tmp_path / "a",
    )
    result = _fit(blobs, make_mlp, **kw)
    assert [b["fork_epoch"] for b in result.branches] == forks
    last = result.branches[-1]
    assert last["final"] and last["first_epoch"] == first
    rows = [r for r in result.history if r["branch"] == last["branch"]]
    trunk_best = next(r for r in result.history if r["epoch"] == forks[-1])
    assert (
        rows[0]["trunk_epoch"] == trunk_best["trunk_epoch"] + 1
    )  # the data order after the best epoch
    assert rows[-1]["lr"] == 0.0 and result.stop_reason == Reason.PATIENCE
    # the same run killed inside that branch resumes bitwise (the trunk's best copy is in the checkpoint)
    kw.update(stopper=Improves(improve, stop_at), run_dir=tmp_path / "b", keep_last=50)
    with pytest.raises(KeyboardInterrupt):
        _fit(
            blobs, make_mlp, callbacks=[Kill(first - 1)], **kw
        )  # before the stop: trunk_best saved
    kw["stopper"] = Improves(improve, stop_at)
    resumed = _fit(blobs, make_mlp, resume="auto", **kw)
    assert _plain(resumed.history, drop=TIMING) == _plain(result.history, drop=TIMING)
    for a, b in zip(
        resumed.model.state_dict().values(), result.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_stop_requests_inside_a_branch_are_ignored(blobs, make_mlp, scripted):
    # the policy sees trunk epochs: 2 is the first epoch of branch 1 (forked after trunk epoch 1)
    result = _fit(blobs, make_mlp, max_epochs=12, stopper=scripted({2: STOP}))
    assert result.history[1]["branch"] == 1
    assert len(result.history) >= 3


def test_max_steps_caps_trunk_and_branches(blobs, make_mlp):
    result = _fit(blobs, make_mlp, max_epochs=100, max_steps=100)
    assert result.total_steps == 100
    assert result.history[-1]["lr"] == 0.0  # the last branch fits the cap and ends annealed
    assert result.stop_reason == Reason.MAX_STEPS


def test_deterministic(blobs, make_mlp):
    a, b = (_fit(blobs, make_mlp, max_epochs=20) for _ in range(2))
    assert _plain(a.history, drop=TIMING) == _plain(b.history, drop=TIMING)
    for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values(), strict=True):
        assert torch.equal(x, y)


class Kill(Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_epoch_start(self, state):
        if state.epoch == self.at:
            raise KeyboardInterrupt  # a killed process, after the previous epoch's checkpoint


@pytest.mark.parametrize(("every", "schedule"), [(1, None), ("5 steps", None), (1, "wsd")])
def test_resume_inside_a_branch_is_bitwise(blobs, make_mlp, tmp_path, every, schedule):
    kw = dict(checkpoint_every=every, keep_last=50, max_epochs=20)
    if schedule:  # a named schedule: its warmup is shortened again on resume
        kw.update(schedule=schedule, sweep_start=2)
    whole = _fit(blobs, make_mlp, run_dir=tmp_path / "whole", **kw)
    inside = next(r["epoch"] for r in whole.history if r["branch"] == 4)  # a 2-epoch branch
    assert whole.history[inside]["branch"] == 4
    with pytest.raises(KeyboardInterrupt):
        _fit(blobs, make_mlp, run_dir=tmp_path / "cut", callbacks=[Kill(inside + 1)], **kw)
    resumed = _fit(blobs, make_mlp, run_dir=tmp_path / "cut", resume="auto", **kw)
    assert _plain(resumed.history, drop=TIMING) == _plain(whole.history, drop=TIMING)
    assert resumed.branches == whole.branches and resumed.kept_from == whole.kept_from
    assert resumed.stop_message == whole.stop_message
    for a, b in zip(
        resumed.model.state_dict().values(), whole.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_nan_rollback_inside_a_branch_keeps_the_trunk(blobs, make_mlp):
    class Poison(Callback):
        done = False

        def on_step_end(self, state):
            if state.sweep and state.sweep["branch"] == 2 and not self.done:
                self.done = True
                for p in state.optimizer.param_groups[0]["params"]:
                    p.data.fill_(math.nan)

    result = _fit(blobs, make_mlp, max_epochs=20, on_nan="rollback", callbacks=[Poison()])
    assert result.history[-1]["epoch"] <= 20
    assert any(r["branch"] == 3 for r in result.history)  # the trunk went on after the rollback
    assert all(math.isfinite(r["val_loss"]) for r in result.history if "val_loss" in r)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(cooldown="branches"), "cooldown='branches' is unknown: use 'sweep'"),
        (dict(schedule=None), "needs a WSD schedule"),
        (dict(sweep_start=0), "sweep_start must be a number of epochs > 0"),
        (dict(sweep_patience=0), "sweep_patience must be an int >= 1"),
        (dict(val_every_steps=4), "cooldown='sweep' validates once per epoch"),
    ],
)
def test_bad_config_is_one_line(blobs, make_mlp, kw, match):
    with pytest.raises(ConfigError, match=match) as info:
        _fit(blobs, make_mlp, max_epochs=2, **kw)
    assert "\n" not in str(info.value)


def test_sweep_without_a_stopper_is_allowed_and_on_stop_is_not(blobs, make_mlp):
    assert _fit(blobs, make_mlp, max_epochs=6).branches
    with pytest.raises(ConfigError, match="stopper=False"):
        _fit(blobs, make_mlp, max_epochs=6, cooldown="on_stop")


def test_a_named_wsd_warms_up_before_the_first_branch(blobs, make_mlp):
    trace = LrTrace()
    result = _fit(blobs, make_mlp, schedule="wsd", sweep_start=4, max_epochs=100, callbacks=[trace])
    # 5% of the 800 planned updates would be 40; under a sweep the warmup is half the first 4 epochs
    assert trace.lrs[14] < 0.1 and trace.lrs[15] == 0.1
    assert result.branches[0]["fork_step"] == 32
    own = _fit(blobs, make_mlp, schedule=WSD(0.1, warmup_steps=40), max_epochs=60)
    assert (
        own.branches[0]["fork_step"] == 40
    )  # a WSD object keeps its own warmup; no branch inside it

"""MixedSampler (weighted, deterministic, resumable mixing of named sources) and Stages (staged training in
one run with a stage column), plus the Probed bridge that puts probe scores into the row."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from epochpilot.core.schedules import Constant
from epochpilot.core.stopping import AnyOf, EarlyStopping, Reason, Retention
from epochpilot.finetune.mixed import MixedSampler, Stage, StagePolicy, Stages
from epochpilot.finetune.probe import Probed, rankdata, spearman
from epochpilot.train import Callback

torch.set_num_threads(1)


def source(n, value=0.0, label=0):
    return (torch.full((n, 2), value), torch.full((n,), label, dtype=torch.long))


def blobs(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    X = torch.randn(n, 3, generator=g) + y[:, None] * 2.0
    return X, y


# -- MixedSampler -------------------------------------------------------------------------------------------
def test_task_at_twice_its_share_gets_exactly_those_draws():
    s = MixedSampler({"general": source(90), "task": source(10)}, weights={"task": 2.0}, seed=3)
    assert s.counts() == {"general": 82, "task": 18}  # 2*10 / (90 + 2*10) of 100 draws = 18.2
    drawn = Counter(s.source_of(i) for i in s.indices(epoch=1))
    assert drawn == {"general": 82, "task": 18}
    task_draws = Counter(i for i in s.indices(1) if i >= 90)
    assert (
        sorted(task_draws.values()) == [1] * 2 + [2] * 8
    )  # oversampled: every task sample, most twice


def test_equal_weights_draw_every_sample_once_per_epoch():
    s = MixedSampler({"a": source(7), "b": source(5)}, seed=0)
    assert sorted(s.indices(4)) == list(range(12))


def test_order_depends_only_on_seed_and_epoch():
    def make(seed):
        return MixedSampler({"a": source(30), "b": source(20)}, {"b": 3.0}, seed=seed)

    assert make(1).indices(2) == make(1).indices(2)
    assert make(1).indices(2) != make(1).indices(3)
    assert make(1).indices(2) != make(2).indices(2)


def test_set_epoch_and_auto_advance_and_state_round_trip():
    s = MixedSampler({"a": source(8), "b": source(8)}, seed=5)
    first, second = list(s), list(s)  # no set_epoch: each pass is the next epoch
    assert first == s.indices(1) and second == s.indices(2)
    s.set_epoch(7)
    assert list(s) == s.indices(7)
    again = MixedSampler({"a": source(8), "b": source(8)}, seed=0)
    again.load_state_dict(json.loads(json.dumps(s.state_dict())))
    assert list(again) == s.indices(8)
    with pytest.raises(ValueError, match="weights"):
        MixedSampler({"a": source(8), "b": source(8)}, {"a": 2.0}).load_state_dict(s.state_dict())


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(1, 30), min_size=1, max_size=4),
    st.lists(st.floats(0.0, 5.0), min_size=4, max_size=4),
    st.integers(1, 120),
)
def test_counts_sum_to_num_samples_and_follow_the_shares(sizes, weights, num_samples):
    names = [f"s{i}" for i in range(len(sizes))]
    w = dict(zip(names, weights))
    if sum(w[n] * k for n, k in zip(names, sizes)) <= 0:
        with pytest.raises(ValueError, match="sum to a positive number"):
            MixedSampler({n: source(k) for n, k in zip(names, sizes)}, w, num_samples=num_samples)
        return
    s = MixedSampler({n: source(k) for n, k in zip(names, sizes)}, w, num_samples=num_samples)
    counts = s.counts()
    assert sum(counts.values()) == num_samples == len(s.indices(1))
    for name in names:
        assert abs(counts[name] - s.shares[name] * num_samples) < 1.0
        if w[name] == 0:
            assert counts[name] == 0


@pytest.mark.parametrize(
    "datasets, weights, match",
    [
        ({"a": source(3)}, {"b": 1.0}, "unknown sources"),
        ({"a": source(3)}, {"a": -1.0}, "finite number >= 0"),
        ({"a": source(3)}, {"a": math.nan}, "finite number >= 0"),
        ({"a": source(3), "b": source(2)}, {"a": 0.0, "b": 0.0}, "sum to a positive number"),
        ({"a": source(0)}, None, "empty"),
        ({}, None, "non-empty dict"),
    ],
)
def test_bad_mixes(datasets, weights, match):
    with pytest.raises(ValueError, match=match):
        MixedSampler(datasets, weights)


def test_trainer_runs_on_a_mixed_loader_deterministically():
    from epochpilot.train import fit

    X, y = blobs(48)
    histories = []
    for _ in range(2):
        s = MixedSampler(
            {"general": (X[:40], y[:40]), "task": (X[40:], y[40:])}, {"task": 2.0}, seed=1
        )
        torch.manual_seed(0)
        result = fit(
            torch.nn.Linear(3, 2), s.loader(8), (X, y), max_epochs=3, seed=0, stopper=False
        )
        histories.append([row["train_loss"] for row in result.history])
    assert histories[0] == histories[1] and len(histories[0]) == 3


# -- Stages ------------------------------------------------------------------------------------------------
def test_stage_needs_epochs_or_stopper_and_valid_values():
    with pytest.raises(ValueError, match="needs epochs or a stopper"):
        Stage(source(4))
    with pytest.raises(ValueError, match="epochs must be an int >= 1"):
        Stage(source(4), epochs=0)
    with pytest.raises(TypeError, match="stop Policy"):
        Stage(source(4), stopper="patience")
    with pytest.raises(ValueError, match="distinct"):
        Stages([Stage(source(4), epochs=1, name="a"), Stage(source(4), epochs=1, name="a")])
    with pytest.raises(ValueError, match="set by the stages"):
        Stages([Stage(source(4), epochs=1)]).fit(torch.nn.Linear(2, 2), max_epochs=3)


def test_stage_policy_moves_on_when_a_stopper_fires_and_only_the_last_stage_keeps_a_best():
    first = EarlyStopping("val_loss", mode="min", patience=0)
    last = EarlyStopping("val_loss", mode="min", patience=1)
    policy = StagePolicy(
        [Stage(None, stopper=first, name="a"), Stage(None, epochs=5, stopper=last)]
    )
    losses = [1.0, 0.9, 0.95, 0.8, 0.7, 0.75, 0.76]
    decisions = [policy.update(e, {"val_loss": v, "step": 10 * e}) for e, v in enumerate(losses, 1)]
    assert [d.improved for d in decisions[:3]] == [False, False, False]  # stage a: never "best"
    assert "stage 'a' ended" in decisions[2].message and policy.start_step_ == 30
    assert decisions[3].improved and decisions[4].improved and decisions[4].best_epoch == 5
    assert decisions[5].stop and decisions[5].reason is Reason.PATIENCE
    assert "(its epoch 3)" in decisions[5].message
    rows = [{"val_loss": v, "step": 10 * e} for e, v in enumerate(losses, 1)]
    assert policy.decide(rows) == decisions[5]


def test_stages_fit_one_history_with_a_stage_column_schedules_and_report(tmp_path):
    X, y = blobs(64)
    stages = Stages(
        [
            Stage((X[:32], y[:32]), epochs=2, schedule=Constant(0.05), name="general"),
            Stage((X, y), stopper=EarlyStopping("val_loss", mode="min", patience=1), name="mixed"),
        ]
    )
    result = stages.fit(
        torch.nn.Linear(3, 2),
        (X, y),
        max_stage_epochs=4,
        batch_size=16,
        seed=0,
        lr=0.01,
        run_dir=tmp_path / "run",
    )
    stage_col = [row["stage"] for row in result.history]
    assert stage_col[:2] == ["general", "general"] and set(stage_col[2:]) == {"mixed"}
    assert [row["lr"] for row in result.history[:2]] == [0.05, 0.05]
    assert all(row["lr"] == pytest.approx(0.01) for row in result.history[2:])
    assert (
        result.history[0]["step"] == 2 and result.history[2]["step"] == 4 + 4
    )  # 32 then 64 samples
    assert result.best_epoch is None or result.best_epoch > 2
    lines = (tmp_path / "run" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["stage"] for line in lines] == stage_col
    from epochpilot.report import write_report

    write_report(tmp_path / "run")
    assert (tmp_path / "run" / "report.html").is_file()
    from epochpilot.report.load import load_run
    from epochpilot.report.plots import curve_figure

    fig = curve_figure(load_run(tmp_path / "run"), "loss", "train_loss", "val_loss")
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert "stage mixed from epoch 3" in labels  # the boundary is drawn between epochs 2 and 3


class Crash(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_start(self, state):
        if state.epoch == self.epoch:
            raise KeyboardInterrupt


def test_stages_resume_after_a_crash_matches_an_uninterrupted_run(tmp_path):
    X, y = blobs(48)

    def run(run_dir, **kw):
        torch.manual_seed(0)
        mix = MixedSampler(
            {"general": (X[:40], y[:40]), "task": (X[40:], y[40:])}, {"task": 2.0}, seed=2
        )
        stages = Stages([Stage((X[:40], y[:40]), epochs=2), Stage(mix, epochs=3)])
        return stages.fit(
            torch.nn.Linear(3, 2), (X, y), batch_size=8, seed=0, run_dir=run_dir, **kw
        )

    whole = run(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", callbacks=[Crash(4)])
    resumed = run(tmp_path / "b", resume=True)
    assert [r["stage"] for r in resumed.history] == ["stage1"] * 2 + ["stage2"] * 3
    for a, b in zip(whole.history, resumed.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)


# -- Probed ------------------------------------------------------------------------------------------------
def test_probed_adds_scores_to_the_row_and_never_keeps_a_forgetting_epoch():
    scores = iter([0.99, 0.97, 0.8])
    policy = Probed(
        AnyOf(
            EarlyStopping("val_accuracy", mode="max", patience=5), Retention("retention", 1.0, 0.1)
        ),
        {"retention": lambda: next(scores)},
    )
    rows = [{"val_accuracy": 0.5}, {"val_accuracy": 0.6}, {"val_accuracy": 0.7}]
    decisions = [policy.update(e, row) for e, row in enumerate(rows, 1)]
    assert [row["retention"] for row in rows] == [0.99, 0.97, 0.8]
    assert [d.improved for d in decisions] == [
        True,
        True,
        False,
    ]  # epoch 3 improved the task but forgot
    assert decisions[-1].stop and decisions[-1].reason is Reason.RETENTION
    assert policy.monitor == "val_accuracy" and policy.mode == "max"
    assert policy.decide(rows) == decisions[-1]  # recorded scores are reused, not re-probed
    clone = Probed(
        AnyOf(
            EarlyStopping("val_accuracy", mode="max", patience=5), Retention("retention", 1.0, 0.1)
        )
    )
    clone.load_state_dict(json.loads(json.dumps(policy.state_dict())))
    assert clone.inner.policies[1].violating_ == 1


def test_spearman_matches_the_definition_with_ties():
    assert rankdata([3, 1, 2, 2]).tolist() == [4.0, 1.0, 2.5, 2.5]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # Pearson correlation of the ranks, computed by hand for one tied case
    a, b = [1, 2, 2, 3], [1, 3, 2, 4]
    ra, rb = rankdata(a), rankdata(b)
    expected = float(((ra - ra.mean()) * (rb - rb.mean())).sum() / (len(a) * ra.std() * rb.std()))
    assert spearman(a, b) == pytest.approx(expected)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


@pytest.mark.parametrize("module", ["epochpilot.finetune.mixed", "epochpilot.finetune.probe"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(
        importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE
    )
    assert result.attempted > 0 and result.failed == 0

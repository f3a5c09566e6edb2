"""The epochpilot pruner on synthetic studies: warmup immunity, slow starters that win, the stated probability,
the start-up trials, the rung statistics, and the pure judge's monotonicity."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from epochpilot.select.tune.judge import judge, judged_from
from epochpilot.select.tune.pruner import (
    LRS_ATTR,
    WARMUP_ATTR,
    EpochpilotPruner,
    record_lr,
    record_schedule,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)
BUDGET = 30
EPOCHS = range(1, BUDGET + 1)


def noisy(fn, seed: int = 0, sd: float = 0.004) -> dict[int, float]:
    rng = np.random.default_rng(seed)
    return {e: float(fn(e) + rng.normal(0.0, sd)) for e in EPOCHS}


def fast(e):  # the study's completed trials: quick start, final ~0.30
    return 0.30 + 0.7 * math.exp(-0.5 * e)


def slow_winner(e):  # behind until epoch ~17, ends at ~0.15: the unpruned study's winner
    return 0.10 + 1.5 * math.exp(-0.12 * (e - 1))


def hopeless(e):  # flat far above the best
    return 1.0 + 0.2 * math.exp(-0.5 * e)


def study_with(
    completed: list[dict[int, float]], **pruner_kwargs
) -> tuple[optuna.Study, EpochpilotPruner]:
    pruner = EpochpilotPruner(**pruner_kwargs)
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), pruner=pruner)
    for curve in completed:
        study.add_trial(
            optuna.trial.create_trial(
                value=min(curve.values()),
                intermediate_values=curve,
                user_attrs={"max_epochs": BUDGET},
            )
        )
    return study, pruner


def running(curve: dict[int, float], upto: int, **attrs) -> optuna.trial.FrozenTrial:
    """The trial as the pruner sees it after epoch ``upto``."""
    return optuna.trial.create_trial(
        state=optuna.trial.TrialState.RUNNING,
        intermediate_values={e: v for e, v in curve.items() if e <= upto},
        user_attrs={"max_epochs": BUDGET, **attrs},
    )


def first_pruned(study, pruner, curve, **attrs) -> int | None:
    for e in EPOCHS:
        if pruner.decide(study, running(curve, e, **attrs)).prune:
            return e
    return None


REFERENCE = [noisy(fast, seed=s) for s in range(3)]


# -- the schedule: never judged inside the warmup -------------------------------------------------------------


def test_a_trial_is_never_pruned_inside_its_warmup_even_far_behind():
    study, pruner = study_with(REFERENCE, min_epochs=1, grace_fraction=0.0)
    far = noisy(lambda e: 5.0, seed=7)  # looks hopeless from the first epoch
    # without a recorded schedule it is cut as soon as it has a rate to judge (epoch 2) ...
    assert first_pruned(study, pruner, far) == 2
    assert pruner.decide(study, running(far, 2)).reason == "out_of_reach"
    # ... with a warmup of 20% of the budget (6 epochs) never inside it: at the first epoch after it
    assert first_pruned(study, pruner, far, **{WARMUP_ATTR: 0.2 * BUDGET}) == 7
    assert (
        "warmup of 6 epochs" in pruner.decide(study, running(far, 6, **{WARMUP_ATTR: 6.0})).message
    )
    # the same from the lr per epoch: a linear warmup over 6 epochs, then cosine decay
    lrs = [
        0.1 * min(1.0, e / 6) * (0.5 + 0.5 * math.cos(math.pi * max(e - 6, 0) / 24)) for e in EPOCHS
    ]
    assert first_pruned(study, pruner, far, **{LRS_ATTR: lrs}) == 7


def test_an_lr_still_rising_keeps_the_trial_in_its_warmup():
    assert judged_from(budget=30, lrs=[0.01, 0.02, 0.03], min_epochs=1)[0] == 4
    # the epoch that reached the peak ran below it for part of its updates: the next one is judged
    assert judged_from(budget=30, lrs=[0.01, 0.02, 0.03, 0.03], min_epochs=1)[0] == 4
    assert judged_from(budget=30, lrs=[0.03, 0.03, 0.029], min_epochs=1)[0] == 1  # no warmup
    assert judged_from(budget=30, warmup_epochs=4.5, min_epochs=1)[0] == 6
    assert judged_from(budget=30, warmup_epochs=0.0, min_epochs=1)[0] == 1  # known: no grace
    assert judged_from(budget=100, min_epochs=3)[0] == 10  # unknown: 10% of the budget
    assert judged_from(budget=20, min_epochs=3)[0] == 3


def test_record_lr_and_record_schedule_store_what_the_pruner_reads():
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    trial = study.ask()
    for epoch, lr in ((1, 0.01), (2, 0.02), (2, 0.025), (4, 0.03), (5, "n/a")):
        record_lr(trial, epoch, lr)
    assert trial.user_attrs[LRS_ATTR] == [
        0.01,
        0.025,
        0.025,
        0.03,
    ]  # a re-run epoch replaced, a gap held
    record_lr(trial, 5, 0.03)
    record_lr(trial, 6, 0.02)  # past the rise: not stored (saves a write per epoch)
    assert trial.user_attrs[LRS_ATTR] == [0.01, 0.025, 0.025, 0.03, 0.03]
    record_lr(trial, 9, 0.05)  # a restart that rises again is stored, the gap held
    assert trial.user_attrs[LRS_ATTR] == [0.01, 0.025, 0.025, 0.03, 0.03, 0.03, 0.03, 0.03, 0.05]
    record_schedule(trial, warmup_epochs=3, lrs=[0.1, 0.2])
    assert trial.user_attrs[WARMUP_ATTR] == 3.0 and trial.user_attrs[LRS_ATTR] == [0.1, 0.2]


# -- like with like, and a forecast against the best's final value --------------------------------------------


def test_a_slow_starter_that_wins_is_not_cut_but_a_hopeless_trial_is():
    winner = noisy(slow_winner, seed=11)
    assert min(winner.values()) < min(min(c.values()) for c in REFERENCE)
    assert all(winner[e] > REFERENCE[0][e] + 0.3 for e in range(3, 7))  # behind at epochs 3-6
    study, pruner = study_with(REFERENCE)
    assert first_pruned(study, pruner, winner) is None
    cut = first_pruned(study, pruner, noisy(hopeless, seed=3))
    assert cut is not None and cut <= 10
    assert pruner.decide(study, running(noisy(hopeless, seed=3), cut)).reason == "out_of_reach"


def test_the_stated_probability_is_respected():
    study, _ = study_with(REFERENCE)
    close = noisy(
        lambda e: 0.28 + 1.0 * math.exp(-0.15 * e), seed=5
    )  # may or may not end below 0.30
    seen = []
    for e in range(8, 16):
        # line_fraction 100: the projection never rules it out, the forecast alone decides
        p = (
            EpochpilotPruner(probability=0.0, line_fraction=100)
            .decide(study, running(close, e))
            .p_beat
        )
        assert p is not None and 0.0 <= p <= 1.0
        seen.append(p)
        for threshold in (p / 2, p * 0.999, min(p * 1.001 + 1e-9, 1.0), min(2 * p + 1e-9, 1.0)):
            d = EpochpilotPruner(probability=threshold, line_fraction=100).decide(
                study, running(close, e)
            )
            assert d.prune == (p < threshold), (e, p, threshold)
    assert any(0.01 < p < 0.99 for p in seen)  # the test exercises a real uncertainty


def test_nothing_is_pruned_before_n_startup_trials_completed():
    study, pruner = study_with(REFERENCE[:2], n_startup_trials=3)
    assert first_pruned(study, pruner, noisy(hopeless, seed=3)) is None
    study, pruner = study_with(REFERENCE[:2], n_startup_trials=2)
    assert first_pruned(study, pruner, noisy(hopeless, seed=3)) is not None


def test_a_diverged_trial_is_pruned_at_once_even_in_its_warmup():
    study, pruner = study_with(REFERENCE)
    d = pruner.decide(study, running({1: 0.9, 2: math.nan}, 2, **{WARMUP_ATTR: 10.0}))
    assert d.prune and d.reason == "not_finite"


def test_a_trial_ahead_of_its_rung_is_kept_whatever_the_forecast():
    flat = {e: 1.0 for e in range(1, 11)}
    kwargs = dict(mode="min", target=0.3, budget=BUDGET)
    assert judge(
        flat, rung=[0.5, 0.6, 0.7], **kwargs
    ).prune  # behind every completed trial at epoch 10
    kept = judge(flat, rung=[1.5, 1.6, 0.7], **kwargs)
    assert not kept.prune and "ahead of 2/3" in kept.message
    assert judge(flat, rung=[1.5, 0.6, 0.7], **kwargs).prune  # ahead of only 1 of 3


def test_max_mode_mirrors_min_mode():
    flat = {e: 1.0 for e in range(1, 11)}
    assert judge(flat, mode="min", target=0.3, rung=[0.5], budget=BUDGET).prune
    mirrored = {e: -v for e, v in flat.items()}
    assert judge(mirrored, mode="max", target=-0.3, rung=[-0.5], budget=BUDGET).prune
    assert not judge(mirrored, mode="max", target=-1.5, rung=[-0.5], budget=BUDGET).prune


def test_the_pruner_in_a_study_keeps_the_slow_winner_and_cuts_the_hopeless():
    pruner = EpochpilotPruner(
        n_startup_trials=3
    )  # the three fast trials complete: the slow one is 4th
    study = optuna.create_study(
        storage=optuna.storages.InMemoryStorage(),
        pruner=pruner,
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    shapes = {"fast": fast, "slow": slow_winner, "hopeless": hopeless}
    for kind in ("fast", "fast", "fast", "slow", "hopeless", "hopeless"):
        study.enqueue_trial({"kind": kind})

    def objective(trial: optuna.Trial) -> float:
        fn = shapes[trial.suggest_categorical("kind", list(shapes))]
        record_schedule(trial, warmup_epochs=0.0)
        trial.set_user_attr("max_epochs", BUDGET)
        for e, value in noisy(fn, seed=trial.number).items():
            trial.report(value, e)
            if trial.should_prune():
                raise optuna.TrialPruned(pruner.reason(trial.number))
        return min(noisy(fn, seed=trial.number).values())

    study.optimize(objective, n_trials=6)
    states = [t.state for t in study.trials]
    assert states[:4] == [optuna.trial.TrialState.COMPLETE] * 4
    assert states[4:] == [optuna.trial.TrialState.PRUNED] * 2
    assert study.best_trial.params["kind"] == "slow"
    assert pruner.reason(4).startswith("out_of_reach: ")


# -- the pure judge ------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    st.floats(0.05, 2.0),  # asymptote
    st.floats(0.0, 2.0),  # amplitude
    st.floats(0.01, 1.0),  # rate
    st.integers(5, 20),  # epochs seen
    st.integers(0, 25),  # epochs left
    st.floats(0.01, 1.0),  # shift down
    st.floats(0.01, 2.0),  # the study's best
    st.lists(st.floats(0.01, 3.0), max_size=6),  # the rung
    st.integers(0, 2**16),
    st.sampled_from(["min", "max"]),
)
def test_a_uniformly_better_curve_is_never_pruned_when_a_worse_one_is_not(
    c, a, b, n, left, shift, target, rung, seed, mode
):
    sign = 1.0 if mode == "min" else -1.0
    rng = np.random.default_rng(seed)
    worse = {e: c + a * math.exp(-b * e) + float(rng.normal(0, 0.01)) for e in range(1, n + 1)}
    better = {e: v - shift for e, v in worse.items()}

    def decide(curve):
        return judge(
            {e: sign * v for e, v in curve.items()},
            mode=mode,
            target=sign * target,
            rung=[sign * v for v in rung],
            budget=n + left,
            min_epochs=1,
        )

    if not decide(worse).prune:
        assert not decide(better).prune


def test_constructor_checks_its_arguments():
    with pytest.raises(ValueError, match="probability"):
        EpochpilotPruner(probability=1.5)
    with pytest.raises(ValueError, match="rung_quantile"):
        EpochpilotPruner(rung_quantile=-0.1)
    with pytest.raises(ValueError, match="line_fraction"):
        EpochpilotPruner(line_fraction=-1)
    with pytest.raises(ValueError, match="window"):
        EpochpilotPruner(window=0)
    assert "probability=0.05" in repr(EpochpilotPruner())
    assert "line_fraction=0.2" in repr(EpochpilotPruner())


def test_the_pruner_passes_every_judge_setting_with_the_same_defaults():
    import inspect

    from epochpilot.select.tune.judge import JUDGE_SETTINGS

    judge_params = inspect.signature(judge).parameters
    pruner_params = inspect.signature(EpochpilotPruner).parameters
    assert set(JUDGE_SETTINGS) == {
        n
        for n in judge_params
        if n not in ("curve", "mode", "target", "rung", "budget", "warmup_epochs", "lrs")
    }
    for name in JUDGE_SETTINGS:
        assert pruner_params[name].default == judge_params[name].default, name

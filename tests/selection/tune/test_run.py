"""tune: the search space, the epochpilot pruner's rules, sqlite studies that resume after a crash and are
shared by worker processes, bad storage, and a config-driven study that trains a job."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from epochpilot.select.tune.judge import judge
from epochpilot.select.tune.pruner import EpochpilotPruner
from epochpilot.select.tune.run import (
    Param,
    PruningCallback,
    apply_params,
    open_storage,
    parse_space,
    tune,
)

sys.path.insert(0, str(Path(__file__).parent))
from _postgres import postgres_url  # noqa: E402, F401 - a fixture
from _tune_worker import SPACE, curve_objective  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
WORKER = Path(__file__).parent / "_tune_worker.py"
optuna.logging.set_verbosity(optuna.logging.WARNING)


# -- space ---------------------------------------------------------------------------------------------------


def test_space_kinds_parse_and_suggest():
    space = parse_space(
        {
            "lr": ("log", 1e-4, 1e-1),
            "warmup": ("float", 0, 0.2),
            "max_epochs": ("int", 5, 50),
            "schedule": ("choice", ["warmup(cosine)", "onecycle"]),
            "model.hidden": ("choice", [[64, 32], [128]]),
        }
    )
    assert space["lr"] == Param("lr", "log", 1e-4, 1e-1)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    values = {n: p.suggest(trial) for n, p in space.items()}
    assert 1e-4 <= values["lr"] <= 1e-1 and isinstance(values["max_epochs"], int)
    assert values["model.hidden"] in ([64, 32], [128])  # list choices come back as lists
    assert values["schedule"] in ("warmup(cosine)", "onecycle")


@pytest.mark.parametrize(
    "space, match",
    [
        (
            {"lr": ("uniform", 0, 1)},
            r"space\['lr'\]: unknown kind 'uniform': use one of float, log, int, choice",
        ),
        (
            {"lr": ("float", 0.1, 0.1)},
            r"space\['lr'\] has an empty range \(0.1, 0.1\): make low < high",
        ),
        ({"lr": ("float", 1, 0)}, r"empty range"),
        ({"lr": ("log", 0, 1)}, r"'log' range needs low > 0"),
        ({"n": ("int", 1.5, 4)}, r"whole numbers"),
        ({"b": ("choice", [])}, r"at least one option"),
        ({"b": ("choice", [{"a": 1}])}, r"option \{'a': 1\}"),
        ({"lr": 0.1}, r"must be a tuple \(kind, ...\)"),
        ({"lr": ("float", 0, "1")}, r"high must be a finite number"),
        ({}, r"non-empty dict"),
    ],
)
def test_bad_spaces_name_the_parameter_and_the_fix(space, match):
    with pytest.raises(ValueError, match=match):
        parse_space(space)


def test_unknown_parameter_of_a_config_study_suggests_the_nearest(tmp_path):
    (tmp_path / "job.toml").write_text('[data]\nbuiltin = "wine"\n')
    with pytest.raises(ValueError, match=r"unknown parameter 'lrr': did you mean 'lr'\?"):
        tune(
            tmp_path / "job.toml", {"lrr": ("log", 1e-3, 1e-1)}, n_trials=1, run_dir=tmp_path / "t"
        )


def test_apply_params_routes_model_arguments():
    from epochpilot.jobs.spec import JobSpec

    spec = apply_params(JobSpec(), {"lr": 0.05, "batch_size": 16, "model.dropout": 0.3})
    assert spec.train.lr == 0.05 and spec.train.batch_size == 16
    assert spec.model.kwargs == {"hidden": [128, 64], "dropout": 0.3}


def test_pruner_prunes_bad_trials_in_a_study_and_records_the_reason():
    pruner = EpochpilotPruner(n_startup_trials=2)
    study = optuna.create_study(pruner=pruner, sampler=optuna.samplers.RandomSampler(seed=1))
    for x in (0.3, 0.35):
        study.enqueue_trial({"x": x})
    study.enqueue_trial({"x": 1.0})
    tune(
        curve_objective,
        SPACE,
        n_trials=10,
        storage=study._storage,
        study_name=study.study_name,
        pruner=pruner,
    )
    trials = study.get_trials()
    assert len(trials) == 10
    worst = trials[2]
    assert (
        worst.state == optuna.trial.TrialState.PRUNED
        and pruner.last_decision(2).reason == "out_of_reach"
    )
    assert study.best_trial.params["x"] == pytest.approx(0.3, abs=0.1)
    for t in trials:  # never prunes a trial that would have beaten the best at its time
        if t.state == optuna.trial.TrialState.PRUNED:
            assert (t.params["x"] - 0.3) ** 2 > 0.0


# -- studies on sqlite -----------------------------------------------------------------------------------------


def test_resume_counts_finished_trials_and_refuses_another_space(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = tune(curve_objective, SPACE, n_trials=3, storage=url, pruner="none")
    assert len(study.trials) == 3 and (tmp_path / "study.db").exists()
    study = tune(curve_objective, SPACE, n_trials=5, storage=url, pruner="none", resume="auto")
    assert len(study.trials) == 5  # two more, not five more
    assert study.user_attrs["epochpilot_space"] == '{"x": ["float", 0.0, 1.0]}'
    for resume in (False, "auto", True):  # no resume continues another space or direction
        with pytest.raises(
            ValueError,
            match=r"study 'epochpilot' in sqlite.*different search space.*another study_name",
        ):
            tune(
                curve_objective,
                {"x": ("float", 0.0, 2.0)},
                n_trials=6,
                storage=url,
                pruner="none",
                resume=resume,
            )
        with pytest.raises(ValueError, match="created with direction minimize, not maximize"):
            tune(
                curve_objective,
                SPACE,
                n_trials=6,
                storage=url,
                pruner="none",
                direction="maximize",
                resume=resume,
            )


def test_bad_storage_is_one_clear_line(tmp_path):
    with pytest.raises(ValueError, match=r"folder .*nowhere does not exist"):
        open_storage(f"sqlite:///{tmp_path / 'nowhere' / 'study.db'}")
    with pytest.raises(ValueError, match=r"storage postgresql://u:\*\*\*@127.0.0.1:9/db") as info:
        open_storage("postgresql://u:secret@127.0.0.1:9/db")
    assert "secret" not in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ValueError, match="cannot be opened"):
        open_storage("nosuchdialect://x")


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_trials must be an int >= 1"):
        tune(curve_objective, SPACE, n_trials=0)
    with pytest.raises(ValueError, match="pruner='sometimes' is unknown"):
        tune(curve_objective, SPACE, n_trials=1, pruner="sometimes")
    with pytest.raises(ValueError, match="sampler='grid' is unknown"):
        tune(curve_objective, SPACE, n_trials=1, sampler="grid")


def _worker(url: str, n: int, heartbeat: int = 10, delay: float = 0.0) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT / 'tests'}",
        "EP_TUNE_DELAY": str(delay),
    }
    return subprocess.Popen(
        [sys.executable, str(WORKER), url, str(n), str(heartbeat)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finished(url: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name="epochpilot", storage=open_storage(url, None))
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return study.get_trials(states=states)


@pytest.mark.slow
def test_two_worker_processes_share_one_sqlite_study(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    procs = [_worker(url, 12, delay=0.02) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    done = _finished(url)
    assert 12 <= len(done) <= 13  # one extra may finish while the last runs
    assert len({t.user_attrs["pid"] for t in done}) == 2  # both workers ran trials
    assert len({t.number for t in done}) == len(done)


@pytest.mark.slow
def test_a_killed_worker_is_resumed_and_its_trial_retried(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    proc = _worker(url, 8, heartbeat=1, delay=0.1)
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.3)
        try:
            if len(_finished(url)) >= 2:
                break
        except Exception:  # noqa: BLE001 - the study may not exist yet
            continue
    while time.time() < deadline:  # kill it inside a trial: one running with an epoch reported
        study = optuna.load_study(study_name="epochpilot", storage=open_storage(url, None))
        running = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
        if any(t.intermediate_values for t in running):
            break
        time.sleep(0.05)  # (a fixed sleep could land between two trials on a loaded machine)
    proc.kill()
    proc.wait()
    before = len(_finished(url))
    assert 2 <= before < 8
    time.sleep(3.5)  # past the grace period (3 heartbeats): the dead worker's trial is stale
    again = _worker(url, 8, heartbeat=1)
    _, err = again.communicate(timeout=240)
    assert again.returncode == 0, err
    study = optuna.load_study(study_name="epochpilot", storage=open_storage(url, None))
    assert len(_finished(url)) >= 8
    failed = study.get_trials(states=(optuna.trial.TrialState.FAIL,))
    assert len(failed) == 1  # the killed trial, marked failed by the heartbeat check ...
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retried) == 1 and retried[0].params == failed[0].params  # ... and run again


@pytest.mark.slow
def test_tune_with_two_spawned_workers(tmp_path, monkeypatch):
    # 0.1 s an epoch: a worker that starts first cannot finish all 6 trials before the other has started
    # (with no delay it sometimes did on a busy machine, and the test saw one pid)
    monkeypatch.setenv("EP_TUNE_DELAY", "0.1")
    study = tune(curve_objective, SPACE, n_trials=6, workers=2, run_dir=tmp_path, pruner="median")
    assert 6 <= len(_finished(f"sqlite:///{tmp_path / 'study.db'}")) <= 7
    assert len({t.user_attrs["pid"] for t in study.trials}) == 2


# -- a config-driven study ------------------------------------------------------------------------------------


def test_config_study_trains_the_job_and_records_each_trial(tmp_path):
    job = tmp_path / "job.toml"
    job.write_text(
        '[data]\nbuiltin = "wine"\n[model]\nhidden = [16]\ndropout = 0.0\n'
        "[train]\nmax_epochs = 4\ndeterministic = false\n"
    )
    space = {
        "lr": ("log", 1e-4, 3e-2),
        "batch_size": ("choice", [32, 64]),
        "model.hidden": ("choice", [[16], [8]]),
    }
    study = tune(
        job,
        space,
        n_trials=5,
        run_dir=tmp_path / "tune",
        pruner=EpochpilotPruner(n_startup_trials=1, min_epochs=2),
    )
    assert (tmp_path / "tune" / "study.db").exists()
    assert len(study.trials) == 5 and study.direction == optuna.study.StudyDirection.MINIMIZE
    for t in study.trials:
        assert t.user_attrs["max_epochs"] == 4
        assert sorted(t.intermediate_values) == list(range(1, len(t.intermediate_values) + 1))
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert t.value == pytest.approx(min(t.intermediate_values.values()))
            assert Path(t.user_attrs["run_dir"], "history.jsonl").exists()
        else:
            assert t.user_attrs["prune_reason"] in (
                "behind_best",
                "patience",
                "forecast",
                "not_finite",
            )
            assert t.user_attrs["prune_message"]


def test_pruning_callback_reports_the_trainer_monitor_and_prunes():
    import numpy as np
    import torch

    from epochpilot.train import fit

    class Always(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return max(trial.intermediate_values, default=0) >= 2

    study = optuna.create_study(pruner=Always())
    trial = study.ask()
    X = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    with pytest.raises(optuna.TrialPruned, match="pruned at epoch 2"):
        fit(
            torch.nn.Linear(3, 2),
            (X, y),
            (X, y),
            max_epochs=5,
            callbacks=[PruningCallback(trial)],
            progress=False,
        )
    assert sorted(trial.storage.get_trial(trial._trial_id).intermediate_values) == [1, 2]
    assert trial.storage.get_trial_user_attrs(trial._trial_id)["prune_reason"] == "Always"


# -- PostgreSQL: the same study code on a real server -------------------------------------------------------


@pytest.mark.slow
def test_two_workers_share_a_study_on_postgresql(postgres_url):  # noqa: F811 - the fixture
    procs = [_worker(postgres_url, 10, delay=0.02) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    done = _finished(postgres_url)
    assert 10 <= len(done) <= 11
    assert len({t.user_attrs["pid"] for t in done}) == 2
    # resume from a third process: counts what the server holds
    study = tune(
        curve_objective,
        SPACE,
        n_trials=len(done) + 2,
        storage=postgres_url,
        heartbeat_s=2,
        resume="auto",
    )
    assert len(study.trials) == len(done) + 2
    assert study.user_attrs["epochpilot_space"] == '{"x": ["float", 0.0, 1.0]}'


def test_config_study_maximises_a_max_monitor_even_without_a_stopper(tmp_path):
    from epochpilot.jobs.spec import spec_from_tables

    job = spec_from_tables(
        {
            "data": {"builtin": "wine"},
            "model": {"hidden": [8]},
            "train": {
                "max_epochs": 3,
                "monitor": "val_accuracy",
                "mode": "max",
                "stopper": "none",
                "deterministic": False,
            },
        }
    )
    study = tune(job, {"lr": ("log", 1e-3, 1e-1)}, n_trials=2, run_dir=tmp_path, pruner="none")
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    for t in study.trials:
        assert t.value == max(t.intermediate_values.values())  # val_accuracy, best by max
        assert 0.0 <= t.value <= 1.0
        assert t.intermediate_values[t.user_attrs["best_epoch"]] == t.value


finite = st.floats(0.01, 10.0, allow_nan=False)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(finite, min_size=1, max_size=15),
    st.lists(finite, min_size=1, max_size=15),
    st.sampled_from(["min", "max"]),
)
def test_a_trial_at_least_as_good_as_the_best_is_never_pruned(mine, theirs, mode):
    sign = 1.0 if mode == "min" else -1.0
    target = min(sign * v for v in theirs)
    # clip the trial's curve so it beats the best trial's final value at every epoch
    curve = {e: sign * min(sign * v, target) for e, v in enumerate(mine, 1)}
    d = judge(curve, mode=mode, target=sign * target, rung=theirs, budget=30, min_epochs=1)
    assert not d.prune


@settings(max_examples=80, deadline=None)
@given(
    st.lists(finite, min_size=3, max_size=12),
    st.floats(-3.0, 3.0),
    st.floats(0.0, 1.0),
    st.floats(0.0, 1.0),
)
def test_a_larger_line_fraction_never_prunes_more(mine, target, fraction, more):
    curve = dict(enumerate(mine, 1))
    kwargs = dict(mode="min", target=target, budget=30, min_epochs=1, probability=0.0)
    if judge(curve, line_fraction=fraction + more, **kwargs).prune:
        assert judge(curve, line_fraction=fraction, **kwargs).prune


@pytest.mark.slow
def test_workers_creating_a_fresh_database_at_once_all_succeed(tmp_path):
    """Schema creation races between workers starting together; the loser retries instead of failing."""
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    code = (
        "import sys, time; from epochpilot.select.tune.storage import open_storage; "
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time())); open_storage(sys.argv[1])"
    )
    start = str(time.time() + 8)  # all import first, then open at the same instant
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, url, start], env=env, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err


def test_a_bad_csv_is_one_data_error_before_the_study_exists(tmp_path):
    """The job's data is read before the study is created: a bad CSV is its one DataError, and no study
    database (nor a failed trial with Optuna's logged traceback) is left behind."""
    from epochpilot.errors import DataError

    (tmp_path / "bad.csv").write_text("a,b,label\n")  # a header and no rows
    job = tmp_path / "job.toml"
    job.write_text('[data]\ncsv = "bad.csv"\ntarget = "label"\n[train]\nmax_epochs = 2\n')
    with pytest.raises(DataError, match="bad.csv") as info:
        tune(job, {"lr": ("log", 1e-3, 1e-1)}, n_trials=2, run_dir=tmp_path / "t")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "t").exists(), "the study was created before the data was checked"


@pytest.mark.parametrize(
    "space, match",
    [
        (
            {"max_epochs": ("int", 1, 100_000_000_000)},
            r"100000000000 is out of range: .* at most max_epochs = 100,000",
        ),
        ({"max_epochs": ("choice", [5, 10**9])}, r"1000000000 is out of range"),
        ({"max_epochs": ("int", 0, 5)}, r"0 is out of range: max_epochs must be >= 1"),
        ({"patience": ("int", -1, 5)}, r"-1 is out of range: patience must be >= 0"),
        ({"lr": ("float", 0.0, 0.1)}, r"0\.0 is out of range: lr must be > 0"),
        ({"batch_size": ("choice", [0, 16])}, r"0 is out of range: batch_size must be >= 1"),
    ],
)
def test_job_spaces_are_range_checked_naming_the_key(space, match):
    """A config-driven space may not ask for values the job refuses, nor for a trial too long to end
    (max_epochs = 1e11 allocated an 81 GiB forecast horizon: MemoryError)."""
    from epochpilot.select.tune.space import job_parameters

    name = next(iter(space))
    with pytest.raises(ValueError, match=rf"^{name} in s\.toml: {match}"):
        parse_space(space, job_parameters(), where="s.toml")
    with pytest.raises(ValueError, match=rf"^space\['{name}'\]: {match}"):
        parse_space(space, job_parameters())
    parse_space(space)  # an objective's own parameters: any range


def test_job_space_limits_are_reachable():
    from epochpilot.select.tune.space import job_parameters

    params = parse_space(
        {
            "max_epochs": ("int", 1, 100_000),
            "patience": ("choice", [0, 3]),
            "warmup": ("float", 0, 0.2),
        },
        job_parameters(),
    )
    assert params["max_epochs"].high == 100_000

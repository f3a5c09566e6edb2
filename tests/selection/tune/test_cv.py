"""``tune(job, space, cv=k)``: k-fold trial values, fold-mean pruning, ``cv_epoch``; the small-validation warning."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math

import optuna
import pytest

from epochpilot.errors import ConfigError
from epochpilot.select.tune.run import tune

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {"lr": ("log", 1e-3, 3e-2)}


def _job(tmp_path, data="wine", extra_data="", train=""):
    path = tmp_path / "job.toml"
    path.write_text(
        f'[data]\nbuiltin = "{data}"\n{extra_data}[model]\nhidden = [16]\ndropout = 0.0\n'
        f"[train]\nmax_epochs = 4\ndeterministic = false\n{train}"
    )
    return path


def _fold_values(trial, monitor="val_loss"):
    """Each fold's per-epoch monitored values, from its history.jsonl."""
    out = []
    for i in range(1, trial.user_attrs["cv_k"] + 1):
        path = f"{trial.user_attrs['run_dir']}/fold-{i}/history.jsonl"
        out.append([json.loads(line)[monitor] for line in open(path)])
    return out


def _fold_bests(trial, monitor="val_loss", mode="min"):
    pick = min if mode == "min" else max
    out = []
    for i in range(1, trial.user_attrs["cv_k"] + 1):
        path = f"{trial.user_attrs['run_dir']}/fold-{i}/history.jsonl"
        rows = [json.loads(line) for line in open(path)]
        out.append(pick(r[monitor] for r in rows if math.isfinite(r[monitor])))
    return out


def test_cv_value_is_the_mean_of_the_fold_bests_and_cv_epoch_is_recorded(tmp_path):
    study = tune(_job(tmp_path), SPACE, n_trials=2, run_dir=tmp_path / "tune", cv=3, pruner="none")
    assert len(study.trials) == 2
    for t in study.trials:
        assert t.state == optuna.trial.TrialState.COMPLETE
        bests = _fold_bests(t)
        assert len(bests) == 3 and t.user_attrs["cv_k"] == 3
        assert t.value == pytest.approx(sum(bests) / 3)
        assert t.user_attrs["cv_fold_best"] == pytest.approx(bests)
        # one report per epoch: the mean of the folds' bests up to it (the last is the trial's value);
        # cv_epoch is the epoch of the best raw fold-mean
        folds = _fold_values(t)
        assert sorted(t.intermediate_values) == [1, 2, 3, 4]
        for e in range(1, 5):
            running = [min(v[:e]) for v in folds]
            assert t.intermediate_values[e] == pytest.approx(sum(running) / 3)
        assert t.intermediate_values[4] == pytest.approx(t.value)
        raw = {e: sum(v[e - 1] for v in folds) / 3 for e in range(1, 5)}
        assert t.user_attrs["cv_epoch"] == min(raw, key=raw.get)
        assert t.user_attrs["cv_epoch_value"] == pytest.approx(min(raw.values()))
        assert t.user_attrs["epochs_run"] == 12


class _PruneAtTwo(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return max(trial.intermediate_values, default=0) >= 2


def test_a_pruned_cv_trial_stops_every_fold_at_the_epoch_of_the_fold_mean(tmp_path):
    study = tune(
        _job(tmp_path), SPACE, n_trials=1, run_dir=tmp_path / "tune", cv=3, pruner=_PruneAtTwo()
    )
    (t,) = study.trials
    assert t.state == optuna.trial.TrialState.PRUNED
    assert sorted(t.intermediate_values) == [1, 2]
    assert t.user_attrs["pruned_epoch"] == 2 and t.user_attrs["prune_reason"] == "_PruneAtTwo"
    rows = []
    for i in (1, 2, 3):  # every fold stopped at epoch 2 (its row 2 is cut with it), none ran to 4
        path = tmp_path / "tune" / "trials" / "trial-0000" / f"fold-{i}" / "history.jsonl"
        lines = path.read_text().splitlines()
        assert 1 <= len(lines) <= 2
        rows.append(json.loads(lines[0]))
    # the value reported at epoch 1 is the mean of the folds' epoch-1 values
    assert t.intermediate_values[1] == pytest.approx(sum(r["val_loss"] for r in rows) / 3)


def test_cv_trials_are_reproducible(tmp_path):
    a = tune(_job(tmp_path), SPACE, n_trials=1, run_dir=tmp_path / "a", cv=3, pruner="none")
    b = tune(_job(tmp_path), SPACE, n_trials=1, run_dir=tmp_path / "b", cv=3, pruner="none")
    assert a.trials[0].intermediate_values == pytest.approx(b.trials[0].intermediate_values)


@pytest.mark.parametrize("cv", [0, 1, -3, 2.5, True])
def test_bad_cv_is_refused_in_one_line_naming_cv(tmp_path, cv):
    with pytest.raises(ConfigError, match=r"^cv=") as info:
        tune(_job(tmp_path), SPACE, n_trials=1, run_dir=tmp_path / "tune", cv=cv)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "tune").exists()


def test_cv_with_a_function_objective_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"cv=3 works with a job"):
        tune(lambda trial, p: 0.0, SPACE, n_trials=1, run_dir=tmp_path / "t", cv=3)


def test_a_study_without_cv_is_not_continued_with_cv(tmp_path):
    job = _job(tmp_path)
    tune(job, SPACE, n_trials=1, run_dir=tmp_path / "tune", pruner="none")
    for resume in ("auto", True):
        with pytest.raises(ConfigError, match=r"no cv, not cv=3") as info:
            tune(
                job,
                SPACE,
                n_trials=2,
                run_dir=tmp_path / "tune",
                pruner="none",
                cv=3,
                resume=resume,
            )
        assert "\n" not in str(info.value)


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if "cannot tell trials apart" in r.getMessage()]


def test_small_validation_split_warns_once_and_offers_cv(tmp_path, caplog):
    # wine with val_fraction 0.1: 18 validation rows, one row moves val_accuracy by 0.056
    job = _job(
        tmp_path,
        extra_data="val_fraction = 0.1\n",
        train='monitor = "val_accuracy"\nmode = "max"\n',
    )
    with caplog.at_level(logging.WARNING, logger="epochpilot"):
        tune(job, SPACE, n_trials=3, run_dir=tmp_path / "tune", pruner="none")
    lines = _warnings(caplog)
    assert len(lines) == 1, lines
    assert "18 rows" in lines[0] and "cv=5" in lines[0] and "\n" not in lines[0]


def test_large_validation_split_does_not_warn(tmp_path, caplog):
    job = _job(tmp_path, data="breast_cancer")  # 114 validation rows, val_loss
    with caplog.at_level(logging.WARNING, logger="epochpilot"):
        tune(job, SPACE, n_trials=2, run_dir=tmp_path / "tune", pruner="none")
    assert _warnings(caplog) == []


def test_warning_fires_when_one_row_is_more_than_the_spread_or_the_loss_is_zero():
    from epochpilot.select.tune.cv import warn_if_undiscriminating

    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.90))
    trial = study.ask()
    # 100 rows: a step of 0.01; spread 0.905 - 0.90 = 0.005 < 0.01
    assert "spread" in warn_if_undiscriminating(trial, 0.905, 100, "val_accuracy", "max")
    assert warn_if_undiscriminating(trial, 0.5, 100, "val_accuracy", "max") is None  # once
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.90))
    assert warn_if_undiscriminating(study.ask(), 0.80, 100, "val_accuracy", "max") is None
    study = optuna.create_study()
    assert "reached" in warn_if_undiscriminating(study.ask(), 1e-5, 500, "val_loss", "min")
    study = optuna.create_study()
    assert warn_if_undiscriminating(study.ask(), 0.2, 500, "val_loss", "min") is None


def test_cli_tune_cv_writes_cv_epoch_to_best_json(tmp_path, monkeypatch):
    from epochpilot.cli.main import main

    monkeypatch.chdir(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    args = ["tune", "--builtin", "wine", "--max-epochs", "3", "--no-tensorboard", "--trials", "2"]
    args += ["--space", "lr=log:1e-3:3e-2", "--cv", "3", "--run-dir", "runs/t"]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    assert code == 0, err.getvalue()
    best = json.loads((tmp_path / "runs" / "t" / "best.json").read_text())
    assert 1 <= best["cv_epoch"] <= 3 and best["user_attrs"]["cv_k"] == 3
    assert "refit for" in out.getvalue()


def test_cli_refuses_cv_below_two_naming_the_flag(tmp_path, monkeypatch):
    from epochpilot.cli.main import main

    monkeypatch.chdir(tmp_path)
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(["tune", "--builtin", "wine", "--trials", "1", "--cv", "1"])
    assert code == 2
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and "--cv 1" in lines[0]


def test_cv_works_with_the_epochpilot_pruner_and_survives_pickling(tmp_path):
    import pickle

    from epochpilot.jobs.spec import load_spec
    from epochpilot.select.tune.cv import KFoldJobObjective
    from epochpilot.select.tune.run import EpochpilotPruner

    objective = KFoldJobObjective(load_spec(_job(tmp_path)), tmp_path / "x", 3)
    objective.prepare()
    copy = pickle.loads(pickle.dumps(objective))  # what a worker process gets: no data, same folds
    assert copy._data is None and copy.k == 3
    study = tune(
        _job(tmp_path),
        SPACE,
        n_trials=3,
        run_dir=tmp_path / "tune",
        cv=3,
        pruner=EpochpilotPruner(n_startup_trials=1, min_epochs=2),
    )
    assert len(study.trials) == 3
    for t in study.trials:
        assert t.user_attrs["max_epochs"] == 4
        steps = sorted(t.intermediate_values)
        assert steps == list(range(1, len(steps) + 1))
        if t.state == optuna.trial.TrialState.PRUNED:
            assert "mean over folds" in t.user_attrs["prune_message"]


def test_a_failing_fold_fails_the_trial_without_hanging(tmp_path, monkeypatch):
    import epochpilot.jobs.pipeline as pipeline

    real, calls = pipeline.job_model, []

    def flaky(spec, pre):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("fold 2 broke")
        return real(spec, pre)

    monkeypatch.setattr(pipeline, "job_model", flaky)
    with pytest.raises(RuntimeError, match="fold 2 broke"):
        tune(_job(tmp_path), SPACE, n_trials=1, run_dir=tmp_path / "tune", cv=3, pruner="none")


def test_a_job_study_recorded_before_cv_counts_as_one_without_cv():
    from epochpilot.select.tune.study import differences

    old = {"direction": "minimize", "job": {}}
    assert differences(old, {**old, "cv": None}) == []
    assert differences(old, {**old, "cv": 3}) == [("cv", "no cv, not cv=3")]


@pytest.mark.parametrize("cv", [None, 3])
def test_trials_record_the_lr_of_each_epoch_for_the_pruner(tmp_path, cv):
    """The warmup's rise is recorded (PruningCallback, or fold 1 of a k-fold trial), so the epochpilot pruner
    judges the trial only once its lr has reached its regime; the decay is not written epoch by epoch."""
    job = _job(tmp_path, train='schedule = "warmup(cosine)"\nwarmup = 0.5\n')
    study = tune(job, SPACE, n_trials=1, run_dir=tmp_path / "tune", cv=cv, pruner="none")
    lrs = study.trials[0].user_attrs["epochpilot_lrs"]
    assert lrs[0] < lrs[1] > lrs[2] and len(lrs) == 3  # the rise, the peak, the first decayed epoch

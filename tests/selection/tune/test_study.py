"""Honest study handling: a second ``tune()`` into a study is refused (one line naming the differences and the
fixes) unless ``resume``/``overwrite`` says what to do; the returned study reports the pruner and sampler that
ran; list choices come back as lists in ``best_params`` and ``best.json``."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import optuna
import pytest

from epochpilot.errors import ConfigError
from epochpilot.select.tune.run import EpochpilotPruner, parse_space, real_params, tune
from epochpilot.select.tune.space import space_key

sys.path.insert(0, str(Path(__file__).parent))
from _tune_worker import SPACE, curve_objective  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)
TS = optuna.trial.TrialState
FIXES = (
    "pass resume=True to continue it anyway, use another study_name, or pass overwrite=True to start "
    "it over (deleting its 2 trials)"
)


def other_objective(trial: optuna.Trial, params: dict) -> float:
    """Another objective (a name the study records)."""
    return curve_objective(trial, params)


def _trials(run_dir: Path) -> list[optuna.trial.FrozenTrial]:
    url = f"sqlite:///{run_dir / 'study.db'}"
    return optuna.load_study(study_name="epochpilot", storage=url).trials


def _first(run_dir: Path, **kwargs) -> optuna.Study:
    return tune(curve_objective, SPACE, n_trials=2, run_dir=run_dir, pruner="none", **kwargs)


@pytest.mark.parametrize(
    "change, named",
    [
        ({"pruner": "median"}, "(pruner none, not median)"),
        ({"pruner": optuna.pruners.HyperbandPruner()}, "(pruner none, not hyperband)"),
        ({"sampler": "random"}, "(sampler tpe, not random)"),
        ({"seed": 1}, "(sampler seed 0, not 1)"),
        ({"objective": other_objective}, "(objective curve_objective, not other_objective)"),
        ({"pruner": "median", "seed": 7}, "(pruner none, not median; sampler seed 0, not 7)"),
    ],
)
def test_a_second_tune_with_other_settings_is_refused_naming_the_difference(
    tmp_path, change, named
):
    """The issue: comparing pruners the README's way silently resumed the first study and ran nothing."""
    _first(tmp_path)
    change = dict(change)
    objective = change.pop("objective", curve_objective)
    kwargs = {"n_trials": 4, "run_dir": tmp_path, "pruner": "none", **change}
    for resume in (False, "auto"):
        with pytest.raises(ConfigError) as info:
            tune(objective, SPACE, resume=resume, **kwargs)
        message = str(info.value)
        assert "\n" not in message and named in message, message
        assert message.startswith(
            f"study 'epochpilot' in sqlite:///{tmp_path}/study.db holds 2 trials"
        )
        assert "(2 finished) of other settings" in message and message.endswith(FIXES)
    assert len(_trials(tmp_path)) == 2  # nothing ran


def test_another_pruner_argument_is_named(tmp_path):
    tune(
        curve_objective,
        SPACE,
        n_trials=2,
        run_dir=tmp_path,
        pruner=EpochpilotPruner(n_startup_trials=3),
    )
    with pytest.raises(ConfigError, match=r"\(pruner epochpilot with n_startup_trials=3, not 1\)"):
        tune(curve_objective, SPACE, n_trials=3, run_dir=tmp_path, resume="auto")


def test_same_settings_are_refused_without_resume_and_auto_continues(tmp_path):
    """Decision: a study that holds trials is never continued by accident, even with the same settings
    (as ``fit`` treats a run directory); ``resume='auto'`` continues it, so re-running a script needs it."""
    _first(tmp_path)
    with pytest.raises(ConfigError) as info:
        _first(tmp_path)
    assert str(info.value).endswith(
        "holds 2 trials (2 finished) of these settings: pass resume='auto' to continue it, use another "
        "study_name, or pass overwrite=True to start it over (deleting its 2 trials)"
    )
    study = tune(curve_objective, SPACE, n_trials=3, run_dir=tmp_path, pruner="none", resume="auto")
    assert len(study.trials) == 3
    study = tune(curve_objective, SPACE, n_trials=4, run_dir=tmp_path, pruner="none", resume=True)
    assert len(study.trials) == 4


def test_resume_true_continues_other_settings_with_one_warning(tmp_path, caplog):
    _first(tmp_path)
    with caplog.at_level(logging.WARNING, logger="epochpilot"):
        study = tune(
            curve_objective, SPACE, n_trials=4, run_dir=tmp_path, pruner="median", resume=True
        )
    assert len(study.trials) == 4 and isinstance(study.pruner, optuna.pruners.MedianPruner)
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warned == [
        f"warning: continuing study 'epochpilot' in sqlite:///{tmp_path}/study.db with other settings "
        "(pruner none, not median)"
    ]
    assert study.user_attrs["epochpilot_settings"]["pruner"]["name"] == "median"  # what ran last
    tune(curve_objective, SPACE, n_trials=5, run_dir=tmp_path, pruner="median", resume="auto")


def test_overwrite_starts_over_and_contradictions_are_refused(tmp_path):
    _first(tmp_path)
    study = tune(
        curve_objective, SPACE, n_trials=1, run_dir=tmp_path, pruner="median", overwrite=True
    )
    assert len(study.trials) == 1 and len(_trials(tmp_path)) == 1
    with pytest.raises(ConfigError, match=r"overwrite=True and resume='auto' contradict"):
        _first(tmp_path, overwrite=True, resume="auto")
    with pytest.raises(ConfigError, match=r"resume='yes': use False, 'auto' or True"):
        _first(tmp_path, resume="yes")
    with pytest.raises(ConfigError, match=r"resume=1: use False"):
        _first(tmp_path, resume=1)


def test_resume_true_without_a_study_is_refused_and_writes_nothing(tmp_path):
    with pytest.raises(
        ConfigError, match=r"resume=True but there is no study in .*: use resume='auto'"
    ):
        _first(tmp_path / "new", resume=True)
    assert not (tmp_path / "new").exists()
    url = f"sqlite:///{tmp_path / 'other.db'}"
    with pytest.raises(
        ConfigError, match=r"resume=True but there is no study 'epochpilot' in sqlite"
    ):
        tune(curve_objective, SPACE, n_trials=1, storage=url, resume=True)
    study = tune(curve_objective, SPACE, n_trials=1, storage=url, resume="auto")  # creates it
    assert len(study.trials) == 1


def test_a_study_made_with_optuna_holding_only_waiting_trials_is_adopted(tmp_path):
    """``optuna create-study`` (or create_study + enqueue_trial) beforehand: tune() runs it as it is."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    made = optuna.create_study(storage=url, study_name="made")
    made.enqueue_trial({"x": 0.3})
    study = tune(curve_objective, SPACE, n_trials=2, storage=url, study_name="made")
    assert len(study.trials) == 2 and study.trials[0].params == {"x": 0.3}


def test_a_study_from_before_settings_were_recorded_is_checked_on_what_it_recorded(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    old = optuna.create_study(storage=url, study_name="epochpilot")
    old.set_user_attr("epochpilot_space", space_key(parse_space(SPACE)))
    old.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=1)
    with pytest.raises(ConfigError, match=r"holds 1 trials \(1 finished\) of these settings"):
        tune(curve_objective, SPACE, n_trials=2, storage=url)
    with pytest.raises(ConfigError, match=r"different search space \(x \('float', 0.0, 1.0\), not"):
        tune(curve_objective, {"x": ("float", 0.0, 2.0)}, n_trials=2, storage=url, resume=True)
    study = tune(curve_objective, SPACE, n_trials=2, storage=url, resume="auto")
    assert len(study.trials) == 2 and "epochpilot_settings" in study.user_attrs


def test_a_job_setting_that_changes_the_trials_is_named(tmp_path):
    from epochpilot.jobs.spec import spec_from_tables

    def job(max_epochs: int):
        return spec_from_tables(
            {
                "data": {"builtin": "wine"},
                "model": {"hidden": [8]},
                "train": {"max_epochs": max_epochs, "deterministic": False, "device": "cpu"},
            }
        )

    space = {"lr": ("log", 1e-3, 1e-1)}
    study = tune(job(2), space, n_trials=1, run_dir=tmp_path, pruner="none")
    settings = study.user_attrs["epochpilot_settings"]
    assert settings["objective"] == "job" and settings["job"]["[train] max_epochs"] == 2
    assert "[train] lr" not in settings["job"]  # searched: differs per trial
    assert "[train] device" not in settings["job"]  # where it trains, not what
    with pytest.raises(ConfigError, match=r"of other settings \(\[train\] max_epochs 2, not 3\)"):
        tune(job(3), space, n_trials=2, run_dir=tmp_path, pruner="none", resume="auto")


def test_the_returned_study_reports_the_pruner_and_sampler_that_ran(tmp_path):
    pruner = EpochpilotPruner(n_startup_trials=1)
    sampler = optuna.samplers.RandomSampler(seed=3)
    study = tune(
        curve_objective, SPACE, n_trials=2, run_dir=tmp_path / "a", pruner=pruner, sampler=sampler
    )
    assert study.pruner is pruner and study.sampler is sampler
    study = tune(
        curve_objective,
        SPACE,
        n_trials=2,
        run_dir=tmp_path / "b",
        pruner="hyperband",
        sampler="random",
    )
    assert isinstance(study.pruner, optuna.pruners.HyperbandPruner)
    assert isinstance(study.sampler, optuna.samplers.RandomSampler)


def list_objective(trial: optuna.Trial, params: dict) -> float:
    """Records the type the objective was given; prefers the wider layer list."""
    trial.set_user_attr("hidden_type", type(params["hidden"]).__name__)
    return params["x"] - len(params["hidden"])


def test_list_choices_come_back_as_lists(tmp_path):
    space = {"hidden": ("choice", [[16], [32, 16]]), "x": ("float", 0.0, 1.0)}
    study = tune(list_objective, space, n_trials=4, run_dir=tmp_path, sampler="random", seed=1)
    assert {t.user_attrs["hidden_type"] for t in study.trials} == {"list"}
    assert isinstance(study.best_params["hidden"], list)
    assert study.best_params["hidden"] in ([16], [32, 16])
    assert study.best_trial.params == study.best_params
    assert json.loads(json.dumps(study.best_params)) == study.best_params  # a JSON round trip
    # Optuna's own records keep the text it stores; real_params decodes them from the study alone
    stored = optuna.load_study(study_name="epochpilot", storage=f"sqlite:///{tmp_path}/study.db")
    assert isinstance(stored.best_params["hidden"], str)
    decoded = real_params(stored.best_params, stored.user_attrs["epochpilot_space"])
    assert decoded == study.best_params


def test_cli_best_json_holds_lists(tmp_path, monkeypatch):
    from epochpilot.cli import main

    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "tune",
            "--builtin",
            "wine",
            "--max-epochs",
            "2",
            "--no-tensorboard",
            "--trials",
            "2",
            "--space",
            "model.hidden=choice:[[8],[16,8]]",
            "--run-dir",
            "runs/t",
        ]
    )
    assert code == 0
    best = json.loads((tmp_path / "runs" / "t" / "best.json").read_text())
    assert best["params"]["model.hidden"] in ([8], [16, 8])


def test_a_list_choice_and_its_json_text_are_one_option():
    with pytest.raises(ValueError, match=r"space\['h'\]: option '\[1, 2\]' is given twice"):
        parse_space({"h": ("choice", [[1, 2], "[1, 2]"])})
    parse_space({"h": ("choice", ["[1, 2]", [1, 3], 1, True])})  # distinct options

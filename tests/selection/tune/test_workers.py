"""A worker process that dies costs one trial, not the study: ``tune(workers=2)`` where one worker SIGKILLs
itself mid-trial (what an out-of-memory kill does) on SQLite, on PostgreSQL and through ``epochpilot tune``;
a bug in the objective still surfaces as its own exception."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from epochpilot.errors import EpochpilotError
from epochpilot.select.tune.run import tune

sys.path.insert(0, str(Path(__file__).parent))
from _postgres import postgres_url  # noqa: E402, F401 - a fixture
from _tune_worker import SPACE, broken_objective, curve_objective  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
TS = optuna.trial.TrialState


def _kill_one_worker(monkeypatch, caplog, capfd, **where) -> optuna.Study:
    """A two-worker study of 8 trials whose trial 1 kills its worker at epoch 3 (0.1 s an epoch)."""
    monkeypatch.setenv("EP_TUNE_KILL_TRIAL", "1")
    monkeypatch.setenv("EP_TUNE_DELAY", "0.1")
    with caplog.at_level(logging.WARNING, logger="epochpilot"):
        study = tune(curve_objective, SPACE, n_trials=8, workers=2, pruner="none", **where)
    warned = [r.getMessage() for r in caplog.records if "tune worker" in r.getMessage()]
    assert len(warned) == 1, warned  # one warning line
    assert (
        "was killed by SIGKILL (out of memory?) in trial 1: marked failed, retried as trial"
        in warned[0]
    )
    assert "worker 3 takes its place" in warned[0]
    err = capfd.readouterr().err
    assert "Traceback" not in err and "BrokenProcessPool" not in err
    return study


def _check_one_trial_lost(study: optuna.Study) -> None:
    trials = study.trials
    complete = [t for t in trials if t.state == TS.COMPLETE]
    failed = [t for t in trials if t.state == TS.FAIL]
    assert 8 <= len(complete) <= 9  # n_trials reached (one more may finish while the last runs)
    assert [t.number for t in failed] == [1]  # the killed trial, marked failed ...
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == 1]
    assert len(retry) == 1 and retry[0].state == TS.COMPLETE  # ... and run again, once, to the end
    assert retry[0].params == failed[0].params and retry[0].system_attrs["retry_history"] == [1]
    assert not [t for t in trials if t.state in (TS.RUNNING, TS.WAITING)]
    workers = {t.user_attrs["worker"] for t in complete}
    assert failed[0].user_attrs["worker"] not in workers  # the dead worker finished nothing after


@pytest.mark.slow
def test_a_killed_worker_costs_one_trial_on_sqlite(tmp_path, monkeypatch, caplog, capfd):
    study = _kill_one_worker(monkeypatch, caplog, capfd, run_dir=tmp_path)
    _check_one_trial_lost(study)
    # the replacement worker ran trials too (the survivor alone needs ~6 s for the 7 left)
    assert len({t.user_attrs["worker"] for t in study.trials}) == 3


@pytest.mark.slow
def test_a_killed_worker_costs_one_trial_on_postgresql(
    postgres_url,  # noqa: F811 - the fixture
    monkeypatch,
    caplog,
    capfd,
):
    study = _kill_one_worker(
        monkeypatch, caplog, capfd, storage=postgres_url, study_name="killed-worker"
    )
    _check_one_trial_lost(study)


@pytest.mark.slow
def test_workers_that_always_die_stop_with_one_error(tmp_path, monkeypatch, caplog):
    """Every trial kills its worker: after workers + 1 deaths in a row no new worker starts and tune raises
    one error naming what happened, instead of starting workers for ever."""
    monkeypatch.setenv("EP_TUNE_KILL_TRIAL", "all")
    with caplog.at_level(logging.WARNING, logger="epochpilot"):
        with pytest.raises(EpochpilotError, match=r"3 tune worker processes died in a row") as info:
            tune(curve_objective, SPACE, n_trials=4, workers=2, run_dir=tmp_path, pruner="none")
    assert "resume='auto'" in str(info.value) and "\n" not in str(info.value)
    warned = [r.getMessage() for r in caplog.records if "tune worker" in r.getMessage()]
    # 2 workers and 2 replacements, each killed by its first trial; the third death in a row stops replacing
    assert len(warned) == 4
    assert sum("takes its place" in w for w in warned[:2]) == 2
    assert all("no worker replaces it" in w for w in warned[2:])
    study = optuna.load_study(study_name="epochpilot", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert not [t for t in study.trials if t.state == TS.RUNNING]


@pytest.mark.slow
def test_an_objective_that_raises_in_a_worker_raises_here(tmp_path):
    """A bug is not a dead worker: its own exception comes back (with the worker's traceback as its cause)
    and no worker is started in its place."""
    with pytest.raises(ZeroDivisionError, match="broken objective in trial") as info:
        tune(broken_objective, SPACE, n_trials=3, workers=2, run_dir=tmp_path)
    assert "broken_objective" in str(info.value.__cause__)


FACTORY = '''
import os
import signal
from pathlib import Path

import torch

MARK = Path(__file__).with_name("killed")


class Model(torch.nn.Module):
    """An MLP whose fifth forward pass SIGKILLs its process, once for the whole study (a marker file)."""

    def __init__(self, n_features, n_outputs):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(n_features, 8), torch.nn.ReLU(), torch.nn.Linear(8, n_outputs)
        )
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls == 5:
            try:
                fd = os.open(MARK, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        return self.net(x)


def make(n_features, n_outputs):
    return Model(n_features, n_outputs)
'''


@pytest.mark.slow
def test_cli_tune_with_a_killed_worker_ends_with_exit_0(tmp_path):
    (tmp_path / "oom_model.py").write_text(FACTORY)
    (tmp_path / "job.toml").write_text(
        '[data]\nbuiltin = "wine"\n[model]\nfactory = "oom_model:make"\n'
        "[train]\nmax_epochs = 3\ndeterministic = false\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "epochpilot",
            "tune",
            "job.toml",
            "--trials",
            "2",
            "--workers",
            "2",
            "--pruner",
            "none",
            "--space",
            "lr=log:1e-3:1e-1",
            "--run-dir",
            "runs/t",
            "--no-tensorboard",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "killed").exists()  # a worker did die
    assert "Traceback" not in proc.stderr and "BrokenProcessPool" not in proc.stderr
    warned = [line for line in proc.stderr.splitlines() if "tune worker" in line]
    assert len(warned) == 1 and "SIGKILL" in warned[0], proc.stderr
    assert "1 fail" in proc.stdout  # the killed trial; its retry completed:
    assert "(2 complete, 1 fail)" in proc.stdout or "(3 complete, 1 fail)" in proc.stdout


def test_a_worker_error_is_rebuilt_from_plain_strings_never_unpickled():
    """The parent rebuilds a worker's exception from (module, class, message) strings, only for built-in and
    epochpilot classes; any other class comes back as one EpochpilotError line (nothing is imported or
    unpickled from a message)."""
    from epochpilot.errors import ConfigError
    from epochpilot.select.tune.workers import _rebuild

    assert isinstance(_rebuild(("builtins", "ZeroDivisionError", "x")), ZeroDivisionError)
    again = _rebuild(("epochpilot.errors", "ConfigError", "bad lr"))
    assert isinstance(again, ConfigError) and str(again) == "bad lr"
    assert _rebuild(("os", "system", "echo pwned")) is None
    assert _rebuild(("mypkg.errors", "MyError", "x")) is None
    assert _rebuild(("builtins", "print", "x")) is None  # not an exception class
    assert _rebuild(None) is None and _rebuild(("builtins", "ValueError")) is None

"""A fast synthetic objective for the tune tests, run in worker subprocesses: ``python _tune_worker.py ARGS``.

The 'training' curve of a trial with parameter x is ``(x - 0.3)**2 + 1 / epoch``; each epoch sleeps ``delay``
seconds so a test can kill a worker mid-study. With ``EP_TUNE_KILL_TRIAL=N`` the process running trial N
SIGKILLs itself at epoch 3 (what an out-of-memory kill does); the retry of trial N has another number, so it
runs to the end (``all``: every trial kills its process).
"""

from __future__ import annotations

import os
import signal
import sys
import time

import optuna


def curve_objective(trial: optuna.Trial, params: dict) -> float:
    """Report a synthetic validation curve per epoch, pruning when asked; the value is its best."""
    delay = float(os.environ.get("EP_TUNE_DELAY", "0"))
    kill = os.environ.get("EP_TUNE_KILL_TRIAL")
    trial.set_user_attr("pid", os.getpid())
    trial.set_user_attr("max_epochs", 8)
    best = float("inf")
    for epoch in range(1, 9):
        time.sleep(delay)
        if kill is not None and epoch == 3 and kill in ("all", str(trial.number)):
            os.kill(os.getpid(), signal.SIGKILL)
        value = (params["x"] - 0.3) ** 2 + 1.0 / epoch
        best = min(best, value)
        trial.report(value, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return best


def broken_objective(trial: optuna.Trial, params: dict) -> float:
    """An objective with a bug: raises at once."""
    raise ZeroDivisionError(f"broken objective in trial {trial.number}")


SPACE = {"x": ("float", 0.0, 1.0)}

if __name__ == "__main__":
    from epochpilot.select.tune.run import tune

    storage, n_trials, heartbeat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # every process runs the same command on one study: the first creates it, the others join it
    tune(
        curve_objective,
        SPACE,
        n_trials=n_trials,
        storage=storage,
        heartbeat_s=heartbeat,
        seed=None,
        resume="auto",
    )

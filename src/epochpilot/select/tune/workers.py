"""Running a study's trials for ``epochpilot.select.tune.run``: in this process, or in ``workers`` spawned processes that
share the study, where a worker that dies costs one trial, not the study.

A worker killed mid-trial (SIGKILL: what an out-of-memory kill does; a crash in native code) is noticed at once:
its running trial is marked FAIL and queued again once with the same parameters (the semantics of Optuna's
``RetryHeartbeatStaleTrialCallback(max_retry=1)``: the new trial's system attributes ``failed_trial`` and
``retry_history`` name the one it repeats), a new worker takes its place, and one warning line says so. The
other workers carry on. Each trial records the worker that runs it (user attribute ``worker``,
``host:pid``). This module imports no torch: a worker whose objective needs none starts in about a second.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from typing import Any

import optuna

from epochpilot.errors import EpochpilotError
from epochpilot.select.tune.space import Param
from epochpilot.select.tune.storage import open_storage, retry_once
from epochpilot.select.tune.study import make_pruner, make_sampler

__all__ = ["FINISHED", "WORKER_ATTR", "optimize", "run_workers"]

log = logging.getLogger("epochpilot")

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
#: the trial user attribute naming the worker process that runs it, "host:pid"
WORKER_ATTR = "worker"


def finished(study: optuna.Study) -> int:
    """How many trials of the study have finished (completed or pruned)."""
    return len(study.get_trials(deepcopy=False, states=FINISHED))


class Bound:
    """``objective(trial, params)`` as an Optuna objective (picklable when ``objective`` is)."""

    def __init__(self, objective: Callable[..., float], params: Mapping[str, Param]) -> None:
        self.objective = objective
        self.params = dict(params)

    def __call__(self, trial: optuna.Trial) -> float:
        values = {name: p.suggest(trial) for name, p in self.params.items()}
        return self.objective(trial, values)


class Tagged:
    """An objective that first records, on its trial, the worker process running it."""

    def __init__(self, objective: Callable[[optuna.Trial], float]) -> None:
        self.objective = objective
        self.tag = worker_tag(os.getpid())

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr(WORKER_ATTR, self.tag)
        return self.objective(trial)


def worker_tag(pid: int) -> str:
    """``host:pid`` of a worker process on this machine."""
    return f"{socket.gethostname()}:{pid}"


def optimize(job: dict[str, Any], study: optuna.Study | None = None) -> int:
    """Run trials of the study until ``job["n_trials"]`` have finished; returns how many have.

    ``study`` is the study to run in this process; None (a worker) loads it from ``job["storage"]`` with a
    pruner and sampler made from ``job["pruner"]`` and ``job["sampler"]`` / ``job["seed"]``.
    """
    threads = job.get("threads")
    if threads:
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
        else:  # read by torch's thread pools when the objective imports it
            os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    if study is None:
        if job.get("verbosity") is not None:  # Optuna's logging as set in the parent process
            optuna.logging.set_verbosity(job["verbosity"])
        study = optuna.load_study(
            study_name=job["study_name"],
            storage=open_storage(job["storage"], job["heartbeat_s"]),
            sampler=make_sampler(job["sampler"], job["seed"]),
            pruner=make_pruner(job["pruner"]),
        )
    objective = job["objective"]
    if job["params"] is not None:
        objective = Bound(objective, job["params"])
    if job.get("tag"):
        objective = Tagged(objective)
    left = job["n_trials"] - finished(study)
    if left > 0:
        study.optimize(
            objective,
            n_trials=left,
            timeout=job["timeout"],
            callbacks=[optuna.study.MaxTrialsCallback(job["n_trials"], states=FINISHED)],
            catch=job["catch"],
        )
    return finished(study)


def _worker_main(job: dict[str, Any], conn: Connection) -> None:
    """A worker process: run trials, then send ("done", n) or ("error", (module, class, message), text,
    traceback): plain strings, so the parent rebuilds the exception without unpickling an object."""
    try:
        done = optimize(job)
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
        text = f"{type(exc).__name__}: {exc}"
        kind = (type(exc).__module__, type(exc).__qualname__, str(exc))
        conn.send(("error", kind, text, traceback.format_exc()))
        conn.close()
        sys.exit(1)
    conn.send(("done", done))
    conn.close()


def _rebuild(kind: Any) -> BaseException | None:
    """The worker's exception again, when its class is a built-in one or epochpilot's (code this process
    already trusts; a class named by a message is never imported from elsewhere), else None."""
    import builtins
    import importlib

    if not (isinstance(kind, tuple) and len(kind) == 3 and all(isinstance(k, str) for k in kind)):
        return None
    module, name, message = kind
    if module == "builtins":
        cls = getattr(builtins, name, None)
    elif module == "epochpilot" or module.startswith("epochpilot."):
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            return None
    else:
        return None
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        return None
    try:
        return cls(message)
    except Exception:  # noqa: BLE001 - a class whose constructor takes other arguments
        return None


class _RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker process (its ``__cause__``)."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'


@dataclass
class _Worker:
    index: int
    process: Any
    conn: Connection
    message: tuple[Any, ...] | None = None
    open: bool = True
    tag: str = field(init=False, default="")

    def read(self) -> None:
        """Take the worker's message if it has sent it (never blocks)."""
        try:
            while self.open and self.conn.poll():
                self.message = self.conn.recv()
        except (EOFError, OSError):
            self.open = False
        except Exception:  # noqa: BLE001 - a message that cannot be unpickled
            self.message = ("error", None, "a worker's error could not be read back", "")
            self.open = False


def _how(exitcode: int | None) -> str:
    if exitcode is None:
        return "stopped"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"was killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    return f"exited with code {exitcode} without a word"


def fail_trials_of(study: optuna.Study, tag: str) -> list[tuple[int, int | None]]:
    """Mark FAIL the running trials of the dead worker ``tag`` and queue each again once (Optuna's
    ``RetryHeartbeatStaleTrialCallback(max_retry=1)``); returns (trial, its retry or None) pairs."""
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    out = []
    for trial in running:
        if trial.user_attrs.get(WORKER_ATTR) != tag:
            continue
        try:
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # finished meanwhile: another process's heartbeat check failed (and retried) it
        failed = next(t for t in study.get_trials(deepcopy=True) if t.number == trial.number)
        retry_once()(study, failed)
        waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
        retry = [
            t.number
            for t in waiting
            if (t.system_attrs.get("retry_history") or [None])[-1] == trial.number
        ]
        out.append((trial.number, retry[0] if retry else None))
    return out


def _lost(failed: list[tuple[int, int | None]]) -> str:
    if not failed:
        return "between trials"
    parts = []
    for number, retry in failed:
        again = (
            f"retried as trial {retry}"
            if retry is not None
            else "not retried again (a retry already)"
        )
        parts.append(f"in trial {number}: marked failed, {again}")
    return "; ".join(parts)


def run_workers(study: optuna.Study, job: dict[str, Any], workers: int, seed: int | None) -> None:
    """Run the study in ``workers`` spawned processes until ``job["n_trials"]`` trials have finished.

    A worker that dies costs its running trial (marked FAIL at once and retried once) and is replaced; one
    warning line says so. After ``workers + 1`` deaths in a row with no trial finishing in between, no more
    workers are started and an :class:`~epochpilot.errors.EpochpilotError` is raised once the others end. An
    exception raised in a worker is re-raised here once every worker has ended.
    """
    ctx = get_context("spawn")
    deadline = None if job["timeout"] is None else time.monotonic() + job["timeout"]
    started = 0

    def start() -> _Worker:
        nonlocal started
        started += 1
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        wjob = dict(
            job, seed=None if seed is None else seed + started - 1, tag=True, timeout=timeout
        )
        reader, writer = ctx.Pipe(duplex=False)
        process = ctx.Process(
            target=_worker_main, args=(wjob, writer), name=f"tune-worker-{started}"
        )
        process.start()
        writer.close()
        worker = _Worker(started, process, reader)
        worker.tag = worker_tag(process.pid)
        return worker

    running = [start() for _ in range(workers)]
    errors: list[tuple[Any, ...]] = []
    in_a_row, seen, gave_up = 0, finished(study), ""
    try:
        while running:
            wait([w.process.sentinel for w in running] + [w.conn for w in running if w.open])
            for w in list(running):
                w.read()
                if w.process.is_alive():
                    continue
                w.process.join()
                w.read()
                running.remove(w)
                w.conn.close()
                if w.message and w.message[0] == "done":
                    continue
                if w.message and w.message[0] == "error":
                    errors.append(w.message)
                    continue
                failed = fail_trials_of(study, w.tag)
                now = finished(study)
                in_a_row = 1 if now > seen else in_a_row + 1
                seen = now
                late = deadline is not None and time.monotonic() >= deadline
                if in_a_row > workers and not gave_up:
                    gave_up = (
                        f"{in_a_row} tune worker processes died in a row with no trial finishing "
                        f"(the last {_how(w.process.exitcode)})"
                    )
                if gave_up or late or now >= job["n_trials"]:
                    instead = "no worker replaces it"
                else:
                    new = start()
                    running.append(new)
                    instead = f"worker {new.index} takes its place"
                log.warning(
                    "warning: tune worker %d (pid %d) %s %s; %s",
                    w.index,
                    w.process.pid,
                    _how(w.process.exitcode),
                    _lost(failed),
                    instead,
                )
    except BaseException:
        _stop(study, running)
        raise
    if errors:
        _, kind, text, tb = errors[0]
        exc = _rebuild(kind) or EpochpilotError(f"a tune worker failed: {text}")
        exc.__cause__ = _RemoteTraceback(tb)
        raise exc
    if gave_up:
        raise EpochpilotError(
            f"{gave_up}; the study keeps its {finished(study)} finished trials: find what kills them "
            "(memory?), then run tune again with resume='auto' (epochpilot tune: --resume)"
        )


def _stop(study: optuna.Study, running: list[_Worker]) -> None:
    """End the workers (interrupted: they had the same Ctrl-C) and fail their running trials, each queued
    again once, so that a resumed study runs them."""
    for w in running:
        w.process.join(timeout=3)
    for w in running:
        if w.process.is_alive():
            w.process.terminate()
            w.process.join(timeout=5)
        if w.process.is_alive():
            w.process.kill()
            w.process.join()
        w.conn.close()
        try:
            fail_trials_of(study, w.tag)
        except Exception:  # noqa: BLE001 - the heartbeat check or a resume will fail them instead
            pass

"""The k-fold objective of ``tune(job, space, cv=k)`` and the warning that the validation split is too small.

Each trial trains the job's model on k folds of its training + validation rows (the test share stays out;
scaling is fitted once on those rows, as ``epochpilot cv`` does) and its value is the mean over folds of each
fold's best monitored value. The folds train **epoch-synchronously**: one thread per fold, a baton passed
after each epoch so exactly one fold runs at a time (same results every run), and after every fold has done
epoch e the mean over folds of each fold's best value up to e (a fold that stopped early keeps its best) is
reported to Optuna at step e: the value the trial would have if it ended there; its last report is the
trial's value. So the pruner sees one curve per trial, of the quantity the study optimises, on the trial's
own epoch axis (warmup and budget as without cv), and a pruned trial stops all its folds at once. (The mean
of the raw epoch-e values jumps when a fold stops early and leaves it; the running bests do not.) ``cv_epoch`` (the epoch of the best fold-mean, the one
to refit for) is recorded as a trial attribute.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna

from epochpilot.errors import ConfigError

__all__ = ["KFoldJobObjective", "check_cv", "warn_if_undiscriminating"]

log = logging.getLogger("epochpilot")

#: the study attribute that says the small-validation warning was given (once per study)
WARNED_ATTR = "epochpilot_small_validation_warned"
#: a validation split this small moves accuracy by 5 points per row
MIN_VAL_ROWS = 20
#: a loss at or under this has nothing left to separate trials with
ZERO_LOSS = 1e-3


def check_cv(cv: Any) -> int | None:
    """``cv`` as given (None or an int >= 2); a one-line ConfigError naming ``cv`` otherwise."""
    if cv is None:
        return None
    if isinstance(cv, bool) or not isinstance(cv, int) or cv < 2:
        raise ConfigError(
            f"cv={cv!r}: k-fold tuning needs an int >= 2 folds (e.g. cv=5), or cv=None for the validation split"
        )
    return cv


# -- the warning ------------------------------------------------------------------------------------------


def _cv_hint() -> str:
    from epochpilot.train.wording import words

    return "tune(..., cv=5)" if words().python else "--cv 5"


def warn_if_undiscriminating(
    trial: optuna.Trial, value: float, n_val: int, monitor: str, mode: str
) -> str | None:
    """Log (once per study) and return one warning line when the validation split cannot separate trials:
    an accuracy monitor on fewer than 20 rows, or whose one-row step exceeds the spread of the completed
    trials' values, or a loss monitor that reached ~0. None when the split discriminates."""
    study = trial.study
    if study.user_attrs.get(WARNED_ATTR):
        return None
    done = [
        t.value
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if t.value is not None and math.isfinite(t.value)
    ]
    values = [*done, value] if math.isfinite(value) else done
    name = monitor.lower()
    why = None
    if name.endswith("accuracy") or name.endswith("acc"):
        step = 1.0 / max(n_val, 1)
        spread = max(values) - min(values) if len(values) >= 2 else None
        if n_val < MIN_VAL_ROWS:
            why = f"one row moves {monitor} by {step:.3g}"
        elif spread is not None and step > spread:
            why = f"one row moves {monitor} by {step:.3g}, more than the spread {spread:.3g} between the trials so far"
    elif mode == "min" and "loss" in name and any(abs(v) <= ZERO_LOSS for v in values):
        why = f"{monitor} reached {min(values, key=abs):.2g}, leaving nothing to separate trials"
    if why is None:
        return None
    line = (
        f"warning: the validation split has {n_val} rows and {why}: the study cannot tell trials apart; "
        f"average over folds instead with {_cv_hint()}"
    )
    study.set_user_attr(WARNED_ATTR, True)
    log.warning("%s", line)
    return line


# -- epoch-synchronous folds ------------------------------------------------------------------------------


class _Abort(BaseException):
    """Raised inside a fold's trainer to stop it when the trial is pruned or another fold failed."""


class _Lockstep:
    """One baton for k fold threads: fold i runs only on its turn, hands over after each epoch; the fold
    that completes epoch e last reports the mean of the folds' best values up to e and asks the pruner."""

    def __init__(self, trial: optuna.Trial, k: int, monitor: str, mode: str = "min") -> None:
        self.trial, self.k, self.monitor = trial, k, monitor
        self.sign = 1.0 if mode == "min" else -1.0
        self.best: dict[
            int, float
        ] = {}  # fold -> its best value so far, internal units (lower is better)
        self.cond = threading.Condition()
        self.turn = 0
        self.alive = set(range(k))
        self.epoch_of = [0] * k
        self.values: dict[int, dict[int, float]] = {}
        self.reported = 0
        self.error: BaseException | None = None

    def _next(self, fold: int) -> None:  # under the lock
        order = [(fold + j) % self.k for j in range(1, self.k + 1)]
        self.turn = next((i for i in order if i in self.alive), -1)
        self.cond.notify_all()

    def wait_turn(self, fold: int) -> None:
        """Block until it is ``fold``'s turn; raise _Abort when the trial is over."""
        with self.cond:
            self.cond.wait_for(lambda: self.turn == fold or self.error is not None)
            if self.error is not None:
                raise _Abort

    def _report_ready(
        self,
    ) -> None:  # under the lock: report every epoch all live folds have passed
        while True:
            e = self.reported + 1
            if any(self.epoch_of[i] < e for i in self.alive):
                return  # a fold still training has not reached epoch e
            reached = self.values.get(e)
            if not reached:
                return
            mean = math.nan  # a fold that diverged at e makes the trial's value undefined
            if all(math.isfinite(v) for v in reached.values()):
                for fold, v in reached.items():
                    self.best[fold] = min(self.best.get(fold, math.inf), self.sign * v)
                mean = self.sign * sum(self.best.values()) / len(self.best)
            self.trial.report(mean, e)
            self.reported = e
            if self.trial.should_prune():
                self.error = _pruned(self.trial, e)
                return

    def epoch_done(self, fold: int, epoch: int, value: float) -> None:
        """Record ``fold``'s value at ``epoch``, report what is ready, pass the baton and wait for it."""
        with self.cond:
            self.values.setdefault(epoch, {})[fold] = value
            self.epoch_of[fold] = epoch
            self._report_ready()
            self._next(fold)
        self.wait_turn(fold)

    def fold_done(self, fold: int, error: BaseException | None = None) -> None:
        """``fold`` has finished (or failed): report what is ready and pass the baton on."""
        with self.cond:
            self.alive.discard(fold)
            if error is not None and not isinstance(error, _Abort) and self.error is None:
                self.error = error
            if self.error is None:
                self._report_ready()
            self._next(fold)


def _pruned(trial: optuna.Trial, epoch: int) -> optuna.TrialPruned:
    from epochpilot.select.tune.pruner import pruned

    return pruned(trial, epoch, " (mean over folds)")


def _fold_callback(step: _Lockstep, fold: int, monitor: str) -> Any:
    from epochpilot.train.events import Callback, TrainState

    class FoldSync(Callback):
        @property
        def state_key(self) -> str:
            return "KFoldSync"

        def on_epoch_end(self, state: TrainState) -> None:
            if not state.history:
                return
            value = state.history[-1].get(monitor)
            value = float(value) if isinstance(value, (int, float)) else math.nan
            if fold == 0:  # the folds share the schedule: one records the lr for the pruner
                from epochpilot.select.tune.pruner import record_lr

                record_lr(step.trial, int(state.epoch), state.history[-1].get("lr"))
            step.epoch_done(fold, int(state.epoch), value)

    return FoldSync()


# -- the objective ----------------------------------------------------------------------------------------


class KFoldJobObjective:
    """Train the job with a trial's settings on ``k`` folds; the value is the mean of the folds' best
    monitored values. Picklable (worker processes get a copy); folds write ``trials/trial-NNNN/fold-i``."""

    def __init__(self, spec: Any, run_dir: str | Path, k: int) -> None:
        self.spec, self.run_dir, self.k = spec, Path(run_dir), check_cv(k)
        self._data: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec, "run_dir": self.run_dir, "k": self.k, "_data": None}

    @property
    def direction(self) -> str:
        """The study direction that matches the job's monitor mode."""
        return "maximize" if self.spec.train.mode == "max" else "minimize"

    def prepare(self) -> Any:
        """The rows the folds share (train + validation; the test share out), scaled once, and the folds."""
        if self._data is None:
            import pandas as pd

            from epochpilot.data.table import Preprocessor, Table
            from epochpilot.jobs.pipeline import as_targets, load_table, split
            from epochpilot.select.kfold import _folds

            spec = self.spec
            table = load_table(spec)
            task = Preprocessor.fit(table, task=spec.data.task, impute=spec.data.impute).task
            train_df, val_df, _test = split(table, spec, task)
            frame = pd.concat([train_df, val_df])
            pre = Preprocessor.fit(Table(frame, table.target), task=task, impute=spec.data.impute)
            X, y = pre.transform(frame)
            y = as_targets(y, task)
            try:
                folds = _folds(y, self.k, task == "classification", spec.data.seed)
            except ValueError as exc:
                raise ConfigError(f"cv={self.k}: {exc}") from None
            self._data = (pre, X, y, folds)
        return self._data

    def __call__(self, trial: optuna.Trial, params: Mapping[str, Any]) -> float:
        from epochpilot.jobs.pipeline import check_batch_size, job_model, trainer_kwargs
        from epochpilot.select.kfold import _curves, _take, choose_epoch
        from epochpilot.select.tune.pruner import BUDGET_ATTR
        from epochpilot.select.tune.space import apply_params
        from epochpilot.train import Trainer

        pre, X, y, folds = self.prepare()
        spec = apply_params(self.spec, params)
        monitor, mode = spec.train.monitor, spec.train.mode
        check_batch_size(spec, min(len(tr) for tr, _ in folds))
        step = _Lockstep(trial, len(folds), monitor, mode)
        results: list[Any] = [None] * len(folds)
        base = self.run_dir / "trials" / f"trial-{trial.number:04d}"

        def run_fold(i: int, tr: Any, va: Any) -> None:
            error: BaseException | None = None
            try:
                step.wait_turn(i)
                kwargs = trainer_kwargs(spec, len(tr), pre.task == "classification")
                if i == 0:
                    trial.set_user_attr(BUDGET_ATTR, int(kwargs["max_epochs"]))
                kwargs.update(
                    run_dir=base / f"fold-{i + 1}",
                    overwrite=True,
                    checkpoint_every=None,
                    tensorboard=False,
                    progress=False,
                    callbacks=[_fold_callback(step, i, monitor)],
                    report=False,
                )
                results[i] = Trainer(**kwargs).fit(
                    job_model(spec, pre), (_take(X, tr), _take(y, tr)), (_take(X, va), _take(y, va))
                )
            except BaseException as exc:  # handed to the trial's thread below
                error = exc
            finally:
                step.fold_done(i, error)

        threads = [
            threading.Thread(target=run_fold, args=(i, tr, va), daemon=True)
            for i, (tr, va) in enumerate(folds)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        histories = [r.history if r is not None else [] for r in results]
        trial.set_user_attr("epochs_run", sum(len(h) for h in histories))
        trial.set_user_attr("cv_k", len(folds))
        trial.set_user_attr("run_dir", str(base))
        if step.error is not None:
            raise step.error
        sign = 1.0 if mode == "min" else -1.0
        bests = []
        for h in histories:
            vals = [
                sign * float(r[monitor])
                for r in h
                if isinstance(r.get(monitor), (int, float)) and math.isfinite(r[monitor])
            ]
            if not vals:
                raise optuna.TrialPruned(f"a fold has no finite {monitor}")
            bests.append(sign * min(vals))
        mean, std, counts = _curves(histories, monitor)
        chosen, _ = choose_epoch(mean, std, counts, mode=mode, rule="min", k=len(folds))
        trial.set_user_attr("cv_fold_best", bests)
        trial.set_user_attr("cv_epoch", int(chosen))
        trial.set_user_attr("cv_epoch_value", float(mean[chosen - 1]))
        trial.set_user_attr("best_epoch", int(chosen))
        return sum(bests) / len(bests)

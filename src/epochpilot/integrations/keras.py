"""epochpilot inside ``keras.Model.fit``: ``EpochPilot(policy, schedule=None, run_dir=None, restore_best=True)``.

A Keras 3 callback (any backend: no torch needed unless the backend is torch). Each epoch it feeds the logs to
an epochpilot stop policy and sets ``model.stop_training`` when the policy says stop; before each batch it sets
the optimizer's learning rate to ``schedule(step)`` with ``step = optimizer.iterations``; it keeps a copy of the
best epoch's weights and puts them back at the end of ``fit`` whether or not it stopped (Keras #12511); with a
``run_dir`` it writes ``history.jsonl``, ``history.csv``, ``summary.json``, ``report.html``, its state
(``epochpilot_state.json``) and the best weights (``best.weights.npz``) so a crashed run can resume.

History names: Keras' ``loss``/``accuracy`` become ``train_loss``/``train_accuracy``, ``val_*`` stay, and
``learning_rate`` becomes ``lr``. The policy sees both spellings, so ``EarlyStopping("val_loss", ...)`` and
``EarlyStopping("loss", ...)`` both work. Not matched: ``Decision.extend_by`` (Keras' ``fit`` cannot run
past its ``epochs``: a warning says so).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np

from epochpilot.integrations._attributes import PilotAttributes
from epochpilot.integrations._common import PilotCore, scalar, write_json_atomic
from epochpilot.stopping.base import Policy

__all__ = ["EpochPilot", "history_name"]

log = logging.getLogger("epochpilot")
STATE_FILE = "epochpilot_state.json"
BEST_FILE = "best.weights.npz"


def history_name(key: str) -> str:
    """Keras' log name -> epochpilot's history name (``loss`` -> ``train_loss``, ``learning_rate`` -> ``lr``)."""
    if key in ("learning_rate", "lr"):
        return "lr"
    if key.startswith(("val_", "train_")):
        return key
    return f"train_{key}"


def _number(value: Any) -> float:
    return float(keras.ops.convert_to_numpy(value))


class EpochPilot(PilotAttributes, keras.callbacks.Callback):
    """Stop, schedule, restore-best and record a Keras ``fit`` with epochpilot.

    ``resume=True`` (needs ``run_dir``) continues the run saved there: the policy's state, the history and
    the best weights come back from the run dir; reload your model (``keras.saving.load_model``, which
    restores the optimizer's step) and call ``fit(..., initial_epoch=epochs_done)``. ``report=False`` skips
    ``report.html`` (matplotlib). Attributes after ``fit``: ``best_epoch_``, ``best_value_``,
    ``stopped_epoch_`` (None when the policy never said stop), ``summary_``, ``history_``.

    >>> import os; os.environ.setdefault("KERAS_BACKEND", "torch")  # doctest: +SKIP
    >>> from epochpilot.stopping import EarlyStopping
    >>> pilot = EpochPilot(EarlyStopping("val_loss", mode="min", patience=2))
    >>> model.fit(x, y, validation_split=0.2, epochs=50, callbacks=[pilot])  # doctest: +SKIP
    """

    def __init__(
        self,
        policy: Policy,
        schedule: Callable[[int], float] | None = None,
        run_dir: str | Path | None = None,
        restore_best: bool = True,
        *,
        resume: bool = False,
        report: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(restore_best, bool):
            raise TypeError(f"restore_best must be a bool, got {restore_best!r}")
        if resume and run_dir is None:
            raise ValueError(
                "resume=True needs run_dir: the state to resume lives in the run directory"
            )
        self.core = PilotCore(policy, schedule, run_dir, framework="keras", rename=history_name)
        self.policy = policy
        self.schedule = schedule
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.restore_best = restore_best
        self.report = report
        self.best_weights_: list[np.ndarray] | None = None
        self.summary_: dict[str, Any] | None = None
        self._resumed = False
        self._warned_extend = False
        if resume:
            self.load(self.run_dir)  # type: ignore[arg-type]

    # -- attributes --------------------------------------------------------------------------------------

    # -- state ---------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state: the policy's state, history, best epoch/value and stop record."""
        return self.core.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output; the next ``fit`` continues this run instead of starting afresh."""
        self.core.load_state_dict(state)
        self._resumed = True

    def load(self, run_dir: str | Path) -> None:
        """Resume from ``run_dir``'s ``epochpilot_state.json`` (and ``best.weights.npz`` when present)."""
        path = Path(run_dir) / STATE_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: resume needs a run_dir written by EpochPilot(run_dir=...), "
                f"or pass resume=False to start afresh"
            )
        self.load_state_dict(json.loads(path.read_text(encoding="utf-8")))
        best = Path(run_dir) / BEST_FILE
        if best.is_file():
            with np.load(best, allow_pickle=False) as data:
                self.best_weights_ = [data[f"arr_{i}"] for i in range(len(data.files))]
        elif self.core.best_epoch is not None and self.restore_best:
            warnings.warn(
                f"{best} is missing: the best weights of epoch {self.core.best_epoch} cannot be restored "
                "after this resume unless a later epoch improves",
                UserWarning,
                stacklevel=2,
            )

    # -- Keras hooks -----------------------------------------------------------------------------------
    def _optimizer(self) -> Any:
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            raise ValueError("the model has no optimizer: compile it before fit")
        return optimizer

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if not self._resumed:
            self.core.reset()
            self.best_weights_ = None
        self._resumed = False
        self.core.start()
        if self.schedule is not None:
            optimizer = self._optimizer()
            if isinstance(
                getattr(optimizer, "_learning_rate", None),
                keras.optimizers.schedules.LearningRateSchedule,
            ):
                raise ValueError(
                    "schedule= was given but the optimizer has its own LearningRateSchedule: build the "
                    "optimizer with a float learning_rate and let EpochPilot set it"
                )
            self._set_lr(optimizer)

    def _set_lr(self, optimizer: Any) -> None:
        step = int(_number(optimizer.iterations))
        optimizer.learning_rate = self.core.driver.lr(step)  # type: ignore[union-attr]

    def on_train_batch_begin(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self.schedule is not None:
            self._set_lr(self._optimizer())

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        raw = {k: scalar(v) for k, v in (logs or {}).items()}
        optimizer = self._optimizer()
        row: dict[str, Any] = {"epoch": epoch + 1, "step": int(_number(optimizer.iterations))}
        row.update({history_name(k): v for k, v in raw.items() if v is not None})
        driver = (
            self.core.driver
        )  # the lr the next update will use, as epochpilot's trainer records it
        row.setdefault("lr", driver.lr(row["step"]) if driver else _number(optimizer.learning_rate))
        decision = self.core.observe(row, extra=raw)
        if decision.improved and self.restore_best:
            self.best_weights_ = [np.array(w, copy=True) for w in self.model.get_weights()]
            if self.run_dir is not None:
                tmp = self.run_dir / f".{BEST_FILE}.tmp.npz"
                np.savez(tmp, *self.best_weights_)
                tmp.replace(self.run_dir / BEST_FILE)
        if self.run_dir is not None:
            write_json_atomic(self.run_dir / STATE_FILE, self.core.state_dict())
        if decision.extend_by > 0 and not self._warned_extend:
            self._warned_extend = True
            warnings.warn(
                f"{decision.policy} asks for {decision.extend_by} more epochs, but Keras' fit cannot run past "
                f"its epochs: call fit again with initial_epoch={epoch + 1} to continue",
                UserWarning,
                stacklevel=2,
            )
        if decision.stop:
            self.model.stop_training = True

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self.restore_best and self.best_weights_ is not None:
            self.model.set_weights(self.best_weights_)
            log.info("epochpilot (keras): restored the weights of epoch %s", self.core.best_epoch)
        params = self.params or {}
        self.summary_ = self.core.finish(
            report=self.report,
            max_epochs=params.get("epochs"),
            steps_per_epoch=params.get("steps"),
            stop_message=f"fit ran its {params.get('epochs')} epochs; the policy did not stop it",
        )

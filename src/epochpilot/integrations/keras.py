"""epochpilot inside ``keras.Model.fit``: ``EpochPilot(policy=None, schedule=None, run_dir=None,
restore_best=True, *, verbose=True, save_model=None, report=True, resume=False)``.

A Keras 3 callback (any backend: no torch needed unless the backend is torch). Each epoch it feeds the logs to
an epochpilot stop policy and sets ``model.stop_training`` when the policy says stop; before each batch it sets
the optimizer's learning rate to ``schedule(step)`` with ``step = optimizer.iterations``; it keeps a copy of the
best epoch's weights and puts them back at the end of ``fit`` whether or not it stopped (Keras #12511); with a
``run_dir`` it writes ``history.jsonl``, ``history.csv``, ``summary.json``, ``report.html``, its state
(``epochpilot_state.json``) and the best weights (``best.weights.npz``) so a crashed run can resume, and at the
end the kept model as ``model.keras`` (``keras.saving.load_model`` reads it; ``save_model=False`` skips it).

``policy`` is optional: None (or ``"auto"``) is ``epochpilot.fit``'s default (EarlyStopping, patience 10, on
``val_loss``; on ``train_loss`` when ``fit`` has no validation data), ``"early"`` patience 5, ``"forecast"``
Forecast planned for ``fit``'s ``epochs``. ``verbose=True`` prints one line when training ends, as Keras'
``EarlyStopping(verbose=1)`` does: the stop, the kept epoch and where the model was saved.

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

from epochpilot.core.stopping.base import Policy
from epochpilot.integrations._attributes import PilotAttributes, check_verbose
from epochpilot.integrations._common import PilotCore, scalar, write_json_atomic
from epochpilot.integrations._lines import stop_line
from epochpilot.integrations._save import check_save_model, save_atomically

__all__ = ["EpochPilot", "history_name"]

log = logging.getLogger("epochpilot")
STATE_FILE = "epochpilot_state.json"
BEST_FILE = "best.weights.npz"
MODEL_FILE = "model.keras"


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
    ``stopped_epoch_`` (None when the policy never said stop), ``summary_``, ``history_``, ``model_path_``
    (the saved ``model.keras`` or None) and ``stop_line_`` (the verbose line).

    >>> import os; os.environ.setdefault("KERAS_BACKEND", "torch")  # doctest: +SKIP
    >>> pilot = EpochPilot(run_dir="runs/keras")  # the default policy, as epochpilot.fit's
    >>> model.fit(x, y, validation_split=0.2, epochs=50, callbacks=[pilot])  # doctest: +SKIP
    """

    def __init__(
        self,
        policy: Policy | str | None = None,
        schedule: Callable[[int], float] | None = None,
        run_dir: str | Path | None = None,
        restore_best: bool = True,
        *,
        verbose: bool = True,
        save_model: bool | None = None,
        report: bool = True,
        resume: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(restore_best, bool):
            raise TypeError(f"restore_best must be a bool, got {restore_best!r}")
        if resume and run_dir is None:
            raise ValueError(
                "resume=True needs run_dir: the state to resume lives in the run directory"
            )
        self.core = PilotCore(policy, schedule, run_dir, framework="keras", rename=history_name)
        self.schedule = schedule
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.restore_best = restore_best
        self.verbose = check_verbose(verbose)
        self.save_model = check_save_model(save_model, self.run_dir)
        self.report = report
        self.best_weights_: list[np.ndarray] | None = None
        self.summary_: dict[str, Any] | None = None
        self.model_path_: Path | None = None
        self.stop_line_: str | None = None
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
        self.core.set_budget((self.params or {}).get("epochs"))
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
        self.core.fallback(row)  # no validation data: a default policy watches train_loss
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
        restored = self.restore_best and self.best_weights_ is not None
        if restored:
            self.model.set_weights(self.best_weights_)
            log.info("epochpilot (keras): restored the weights of epoch %s", self.core.best_epoch)
        if self.save_model and self.run_dir is not None and self.core.history:
            self.model_path_ = save_atomically(
                self.run_dir / MODEL_FILE, lambda tmp: self.model.save(str(tmp)), "keras"
            )
        params = self.params or {}
        self.summary_ = self.core.finish(
            report=self.report,
            max_epochs=params.get("epochs"),
            steps_per_epoch=params.get("steps"),
            stop_message=f"fit ran its {params.get('epochs')} epochs; the policy did not stop it",
            saved_model=MODEL_FILE if self.model_path_ is not None else None,
        )
        self.stop_line_ = stop_line(
            self.core,
            restored=bool(restored),
            saved=str(self.model_path_) if self.model_path_ is not None else None,
        )
        if self.verbose:
            _print(self.stop_line_)

    @property
    def policy(self) -> Policy:
        """The stop policy (built from ``policy=None``/a name when no policy object was given)."""
        return self.core.policy


def _print(line: str) -> None:
    """Print as Keras' own callbacks do: to stdout, or to the log when interactive logging is off."""
    if keras.config.is_interactive_logging_enabled():
        print(line, flush=True)
    else:
        log.info(line)

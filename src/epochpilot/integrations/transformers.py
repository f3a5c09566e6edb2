"""epochpilot inside Hugging Face's ``Trainer``: ``EpochPilot(policy=None, run_dir=None, restore_best=True, *,
verbose=True, save_model=None, report=True)`` and ``to_hf_scheduler(schedule, optimizer)``.

``EpochPilot`` is a ``TrainerCallback``: after each evaluation it feeds the policy the metrics (``eval_x`` also
as ``val_x``; ``train_loss`` is the mean of the training losses logged since the previous evaluation) and sets
``control.should_training_stop`` when the policy says stop. Evaluation metrics are gathered across processes
by the Trainer, so every rank reaches the same decision. It keeps the best evaluation's weights and loads
them at the end of training whether or not it stopped. It is an ``ExportableState``: its state (policy,
history, best) goes into each checkpoint's ``trainer_state.json`` and comes back on
``train(resume_from_checkpoint=...)``, with or without ``restore_callback_states_from_checkpoint``
(transformers #28544); the best weights are saved beside it as ``epochpilot_best.pt``. With a ``run_dir``, at
the end of training the kept model (and the ``processing_class``, e.g. the tokenizer, when the Trainer has
one) goes to ``run_dir/model`` through ``save_pretrained`` on the main process, so ``from_pretrained`` and
``pipeline`` load it (``save_model=False`` skips it; for DeepSpeed/FSDP-sharded models use
``trainer.save_model`` instead).

``policy`` is optional: None (or ``"auto"``) is ``epochpilot.fit``'s default (EarlyStopping, patience 10, on
``val_loss``), ``"early"`` patience 5, ``"forecast"`` Forecast planned for the evaluations the Trainer will run
(``num_train_epochs`` or ``max_steps`` over ``eval_steps``). ``verbose=True`` prints one line on the main
process when training ends: the stop, the kept evaluation and where the model was saved.

Patience counts evaluations: with ``eval_strategy="epoch"`` one per epoch, with ``"steps"`` one per
evaluation (history rows are then numbered by evaluation, ``hf_epoch`` keeps the Trainer's fractional
epoch). Not matched: ``Decision.extend_by`` (the Trainer fixes its step budget before training; a warning says
so). Do not combine with ``load_best_model_at_end``: this callback restores its own best at train end.

``to_hf_scheduler`` wraps an epochpilot schedule as a torch LR scheduler stepped once per optimizer update,
which the Trainer takes as ``optimizers=(optimizer, to_hf_scheduler(schedule, optimizer))`` and saves and
restores in checkpoints; a ``ReduceOnPlateau`` inside the schedule is fed by ``EpochPilot`` after each
evaluation.
"""

from __future__ import annotations

import logging
import math
import warnings
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from epochpilot.core.stopping.base import Policy
from epochpilot.integrations._attributes import PilotAttributes, check_verbose
from epochpilot.integrations._common import PilotCore, scalar
from epochpilot.integrations._lines import stop_line
from epochpilot.integrations._save import check_save_model, save_atomically

__all__ = ["EpochPilot", "history_name", "to_hf_scheduler"]

log = logging.getLogger("epochpilot")
BEST_FILE = "epochpilot_best.pt"
MODEL_DIR = "model"
_SKIP = ("runtime", "samples_per_second", "steps_per_second")


def history_name(key: str) -> str:
    """Hugging Face's metric name -> epochpilot's history name (``eval_loss`` -> ``val_loss``)."""
    if key.startswith("eval_"):
        return f"val_{key[5:]}"
    if key in ("loss", "learning_rate"):
        return {"loss": "train_loss", "learning_rate": "lr"}[key]
    return key


def to_hf_scheduler(schedule: Callable[[int], float], optimizer: torch.optim.Optimizer) -> Any:
    """An LR scheduler for ``Trainer(optimizers=(optimizer, scheduler))``: lr = ``schedule(update)``.

    It is epochpilot's ``ScheduleLR``: each param group keeps its ratio to the first group's initial lr, and
    its state (plain numbers) resumes exactly from the Trainer's checkpoints.
    """
    from epochpilot.train.lr import to_torch

    return to_torch(schedule, optimizer)


class EpochPilot(PilotAttributes, TrainerCallback, ExportableState):
    """Stop, restore-best, checkpoint and record a Hugging Face ``Trainer`` run with an epochpilot policy.

    Attributes: ``best_epoch_`` (the best evaluation, 1-based), ``best_value_``, ``stopped_epoch_``,
    ``history_``, and after training ``summary_``, ``model_path_`` (the ``save_pretrained`` folder or None)
    and ``stop_line_`` (the verbose line).

    >>> pilot = EpochPilot(run_dir="runs/hf")  # the default policy, as epochpilot.fit's
    >>> Trainer(model, args, train_dataset=train, eval_dataset=val, callbacks=[pilot]).train()  # doctest: +SKIP
    """

    #: live instances by key, so the Trainer's checkpoint restore (which rebuilds callbacks from JSON
    #: arguments) can rebuild one that shares the state of the instance the user passed in
    _live: ClassVar[weakref.WeakValueDictionary[str, EpochPilot]] = weakref.WeakValueDictionary()

    def __init__(
        self,
        policy: Policy | str | None = None,
        run_dir: str | Path | None = None,
        restore_best: bool = True,
        *,
        verbose: bool = True,
        save_model: bool | None = None,
        report: bool = True,
        restore_key: str | None = None,
    ) -> None:
        if policy is None and restore_key is not None:
            live = self._live.get(restore_key)
            if live is None:
                raise ValueError(
                    f"no EpochPilot for {restore_key!r} to restore the checkpoint into: pass "
                    f"EpochPilot(policy, ...) in callbacks= when resuming"
                )
            self.__dict__ = live.__dict__  # the same run, seen through the Trainer's new object
            return
        if not isinstance(restore_best, bool):
            raise TypeError(f"restore_best must be a bool, got {restore_best!r}")
        self.core = PilotCore(
            policy, None, run_dir, framework="transformers", unit="evaluation", rename=history_name
        )
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.restore_best = restore_best
        self.verbose = check_verbose(verbose)
        self.save_model = check_save_model(save_model, self.run_dir)
        self.report = report
        self.best_weights_: dict[str, torch.Tensor] | None = None
        self.summary_: dict[str, Any] | None = None
        self.model_path_: Path | None = None
        self.stop_line_: str | None = None
        self._losses: list[float] = []
        self._last_log: dict[str, float] = {}
        self._resumed = False
        self._training = False
        self._warned_extend = False
        self.key = f"EpochPilot({self.core.monitor}, {self.core.policy.name})"
        self._live[self.key] = self

    @property
    def policy(self) -> Policy:
        """The stop policy (built from ``policy=None``/a name when no policy object was given)."""
        return self.core.policy

    # -- attributes ----------------------------------------------------------------------------------

    # -- ExportableState -----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """What the Trainer writes into ``trainer_state.json``: JSON only (best weights go beside it)."""
        return {
            "args": {"restore_key": self.key},
            "attributes": {"epochpilot_state": self.core.state_dict()},
        }

    @property
    def epochpilot_state(self) -> dict[str, Any]:
        """The JSON-safe state (policy, history, best epoch, stop record)."""
        return self.core.state_dict()

    @epochpilot_state.setter
    def epochpilot_state(self, state: Mapping[str, Any]) -> None:
        self.core.load_state_dict(state)
        self._resumed = True

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> EpochPilot:
        """Rebuild from :meth:`state` output: the live EpochPilot with that key, loaded with the state."""
        instance = cls(**state["args"])
        instance.epochpilot_state = state["attributes"]["epochpilot_state"]
        return instance

    def _saved_state(self, state: Any) -> Mapping[str, Any] | None:
        """Our entry in the resumed TrainerState's ``stateful_callbacks``, if any."""
        saved = (state.stateful_callbacks or {}).get(type(self).__name__)
        for entry in saved if isinstance(saved, list) else [saved]:
            if isinstance(entry, Mapping) and entry.get("args", {}).get("restore_key") == self.key:
                return entry["attributes"]["epochpilot_state"]
        return None

    # -- hooks ---------------------------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self._resumed:
            saved = self._saved_state(state) if state.global_step > 0 else None
            if saved is not None:  # resumed without restore_callback_states_from_checkpoint
                self.core.load_state_dict(saved)
            else:
                self.core.reset()
                self.best_weights_ = None
        self._resumed = False
        if state.global_step > 0 and self.restore_best and self.core.best_epoch is not None:
            self._load_best(Path(args.output_dir) / f"checkpoint-{state.global_step}")
        if not state.is_world_process_zero:
            self.core.run_dir = None
        strategy = str(getattr(args.eval_strategy, "value", args.eval_strategy))
        every = state.eval_steps if strategy == "steps" else None
        self.core.unit = "epoch" if strategy == "epoch" else "evaluation"
        self.core.note = f"epochs here are evaluations, one every {every} steps" if every else ""
        if strategy == "epoch":
            self.core.set_budget(math.ceil(state.num_train_epochs or 0) or None)
        else:
            self.core.set_budget(state.max_steps // every if every and state.max_steps else None)
        self.core.start()
        self._losses, self._last_log, self._training = [], {}, True

    def _load_best(self, checkpoint: Path) -> None:
        file = checkpoint / BEST_FILE
        if file.is_file():
            self.best_weights_ = torch.load(file, map_location="cpu", weights_only=True)
        else:
            warnings.warn(
                f"{file} is missing: the best weights (evaluation {self.core.best_epoch}) cannot be restored "
                "after this resume unless a later evaluation improves",
                UserWarning,
                stacklevel=2,
            )

    def on_log(
        self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None, **kw: Any
    ) -> None:
        logs = logs or {}
        if "loss" in logs and not any(k.startswith("eval_") for k in logs):
            value = scalar(logs["loss"])
            if value is not None:
                self._losses.append(value)
            for key in ("learning_rate", "grad_norm"):
                number = scalar(logs.get(key))
                if number is not None:
                    self._last_log[history_name(key)] = number

    def on_evaluate(
        self,
        args: Any,
        state: Any,
        control: Any,
        metrics: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._training:  # trainer.evaluate() outside train(): not an epoch of this run
            return
        raw = {k: scalar(v) for k, v in (metrics or {}).items()}
        raw = {k: v for k, v in raw.items() if v is not None}
        row: dict[str, Any] = {"epoch": len(self.core.history) + 1, "step": state.global_step}
        if self._losses:
            row["train_loss"] = math.fsum(self._losses) / len(self._losses)
        row.update(
            {history_name(k): v for k, v in raw.items() if k != "epoch" and not k.endswith(_SKIP)}
        )
        row.update(self._last_log)
        optimizer = kwargs.get("optimizer")
        if optimizer is not None:
            row["lr"] = float(optimizer.param_groups[0]["lr"])
        if state.epoch is not None:
            row["hf_epoch"] = float(state.epoch)
        self._losses = []
        decision = self.core.observe(row, extra=raw)
        scheduler = kwargs.get("lr_scheduler")
        if getattr(scheduler, "_plateaus", None):
            scheduler.report({**raw, **row})
        model = kwargs.get("model")
        if decision.improved and self.restore_best and model is not None:
            self.best_weights_ = {
                k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
            }
        if decision.extend_by > 0 and not self._warned_extend:
            self._warned_extend = True
            warnings.warn(
                f"{decision.policy} asks for {decision.extend_by} more evaluations, but the Trainer fixes its "
                "step budget before training: resume from the last checkpoint with a larger num_train_epochs",
                UserWarning,
                stacklevel=2,
            )
        if decision.stop:
            control.should_training_stop = True

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.restore_best and self.best_weights_ is not None and state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                tmp = folder / f".{BEST_FILE}.tmp"
                torch.save(self.best_weights_, tmp)
                tmp.replace(folder / BEST_FILE)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._training = False
        model = kwargs.get("model")
        restored = self.restore_best and self.best_weights_ is not None and model is not None
        if restored:
            model.load_state_dict(self.best_weights_)  # type: ignore[union-attr]
            log.info(
                "epochpilot (transformers): restored the weights of evaluation %s",
                self.core.best_epoch,
            )
        main = state.is_world_process_zero
        if self.save_model and self.run_dir is not None and self.core.history and main:
            self.model_path_ = self._save(model, kwargs.get("processing_class"))
        epochs = args.num_train_epochs if args.max_steps <= 0 else None
        self.summary_ = self.core.finish(
            report=self.report and main,
            max_epochs=math.ceil(epochs) if epochs else None,
            batch_size=state.train_batch_size,
            max_steps=state.max_steps,
            eval_strategy=str(getattr(args.eval_strategy, "value", args.eval_strategy)),
            stop_message=f"the Trainer ran its {state.max_steps} steps; the policy did not stop it",
            saved_model=MODEL_DIR if self.model_path_ is not None else None,
        )
        self.stop_line_ = stop_line(
            self.core,
            restored=bool(restored),
            saved=str(self.model_path_) if self.model_path_ is not None else None,
            unit=self.core.unit,
        )
        if self.verbose and main:
            print(self.stop_line_, flush=True)

    def _save(self, model: Any, processing: Any) -> Path | None:
        """``save_pretrained`` of the kept model (and of the processing class) into ``run_dir/model``."""
        final = self.run_dir / MODEL_DIR  # type: ignore[operator]
        if not hasattr(model, "save_pretrained"):
            warnings.warn(
                f"epochpilot (transformers): the model ({type(model).__name__}) has no save_pretrained, so "
                f"{final} was not written; save it with trainer.save_model, or pass save_model=False",
                UserWarning,
                stacklevel=3,
            )
            return None

        def write(folder: Path) -> None:
            model.save_pretrained(folder)
            if processing is not None and hasattr(processing, "save_pretrained"):
                processing.save_pretrained(folder)

        return save_atomically(final, write, "transformers")

"""epochpilot inside Lightning: ``EpochPilot(policy=None, schedule=None, run_dir=None, restore_best=True, *,
verbose=True, save_model=None, report=True)``.

A ``lightning.pytorch`` callback. After each validation (not the sanity check) it feeds the policy that epoch's
metrics and sets ``trainer.should_stop``, the decision reduced across ranks (any rank stopping stops all, as
Lightning's EarlyStopping does); ``Decision.extend_by`` raises ``trainer.fit_loop.max_epochs``. Before every
optimizer step it sets each param group's lr to ``schedule(trainer.global_step)`` (times the group's initial
ratio to the first group). It keeps the best epoch's weights and loads them at the end of ``fit`` whether or not
it stopped (Lightning #1415). Its state (policy, history, best epoch and weights) goes into every Lightning
checkpoint under a ``state_key`` naming the monitor, so ``fit(ckpt_path=...)`` resumes the policy where it was
(Lightning #1463). With a ``run_dir``, rank 0 writes history.jsonl/csv, summary.json and report.html, and at
the end of ``fit`` the kept model goes to ``model.ckpt`` through ``trainer.save_checkpoint`` (every rank calls
it, as Lightning requires): a full Lightning checkpoint, usable as ``ckpt_path`` of ``validate``/``test``/
``predict`` or with ``YourModule.load_from_checkpoint`` (``save_model=False`` skips it).

``policy`` is optional: None (or ``"auto"``) is ``epochpilot.fit``'s default (EarlyStopping, patience 10, on
``val_loss``; on ``train_loss`` when there is no validation loop), ``"early"`` patience 5, ``"forecast"``
Forecast planned for the Trainer's ``max_epochs`` (or ``max_steps``), never past it. ``verbose=True`` logs one
line on rank 0 when ``fit`` ends (through Lightning's ``rank_zero_info``, as its EarlyStopping's
``verbose=True`` does): the stop, the kept epoch and where the model was saved. ``summary.json`` keeps the
``max_epochs`` the Trainer was given and any ``extended_by`` a policy asked for apart.

What the policy sees at an epoch: every metric in ``trainer.callback_metrics`` at validation end (``*_epoch``
names also under their plain name, ``*_step`` names dropped) except names starting with ``train``, which
Lightning only aggregates after validation; ``train_loss`` is the mean of ``training_step``'s loss over the
epoch's batches, measured by this callback. Other ``train*`` metrics join the history row at the epoch's end.
So monitor validation metrics or ``train_loss``. Patience counts validations: one per epoch unless
``check_val_every_n_epoch`` says otherwise (the messages say which); with ``val_check_interval`` < 1 only an
epoch's first validation is fed (one decision per epoch). Epochs without validation are recorded but
not fed to the policy; a module with no validation loop feeds the policy at each training epoch's end.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from epochpilot.core.stopping.base import Policy, Reason
from epochpilot.integrations._attributes import PilotAttributes, check_verbose
from epochpilot.integrations._common import PilotCore, scalar
from epochpilot.integrations._lines import stop_line
from epochpilot.integrations._save import check_save_model, replace

__all__ = ["EpochPilot", "history_metrics"]

log = logging.getLogger("epochpilot")
MODEL_FILE = "model.ckpt"
#: stands for the best weights in the state saved inside ``model.ckpt``, whose model weights are the best ones
_SAME_AS_MODEL = "model"


def history_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Lightning's logged metrics as floats; ``x_epoch`` also as ``x``, ``x_step`` dropped, non-scalars skipped."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        number = scalar(value)
        if number is None or key.endswith("_step"):
            continue
        out[key] = number
        if key.endswith("_epoch"):
            out.setdefault(key[: -len("_epoch")], number)
    return out


class EpochPilot(PilotAttributes, pl.Callback):
    """Stop, schedule, restore-best, checkpoint and record a Lightning ``fit`` with an epochpilot policy.

    Attributes: ``best_epoch_``, ``best_value_``, ``stopped_epoch_`` (1-based; None when the policy never said
    stop), ``history_`` (one row per epoch), and after ``fit``: ``summary_``, ``model_path_`` (the saved
    ``model.ckpt`` or None) and ``stop_line_`` (the verbose line).

    >>> pilot = EpochPilot(run_dir="runs/lit")  # the default policy, as epochpilot.fit's
    >>> pl.Trainer(max_epochs=50, callbacks=[pilot]).fit(module, train_loader, val_loader)  # doctest: +SKIP
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
    ) -> None:
        super().__init__()
        if not isinstance(restore_best, bool):
            raise TypeError(f"restore_best must be a bool, got {restore_best!r}")
        self.core = PilotCore(policy, schedule, run_dir, framework="lightning")
        self.schedule = schedule
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.restore_best = restore_best
        self.verbose = check_verbose(verbose)
        self.save_model = check_save_model(save_model, self.run_dir)
        self.report = report
        self.best_weights_: dict[str, torch.Tensor] | None = None
        self.summary_: dict[str, Any] | None = None
        self.model_path_: Path | None = None
        self.stop_line_: str | None = None
        self._ratios: dict[int, list[float]] = {}
        self._loss_sum = 0.0
        self._loss_count = 0
        self._validated = False
        self._asked: int | None = None  # the max_epochs the Trainer was given
        self._best_is_model = False  # loaded from model.ckpt: the best weights are the module's
        self._saving_kept = False
        self._warned_unfed = False

    @property
    def policy(self) -> Policy:
        """The stop policy (built from ``policy=None``/a name when no policy object was given)."""
        return self.core.policy

    # -- attributes ----------------------------------------------------------------------------------
    @property
    def state_key(self) -> str:
        """One checkpoint entry per monitored metric, so two EpochPilots can share a Trainer (a policy built
        from a name is keyed by that name: its monitor may change to train_loss without validation)."""
        if self.core.spec is not None:
            return self._generate_state_key(policy=self.core.spec)
        return self._generate_state_key(monitor=self.core.monitor, policy=self.policy.name)

    # -- checkpoint state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The policy's JSON-safe state, history, best epoch and (``restore_best``) the best weights."""
        state: dict[str, Any] = {"core": self.core.state_dict()}
        if self.restore_best and self.best_weights_ is not None:
            state["best_weights"] = _SAME_AS_MODEL if self._saving_kept else self.best_weights_
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (Lightning calls this when ``fit(ckpt_path=...)`` resumes)."""
        if not isinstance(state_dict, Mapping) or "core" not in state_dict:
            raise ValueError(
                "EpochPilot checkpoint state must be a dict with a 'core' entry (from state_dict())"
            )
        self.core.load_state_dict(state_dict["core"])
        best = state_dict.get("best_weights")
        self._best_is_model = isinstance(best, str) and best == _SAME_AS_MODEL
        self.best_weights_ = None if self._best_is_model else best

    # -- hooks ---------------------------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":  # before Lightning restores a checkpoint into this callback
            self.core.reset()
            self.best_weights_ = None
            self._ratios = {}
            self._best_is_model = False

    def _take_best(self, pl_module: pl.LightningModule) -> None:
        """Resumed from ``model.ckpt``: its model weights are the best ones (once they are restored)."""
        if self._best_is_model:
            self.best_weights_ = {
                k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()
            }
            self._best_is_model = False

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after a checkpoint is restored (most strategies): give back an extension granted before the resume
        self._take_best(pl_module)
        fit_loop = trainer.fit_loop
        self._asked = fit_loop.max_epochs
        if self.core.extended and fit_loop.max_epochs not in (None, -1):
            fit_loop.max_epochs += self.core.extended

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        every = int(getattr(trainer, "check_val_every_n_epoch", 1) or 1)
        self.core.note = "" if every == 1 else f"counted in validations, one every {every} epochs"
        if not trainer.is_global_zero:
            self.core.run_dir = None
        self._take_best(pl_module)
        if not self._has_validation(trainer):
            self.core.fallback()
        self.core.set_budget(self._budget(trainer, every))
        self.core.start()
        if self.schedule is not None and trainer.lr_scheduler_configs:
            raise ValueError(
                "schedule= was given but configure_optimizers also returns an lr scheduler: use one of them"
            )

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._loss_sum, self._loss_count, self._validated = 0.0, 0, False

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if self.core.driver is None:
            return
        groups = optimizer.param_groups
        ratios = self._ratios.get(id(optimizer))
        if ratios is None:
            base = float(groups[0].get("initial_lr", groups[0]["lr"])) or 1.0
            ratios = [float(g.get("initial_lr", g["lr"])) / base for g in groups]
            self._ratios[id(optimizer)] = ratios
        lr = self.core.driver.lr(trainer.global_step)
        for group, ratio in zip(groups, ratios, strict=True):
            group["lr"] = lr * ratio

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        value = scalar(loss)
        if value is not None:  # Lightning divides the returned loss by accumulate_grad_batches
            factor = trainer.accumulate_grad_batches if pl_module.automatic_optimization else 1
            self._loss_sum += value * factor
            self._loss_count += 1

    def _row(self, trainer: pl.Trainer, skip_train: bool) -> dict[str, Any]:
        metrics = history_metrics(trainer.callback_metrics)
        row: dict[str, Any] = {"epoch": trainer.current_epoch + 1, "step": trainer.global_step}
        if self._loss_count:
            row["train_loss"] = self._loss_sum / self._loss_count
        row.update(
            {
                k: v
                for k, v in metrics.items()
                if not (skip_train and k.startswith("train")) and k not in row
            }
        )
        if trainer.optimizers:
            group = trainer.optimizers[0].param_groups[0]
            lr = (
                self.core.driver.lr(trainer.global_step)
                if self.core.driver is not None
                else float(group["lr"])
            )
            row["lr"] = lr
        return row

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or self._validated:
            return
        self._validated = True
        self._decide(trainer, pl_module, self._row(trainer, skip_train=True))

    def _decide(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, row: dict[str, Any]
    ) -> None:
        decision = self.core.observe(row, write=False)
        if decision.improved and self.restore_best:
            self.best_weights_ = {
                k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()
            }
        stop = trainer.strategy.reduce_boolean_decision(bool(decision.stop), all=False)
        if stop and not decision.stop:  # another rank stopped: say so in this rank's record
            self.core.stop_epoch, self.core.stop_reason = int(row["epoch"]), Reason.USER
            self.core.stop_message = (
                "another rank's policy said stop (decisions are reduced: any rank stops all)"
            )
        trainer.should_stop = trainer.should_stop or stop
        extend = int(trainer.strategy.broadcast(int(decision.extend_by), src=0))
        fit_loop = trainer.fit_loop
        if extend > 0 and not stop and fit_loop.max_epochs not in (None, -1):
            fit_loop.max_epochs += extend
            self.core.extended += extend
            log.info(
                "epochpilot (lightning): extending by %d epochs (to %d): %s",
                extend,
                fit_loop.max_epochs,
                decision.message,
            )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        last = self.core.history[-1] if self.core.history else None
        if last is not None and int(last["epoch"]) == epoch:
            self.core.update_last(self._row(trainer, skip_train=False))
        else:
            row = self._row(trainer, skip_train=False)
            if not self._has_validation(trainer) and self.core.monitor in row:
                self._decide(trainer, pl_module, row)
            else:
                self.core.history.append(row)  # no validation this epoch: recorded, not judged
                if not self._has_validation(trainer) and not self._warned_unfed:
                    self._warned_unfed = True
                    warnings.warn(
                        f"epochpilot (lightning): there is no validation loop and no {self.core.monitor!r} "
                        f"in the epoch's metrics ({', '.join(sorted(row))}): the policy is not fed and will "
                        "not stop training; add a validation loop or monitor train_loss",
                        UserWarning,
                        stacklevel=2,
                    )
        self.core.flush()

    @staticmethod
    def _has_validation(trainer: pl.Trainer) -> bool:
        return bool(sum(trainer.num_val_batches)) and trainer.limit_val_batches != 0

    def _budget(self, trainer: pl.Trainer, every: int) -> int | None:
        """The Trainer's budget in the policy's epochs (validations): the asked ``max_epochs``, else
        ``max_steps`` over the updates of one epoch; None when neither is known."""
        epochs = self._asked if self._asked is not None else trainer.fit_loop.max_epochs
        if epochs in (None, -1):
            batches, steps = trainer.num_training_batches, trainer.max_steps
            if steps in (None, -1) or not isinstance(batches, int) or batches < 1:
                return None
            per_epoch = max(1, -(-batches // max(1, trainer.accumulate_grad_batches)))
            epochs = -(-steps // per_epoch)
        return max(1, int(epochs) // max(1, every))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        restored = self.restore_best and self.best_weights_ is not None
        if restored:
            pl_module.load_state_dict(self.best_weights_)
            log.info(
                "epochpilot (lightning): restored the weights of epoch %s", self.core.best_epoch
            )
        if self.save_model and self.run_dir is not None and self.core.history:
            self.model_path_ = self._save(trainer)
        asked = self._asked if self._asked is not None else trainer.fit_loop.max_epochs
        self.summary_ = self.core.finish(
            report=self.report and trainer.is_global_zero,
            max_epochs=asked,
            steps_per_epoch=trainer.num_training_batches
            if isinstance(trainer.num_training_batches, int)
            else None,
            world_size=trainer.world_size,
            stop_message=f"fit ran its {trainer.fit_loop.max_epochs} epochs; the policy did not stop it",
            saved_model=MODEL_FILE if self.model_path_ is not None else None,
        )
        self.stop_line_ = stop_line(
            self.core,
            restored=bool(restored),
            saved=str(self.model_path_) if self.model_path_ is not None else None,
        )
        if self.verbose:
            from lightning.pytorch.utilities import rank_zero_info

            rank_zero_info(self.stop_line_)

    def _save(self, trainer: pl.Trainer) -> Path | None:
        """``trainer.save_checkpoint`` of the kept model on every rank (a collective call), renamed into place
        by rank 0; a failure is one warning (the model is still in memory)."""
        final = self.run_dir / MODEL_FILE  # type: ignore[operator]
        tmp = final.with_name(f".{final.name}.tmp")  # one name for every rank
        self._saving_kept = True
        try:
            trainer.save_checkpoint(tmp, weights_only=False)  # full: usable to resume fit too
            if trainer.is_global_zero:
                replace(tmp, final)
        except Exception as exc:  # noqa: BLE001 - a failed save must not lose the run's records
            if trainer.is_global_zero:
                tmp.unlink(missing_ok=True)
            warnings.warn(
                f"epochpilot (lightning): the kept model was not saved to {final} ({type(exc).__name__}: "
                f"{exc}); it is still in memory. Pass save_model=False to skip saving.",
                UserWarning,
                stacklevel=2,
            )
            return None
        finally:
            self._saving_kept = False
        return final

"""epochpilot inside Lightning: ``EpochPilot(policy, schedule=None, run_dir=None, restore_best=True)``.

A ``lightning.pytorch`` callback. After each validation (not the sanity check) it feeds the policy that epoch's
metrics and sets ``trainer.should_stop``, the decision reduced across ranks (any rank stopping stops all, as
Lightning's EarlyStopping does); ``Decision.extend_by`` raises ``trainer.fit_loop.max_epochs``. Before every
optimizer step it sets each param group's lr to ``schedule(trainer.global_step)`` (times the group's initial
ratio to the first group). It keeps the best epoch's weights and loads them at the end of ``fit`` whether or not
it stopped (Lightning #1415). Its state (policy, history, best epoch and weights) goes into every Lightning
checkpoint under a ``state_key`` naming the monitor, so ``fit(ckpt_path=...)`` resumes the policy where it was
(Lightning #1463). With a ``run_dir``, rank 0 writes history.jsonl/csv, summary.json and report.html.

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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from epochpilot.integrations._attributes import PilotAttributes
from epochpilot.integrations._common import PilotCore, scalar
from epochpilot.stopping.base import Policy, Reason

__all__ = ["EpochPilot", "history_metrics"]

log = logging.getLogger("epochpilot")


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
    stop), ``history_`` (one row per epoch) and ``summary_`` (after ``fit``).

    >>> from epochpilot.stopping import EarlyStopping
    >>> pilot = EpochPilot(EarlyStopping("val_loss", mode="min", patience=3), run_dir="runs/lit")
    >>> pl.Trainer(max_epochs=50, callbacks=[pilot]).fit(module, train_loader, val_loader)  # doctest: +SKIP
    """

    def __init__(
        self,
        policy: Policy,
        schedule: Callable[[int], float] | None = None,
        run_dir: str | Path | None = None,
        restore_best: bool = True,
        *,
        report: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(restore_best, bool):
            raise TypeError(f"restore_best must be a bool, got {restore_best!r}")
        self.core = PilotCore(policy, schedule, run_dir, framework="lightning")
        self.policy = policy
        self.schedule = schedule
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.restore_best = restore_best
        self.report = report
        self.best_weights_: dict[str, torch.Tensor] | None = None
        self.summary_: dict[str, Any] | None = None
        self._ratios: dict[int, list[float]] = {}
        self._loss_sum = 0.0
        self._loss_count = 0
        self._validated = False

    # -- attributes ----------------------------------------------------------------------------------
    @property
    def state_key(self) -> str:
        """One checkpoint entry per monitored metric, so two EpochPilots can share a Trainer."""
        return self._generate_state_key(monitor=self.core.monitor, policy=self.policy.name)

    # -- checkpoint state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The policy's JSON-safe state, history, best epoch and (``restore_best``) the best weights."""
        state: dict[str, Any] = {"core": self.core.state_dict()}
        if self.restore_best and self.best_weights_ is not None:
            state["best_weights"] = self.best_weights_
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (Lightning calls this when ``fit(ckpt_path=...)`` resumes)."""
        if not isinstance(state_dict, Mapping) or "core" not in state_dict:
            raise ValueError(
                "EpochPilot checkpoint state must be a dict with a 'core' entry (from state_dict())"
            )
        self.core.load_state_dict(state_dict["core"])
        self.best_weights_ = state_dict.get("best_weights")

    # -- hooks ---------------------------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":  # before Lightning restores a checkpoint into this callback
            self.core.reset()
            self.best_weights_ = None
            self._ratios = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        every = int(getattr(trainer, "check_val_every_n_epoch", 1) or 1)
        self.core.unit = "validated epoch" if every == 1 else f"validation (every {every} epochs)"
        if not trainer.is_global_zero:
            self.core.run_dir = None
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
        self.core.flush()

    @staticmethod
    def _has_validation(trainer: pl.Trainer) -> bool:
        return bool(sum(trainer.num_val_batches)) and trainer.limit_val_batches != 0

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.restore_best and self.best_weights_ is not None:
            pl_module.load_state_dict(self.best_weights_)
            log.info(
                "epochpilot (lightning): restored the weights of epoch %s", self.core.best_epoch
            )
        self.summary_ = self.core.finish(
            report=self.report and trainer.is_global_zero,
            max_epochs=trainer.fit_loop.max_epochs,
            steps_per_epoch=trainer.num_training_batches
            if isinstance(trainer.num_training_batches, int)
            else None,
            world_size=trainer.world_size,
            stop_message=f"fit ran its {trainer.fit_loop.max_epochs} epochs; the policy did not stop it",
        )

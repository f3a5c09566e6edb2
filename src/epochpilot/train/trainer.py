"""``Trainer(**config).fit(model, train_data, val_data)`` and the ``fit`` shortcut: build the loop's parts from
the config, resume when asked, run, restore the best weights and write the summary."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from epochpilot.errors import ConfigError, ConfigTypeError
from epochpilot.stopping.base import Reason
from epochpilot.train import distributed as D
from epochpilot.train.assemble import build_callbacks, restore
from epochpilot.train.budgets import Budget
from epochpilot.train.build import (
    build_loss,
    build_optimizer,
    build_schedule_checked,
    build_stopper,
    check_device,
    check_monitor,
    check_settings,
    seed_all,
)
from epochpilot.train.config import TrainConfig
from epochpilot.train.cooldown import check_cooldown, epochs_trained, kept_from
from epochpilot.train.data import make_batches
from epochpilot.train.events import TrainState
from epochpilot.train.guard import fit_guard
from epochpilot.train.loop import Loop
from epochpilot.train.record import write_summary
from epochpilot.train.replace import settle
from epochpilot.train.rundir import prepare_run_dir, write_config
from epochpilot.train.sweep import branch_records
from epochpilot.train.validate import dry_forward

__all__ = ["FitResult", "Trainer", "fit"]

log = logging.getLogger("epochpilot")


@dataclass
class FitResult:
    """What a fit returns: the model holding the best weights, the history and why training ended."""

    model: torch.nn.Module
    history: list[dict[str, Any]]
    best_epoch: int | None
    best_value: float | None
    stopped_epoch: int
    stop_reason: Reason
    stop_message: str
    run_dir: Path | None
    monitor: str
    mode: str
    total_steps: int = 0
    elapsed_s: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)
    #: every epoch trained, a partial last epoch as its share (cooldown included)
    epochs_trained: float = 0.0
    #: where the kept weights were trained: "trunk" or "cooldown from epoch E" (E: the epoch it forked after)
    kept_from: str = "trunk"
    #: one dict per cooldown branch (``cooldown="sweep"`` / ``"on_stop"``): fork, length, best value and epoch
    branches: list[dict[str, Any]] = field(default_factory=list)

    @property
    def best_row(self) -> dict[str, Any] | None:
        """The history row of the best epoch (None when nothing improved)."""
        for row in self.history:
            if row.get("epoch") == self.best_epoch:
                return row
        return None


class Trainer:
    """A thin PyTorch training loop with stopping, restore-best, exact resume, records and DDP.

    ``Trainer(**config)`` takes the fields of :class:`TrainConfig` (or ``Trainer(config)``); ``fit(model,
    train_data, val_data)`` trains and returns a :class:`FitResult`. The default stopper (``stopper=None`` or
    ``"auto"``) is ``EarlyStopping(patience=10)`` on ``val_loss`` (``train_loss`` without validation data),
    the most robust rule of the held-out stopping benchmark; ``stopper="forecast"`` is
    :func:`~epochpilot.stopping.auto_stopper` (Forecast plus NaN/blow-up guards, ``budget=max_epochs``).
    ``stopper="early"`` is ``EarlyStopping(patience=5)`` on that monitor, ``stopper=False`` runs all
    ``max_epochs``. ``max_steps`` / ``max_time`` set the budget in updates or wall time instead (see
    :mod:`epochpilot.train.budgets`); ``schedule`` may be a factory ``total_steps -> schedule`` (or a name)
    so its length follows the budget. ``schedule="wsd", cooldown="on_stop"`` cools the lr down (over
    ``cooldown_fraction`` of the updates so far) when the stopper fires, then stops (see ``train.cooldown``);
    ``cooldown="sweep"`` forks cooldown branches off the constant-lr trunk and keeps the best model over
    all of them, trunk and branches within ``max_epochs`` (see ``train.sweep``).
    The best weights (by the stopper's monitor) are loaded into the
    model at the end, whether or not the stopper fired.
    """

    def __init__(self, config: TrainConfig | None = None, **kwargs: Any) -> None:
        if config is not None and not isinstance(config, TrainConfig):
            raise ConfigTypeError(
                f"config must be a TrainConfig, got {type(config).__name__}: or give the settings as "
                f"keywords, Trainer(max_epochs=10, lr=1e-3)"
            )
        check_settings(kwargs)
        try:
            self.config = (
                dataclasses.replace(config, **kwargs)
                if config is not None
                else TrainConfig(**kwargs)
            )
        except ConfigError:
            raise
        except TypeError as exc:
            raise ConfigTypeError(f"{exc}: see TrainConfig for the accepted fields") from None

    def fit(self, model: torch.nn.Module, train_data: Any, val_data: Any = None) -> FitResult:
        """Train ``model`` on ``train_data`` ((X, y), Dataset or DataLoader), validating on ``val_data``."""
        if not isinstance(model, torch.nn.Module):
            raise ConfigTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        cfg = self.config
        # signals, a replaced run kept aside until the new one is durable, disk errors (see train.guard)
        with fit_guard(cfg.run_dir, int(os.environ.get("WORLD_SIZE", "1")) > 1):
            check_device(cfg.device)
            info, device = D.setup(cfg.device)
            try:
                return self._fit(cfg, info, device, model, train_data, val_data)
            finally:
                D.teardown(info)

    def _fit(
        self,
        cfg: TrainConfig,
        info: D.DistInfo,
        device: torch.device,
        model: torch.nn.Module,
        train_data: Any,
        val_data: Any,
    ) -> FitResult:
        started = time.perf_counter()
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(
                f"device={cfg.device!r} but CUDA is not available: use device='cpu' or 'auto'"
            )
        if cfg.precision == "16-mixed" and device.type != "cuda":
            raise ConfigError(
                "precision='16-mixed' needs a CUDA device: use 'bf16-mixed' or '32' on CPU"
            )
        if cfg.seed is not None:
            seed_all(cfg.seed + info.rank)
            data_seed = cfg.seed
        else:
            data_seed = D.broadcast(int(torch.randint(0, 2**62, ()).item()), info)
        kw = dict(
            batch_size=cfg.batch_size,
            shuffle=cfg.shuffle,
            drop_last=cfg.drop_last,
            seed=data_seed,
            num_workers=cfg.num_workers,
            rank=info.rank,
            world_size=info.world_size,
        )
        train = make_batches(train_data, "train_data", **kw)
        val = (
            make_batches(val_data, "val_data", train=False, **kw) if val_data is not None else None
        )
        if val is not None and val.n_samples == 0 and len(val) == 0:
            val = None
        if cfg.val_every_steps and val is None:
            raise ConfigError(
                "val_every_steps needs val_data: pass validation data or drop val_every_steps"
            )

        stopper = build_stopper(cfg.stopper, val is not None, cfg.max_epochs)
        monitor = getattr(stopper, "monitor", None) if stopper is not False else None
        monitor = monitor or ("val_loss" if val is not None else "train_loss")
        mode = getattr(stopper, "mode", "min") if stopper is not False else "min"
        check_monitor(monitor, list(cfg.metrics), val is not None)

        model.to(device)
        optimizer = build_optimizer(cfg, model)
        dry_forward(
            model, [("train_data", train), ("val_data", val)], device, cfg.precision, cfg.batch_size
        )
        steps_per_epoch = math.ceil(len(train) / cfg.accumulation)
        budget = Budget(cfg.max_epochs, cfg.max_steps, cfg.max_time)
        budget.plan(steps_per_epoch)
        total = budget.total_steps(steps_per_epoch)
        schedule, factory = build_schedule_checked(cfg, total)
        check_cooldown(cfg.cooldown, schedule, stopper)
        wrapped = D.wrap(model, info, device)
        loss_fn = build_loss(cfg.loss_fn, device)
        scaler = torch.amp.GradScaler("cuda") if cfg.precision == "16-mixed" else None

        n_params = sum(p.numel() for p in model.parameters())
        tables = {
            "train": cfg.resolved(),
            "model": {
                "class": f"{type(model).__module__}.{type(model).__qualname__}",
                "parameters": n_params,
            },
            "data": {
                "n_train": train.n_samples,
                "n_val": val.n_samples if val is not None else -1,
                "world_size": info.world_size,
            },
        }
        config_hash = cfg.config_hash(
            {"model": tables["model"], "data": {"n_train": train.n_samples}}
        )
        tables["run"] = {
            "config_hash": config_hash,
            "epochpilot_version": _version(),
            "torch_version": torch.__version__,
        }
        outcome: tuple[str, Any] = ("ok", None)
        if (
            info.rank == 0
        ):  # rank 0 decides; the other ranks learn the answer (or the error) from it
            try:
                outcome = ("ok", prepare_run_dir(cfg, tables, config_hash))
            except Exception as exc:
                if not info.active:
                    raise
                outcome = ("error", exc)
        kind, resume_from = D.broadcast(outcome, info)
        if kind == "error":
            raise resume_from
        run_dir = Path(cfg.run_dir) if cfg.run_dir is not None else None

        callbacks, writer, ckpts = build_callbacks(
            cfg,
            rank=info.rank,
            run_dir=run_dir,
            schedule=schedule,
            factory=factory,
            total=total,
            stopper=stopper,
            monitor=monitor,
            mode=mode,
        )

        state = TrainState(
            max_epochs=cfg.max_epochs,
            val_every=cfg.val_every_steps or 0,
            steps_per_epoch=steps_per_epoch,
            batches_per_epoch=len(train),
            monitor=monitor,
            mode=mode,
            rank=info.rank,
            world_size=info.world_size,
            optimizer=optimizer,
        )
        loop = Loop(
            state=state,
            cfg=cfg,
            model=wrapped,
            module=model,
            optimizer=optimizer,
            loss_fn=loss_fn,
            metrics=cfg.metrics,
            train=train,
            val=val,
            dist=info,
            device=device,
            scaler=scaler,
            callbacks=callbacks,
            ckpts=ckpts,
            config_hash=config_hash,
            data_seed=data_seed,
            extended=0,
            budget=budget,
            summary_writer=lambda: None,
        )

        def summary() -> dict[str, Any]:
            st = state
            return {
                "monitor": monitor,
                "mode": mode,
                "best_epoch": st.best_epoch,
                "best_value": st.best_value,
                "stopped_epoch": st.epochs_done,
                "stop_reason": st.stop_reason.value,
                "stop_message": st.stop_message,
                "max_epochs": st.max_epochs,
                "epochs_run": len(st.history),
                "epochs_trained": epochs_trained(st),
                "kept_from": kept_from(st),
                "cooldown": cfg.cooldown,
                "branches": branch_records(st),
                "total_steps": st.step,
                "steps_per_epoch": st.steps_per_epoch,
                "batch_size": cfg.batch_size,
                "n_train": train.n_samples,
                "n_val": val.n_samples if val is not None else None,
                "elapsed_s": time.perf_counter() - started,
                "budget_kind": budget.kind,
                "budget_detail": budget.summary(st.steps_per_epoch),
                "epochpilot_version": _version(),
                "world_size": info.world_size,
                "final_metrics": next(
                    (r for r in st.history if r.get("epoch") == st.best_epoch), None
                ),
            }

        if run_dir is not None and info.rank == 0:

            def summary_writer() -> Any:
                snap = summary()  # taken now, written by the checkpoint worker after the save

                def after() -> None:
                    write_summary(run_dir, snap, sync=False)
                    # the run is durable now: the old copy of a run it replaces goes
                    settle(run_dir, ok=True, covering=True)

                return after

            loop.summary_writer = summary_writer
        if (
            resume_from is not None
        ):  # the checkpoint actually used, after a fallback past damaged ones
            resume_from = restore(loop, resume_from, config_hash)
        else:
            if hasattr(stopper, "reset"):
                stopper.reset()
            if run_dir is not None and info.rank == 0:
                write_config(run_dir, tables)
        if writer is not None:
            writer.reset(state.history, state.checks_log)

        was_deterministic = torch.are_deterministic_algorithms_enabled()
        if cfg.deterministic:  # on for the loop only; the caller's setting comes back afterwards
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        try:
            loop.run()
        finally:
            if ckpts is not None:
                ckpts.close()
            if loop.best_weights is not None:
                model.load_state_dict(loop.best_weights)
            loop._dispatch("fit_end")
            if cfg.deterministic and not was_deterministic:
                torch.use_deterministic_algorithms(False)
        result_summary = summary()
        if run_dir is not None and info.rank == 0:
            write_summary(run_dir, result_summary)
        D.barrier(info)
        return FitResult(
            model=model,
            history=state.history,
            best_epoch=state.best_epoch,
            best_value=state.best_value,
            stopped_epoch=state.epochs_done,
            stop_reason=state.stop_reason,
            stop_message=state.stop_message,
            run_dir=run_dir,
            monitor=monitor,
            mode=mode,
            total_steps=state.step,
            elapsed_s=result_summary["elapsed_s"],
            summary=result_summary,
            epochs_trained=result_summary["epochs_trained"],
            kept_from=result_summary["kept_from"],
            branches=result_summary["branches"],
        )


def _version() -> str:
    import epochpilot

    return getattr(epochpilot, "__version__", "0")


def fit(model: torch.nn.Module, train_data: Any, val_data: Any = None, **config: Any) -> FitResult:
    """Shortcut for ``Trainer(**config).fit(model, train_data, val_data)``.

    >>> import torch
    >>> from epochpilot import fit
    >>> X, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> result = fit(torch.nn.Linear(4, 2), (X, y), max_epochs=2, seed=0)
    >>> len(result.history)
    2
    """
    return Trainer(**config).fit(model, train_data, val_data)

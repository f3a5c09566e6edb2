"""``Trainer(**config).fit(model, train_data, val_data)`` and the ``fit`` shortcut: build the loop's parts from
the config, resume when asked, run, restore the best weights and write the summary."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import torch

from epochpilot.errors import ConfigError, ConfigTypeError
from epochpilot.train import distributed as D
from epochpilot.train.assemble import build_callbacks, restore
from epochpilot.train.batching import (
    check_searchable,
    lr_factor,
    plan_batching,
    search_micro_batch,
)
from epochpilot.train.budgets import Budget
from epochpilot.train.build import (
    AutoLoss,
    build_loss,
    build_optimizer,
    build_schedule_checked,
    build_stopper,
    check_device,
    check_monitor,
    check_settings,
    compiled,
    scale_schedule,
    seed_all,
)
from epochpilot.train.callbacks import ScheduleCallback
from epochpilot.train.config import TrainConfig
from epochpilot.train.confighash import records_hash
from epochpilot.train.cooldown import check_cooldown
from epochpilot.train.data import make_batches
from epochpilot.train.events import TrainState
from epochpilot.train.guard import fit_guard
from epochpilot.train.loop import Loop
from epochpilot.train.record import write_summary
from epochpilot.train.replace import settle
from epochpilot.train.resolved import (
    FORMAT,
    describe_loss,
    describe_policy,
    describe_schedule,
    run_tables,
)
from epochpilot.train.result import FitResult, run_summary, version, write_run_report
from epochpilot.train.rundir import prepare_run_dir, write_config
from epochpilot.train.settings import fit_doc
from epochpilot.train.validate import dry_forward

__all__ = ["FitResult", "Trainer", "fit"]

log = logging.getLogger("epochpilot")


class Trainer:
    """A thin PyTorch training loop with stopping, restore-best, exact resume, records and DDP.

    ``Trainer(**config)`` takes the fields of :class:`TrainConfig` (or ``Trainer(config)``); ``fit(model,
    train_data, val_data)`` trains and returns a :class:`FitResult`. The default stopper (``stopper=None`` or
    ``"auto"``) is ``EarlyStopping(patience=10)`` on ``val_loss`` (``train_loss`` without validation data),
    the most robust rule of the held-out stopping benchmark; ``stopper="forecast"`` is
    :func:`~epochpilot.core.stopping.auto_stopper` (Forecast plus NaN/blow-up guards, ``budget=max_epochs``).
    ``stopper="early"`` is ``EarlyStopping(patience=5)`` on that monitor, ``stopper=False`` runs all
    ``max_epochs``. ``max_steps`` / ``max_time`` set the budget in updates or wall time instead (see
    :mod:`epochpilot.train.budgets`); ``schedule`` may be a factory ``total_steps -> schedule`` (or a name)
    so its length follows the budget. ``schedule="wsd", cooldown="on_stop"`` cools the lr down (over
    ``cooldown_fraction`` of the updates so far) when the stopper fires, then stops (see ``train.cooldown``);
    ``cooldown="sweep"`` forks cooldown branches off the constant-lr trunk and keeps the best model over
    all of them, trunk and branches within ``max_epochs`` (see ``train.sweep``).
    The best weights (by the stopper's monitor) are loaded into the
    model at the end, whether or not the stopper fired. ``help(epochpilot.fit)`` lists every setting.
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
        batching = plan_batching(cfg, info.world_size)
        if batching.chosen == "auto":
            check_searchable(train_data)
        kw = dict(
            batch_size=batching.source,
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

        stopper = build_stopper(cfg.stopper, val is not None, cfg.max_epochs, cfg.extend)
        monitor = getattr(stopper, "monitor", None) if stopper is not False else None
        monitor = monitor or ("val_loss" if val is not None else "train_loss")
        mode = getattr(stopper, "mode", "min") if stopper is not False else "min"
        check_monitor(monitor, list(cfg.metrics), val is not None)

        model.to(device)
        # a factory is called here; the records read what it built
        optimizer = build_optimizer(cfg, model)
        dry_forward(
            model,
            [("train_data", train), ("val_data", val)],
            device,
            cfg.precision,
            min(batching.source, 8) if batching.chosen == "auto" else batching.source,
        )
        steps_per_epoch = math.ceil(len(train) / batching.accumulation)
        budget = Budget(cfg.max_epochs, cfg.max_steps, cfg.max_time, extend=cfg.extend)
        budget.plan(steps_per_epoch)
        total = budget.total_steps(steps_per_epoch)
        schedule, factory = build_schedule_checked(cfg, total)
        factor = lr_factor(batching.effective_batch, cfg.reference_batch, cfg.lr_scaling)
        schedule, factory = scale_schedule(schedule, factory, factor, optimizer)
        check_cooldown(cfg.cooldown, schedule, stopper)
        runner = compiled(model) if cfg.compile else model
        wrapped = D.wrap(runner, info, device)
        loss_fn = build_loss(cfg.loss_fn, device)
        tensors = getattr(train, "tensors", None)
        if isinstance(loss_fn, AutoLoss) and tensors:  # chosen now, so config.toml names it
            loss_fn.choose(tensors[-1][:1])
        scaler = torch.amp.GradScaler("cuda") if cfg.precision == "16-mixed" else None

        model_table = {
            "class": f"{type(model).__module__}.{type(model).__qualname__}",
            "parameters": sum(p.numel() for p in model.parameters()),
        }
        data_table = {
            "n_train": train.n_samples,
            "n_val": val.n_samples if val is not None else -1,
            "world_size": info.world_size,
        }
        # what ran (format 2), and the settings as given with their hash, for runs written before it
        tables = run_tables(
            cfg,
            optimizer=optimizer,
            stopper=stopper,
            schedule=schedule,
            factory=factory,
            total_steps=total,
            loss_fn=loss_fn,
            model=model_table,
            data=data_table,
        )
        legacy = {"train": cfg.resolved(), "model": model_table, "data": data_table}
        legacy_hash = cfg.config_hash({"model": model_table, "data": {"n_train": train.n_samples}})
        config_hash = records_hash(tables)
        tables["run"] = {
            "config_hash": config_hash,
            "config_format": FORMAT,
            "epochpilot_version": version(),
            "torch_version": torch.__version__,
        }
        # rank 0 decides; the other ranks learn the answer (or the error) from it
        resume_from, run_hash = (
            D.decide(  # run_hash: the hash the run directory's config.toml holds
                lambda: prepare_run_dir(cfg, tables, config_hash, (legacy, legacy_hash)),
                info,
                default=(None, config_hash),
            )
        )
        if (
            batching.chosen == "auto" and resume_from is None
        ):  # a resumed run splits as its checkpoint says
            search_micro_batch(batching, model, train_data, loss_fn, optimizer, device, info)
        batching.lr_factor = factor
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
            runner=runner,
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
            config_hash=run_hash,
            data_seed=data_seed,
            extended=0,
            budget=budget,
            batching=batching,
            summary_writer=lambda: None,
        )

        # summary.json's records of what ran: [train] as in config.toml, and the built parts
        records = {k: tables[k] for k in ("train", "optimizer", "stopper", "schedule")}

        def summary() -> dict[str, Any]:
            return run_summary(
                state,
                cfg=cfg,
                budget=budget,
                train=train,
                val=val,
                world_size=info.world_size,
                started=started,
                records=records,
                batching=batching,
            )

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
            resume_from = restore(loop, resume_from, (run_hash, config_hash, legacy_hash))
            # every rank has read the checkpoint (and its best weights) before rank 0 may write a newer one
            D.barrier(info)
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
            if cfg.deterministic and not was_deterministic:  # first: whatever fails below
                torch.use_deterministic_algorithms(False)
            if ckpts is not None:
                ckpts.close()
            if loop.best_weights is not None:
                model.load_state_dict(loop.best_weights)
            loop._dispatch("fit_end")
        records["stopper"] = describe_policy(stopper, cfg.stopper)  # as it ended (budget included)
        records["train"] = dict(records["train"], loss_fn=describe_loss(loss_fn, cfg.loss_fn))
        sched = next((cb for cb in callbacks if isinstance(cb, ScheduleCallback)), None)
        if sched is not None:
            records["schedule"] = describe_schedule(
                sched.schedule, cfg.schedule, factory, sched.total_steps or total
            )
        result_summary = summary()
        if run_dir is not None and info.rank == 0:
            write_summary(run_dir, result_summary)
        D.barrier(info)
        report = None
        if run_dir is not None and info.rank == 0 and cfg.report:
            report = write_run_report(run_dir)
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
            report=report,
        )


def fit(model: torch.nn.Module, train_data: Any, val_data: Any = None, **config: Any) -> FitResult:
    """``Trainer(**config).fit(model, train_data, val_data)`` (replaced below by the text that lists every
    setting, generated from ``TrainConfig``: see ``help(epochpilot.fit)``)."""
    return Trainer(**config).fit(model, train_data, val_data)


fit.__doc__ = fit_doc()

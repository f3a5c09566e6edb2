"""The training loop proper: epochs of updates, validation, requests from callbacks, checkpoints and resume.

Kept thin on purpose: every feature lives in a callback (see ``events``); this module counts, computes losses
and metrics without per-step host syncs, and leaves checkpoints and snapshots to ``persist``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from typing import Any

import torch

from epochpilot.train import distributed as D
from epochpilot.train.budgets import apply_budget
from epochpilot.train.cooldown import Cooling
from epochpilot.train.events import EVENTS, Request, TrainState, as_requests, hooks
from epochpilot.train.persist import Persistence
from epochpilot.train.requests import Requests
from epochpilot.train.signals import Interruptible, active
from epochpilot.train.splitting import Splitting, is_oom
from epochpilot.train.sweep import Sweeping
from epochpilot.train.validate import Validation

__all__ = ["Loop"]

log = logging.getLogger("epochpilot")


class Loop(Validation, Persistence, Interruptible, Cooling, Sweeping, Splitting, Requests):
    """One fit: owns the state, the model/optimizer and the callbacks (built by ``Trainer``)."""

    def __init__(self, **parts: Any) -> None:
        # model, module, optimizer, loss_fn, metrics, train, val, cfg, dist, device, callbacks, ckpts, ...
        self.__dict__.update(parts)
        self.state: TrainState = parts["state"]
        self.events = {event: hooks(self.callbacks, event) for event in EVENTS}
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.params = [p for p in self.module.parameters() if p.requires_grad]
        self.checked = False
        self.best_dirty = False
        self._mid = False
        self.snapshot: dict[str, Any] | None = None
        # (step, batch) of the last checkpoint requested
        self._saved_at: tuple[int, int] | None = None
        # SIGINT/SIGTERM during fit: a final checkpoint, then stop (see train.signals)
        self.signals = active()
        self.signals.where = self._position
        self._reset_accumulators()

    # -- helpers -------------------------------------------------------------------------------------------
    def _reset_accumulators(self) -> None:
        z = torch.zeros((), dtype=torch.float64, device=self.device)
        self.acc: dict[str, Any] = {
            "loss": z.clone(),
            "n": 0,
            "metrics": [z.clone() for _ in self.metrics],
            "gnorm": z.clone(),
            "gcount": 0,
            "elapsed": 0.0,
        }

    def _dispatch(self, event: str) -> list[Request]:
        out: list[Request] = []
        for hook in self.events[event]:
            out.extend(as_requests(hook(self.state)))
        return out

    def _autocast(self) -> Any:
        """A fresh autocast context for mixed precision, or a no-op one."""
        if self.cfg.precision == "32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.cfg.precision == "bf16-mixed" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    @property
    def autocast(self) -> Any:
        """The autocast context for the training forward pass (None in full precision)."""
        return None if self.cfg.precision == "32" else self._autocast()

    # -- the loop ------------------------------------------------------------------------------------------
    def run(self) -> None:
        """Train until a stop request, a non-finite loss or the epoch budget."""
        st = self.state
        self.budget.start()
        if self.budget.kind != "epochs":
            apply_budget(self, self.budget.plan(st.steps_per_epoch))
        self._handle(self._dispatch("fit_start"))
        self._sweep_start()
        if self.cfg.on_nan == "rollback":
            self.snapshot = self._capture()
        while not st.stop and st.epochs_done < st.max_epochs:
            if self.signals.signum:
                self._interrupt(mid_epoch=st.batch > 0)
            st.epoch = st.epochs_done + 1
            if st.batch == 0:
                self._reset_accumulators()
            self.train.set_epoch(self._data_epoch())
            self._handle(self._dispatch("epoch_start"))
            t0 = time.perf_counter()
            self._train_epoch()
            self.acc["elapsed"] += time.perf_counter() - t0
            self._end_epoch()
        if not st.stop:
            st.stop = True
            st.stop_reason, st.stop_message = self.budget.end_reason(st.max_epochs, st)
        if self.signals.signum:  # it came during the last epoch: its checkpoint is the run's end
            self._interrupt(mid_epoch=st.batch > 0)

    def _train_epoch(self) -> None:
        """One pass over the training batches from ``state.batch`` (a non-finite loss shows in the epoch's
        row, read once at its end).

        The hot path: no host sync per step (losses and metrics accumulate as device tensors), no per-step
        allocation of contexts or dicts, and step hooks only for callbacks that asked for them. An
        out-of-memory in a forward or backward pass (``on_oom="shrink"``) splits the batches in twice as
        many micro-batches and redoes the update it happened in (see ``train.batching``).
        """
        while not self._train_from():
            self._after_oom()

    def _train_from(self) -> bool:
        """:meth:`_train_epoch`'s pass; False after an out-of-memory it may recover from (the update's
        start is in ``self._oom``)."""
        st, cfg, acc = self.state, self.cfg, self.acc
        model, opt, scaler = self.model, self.optimizer, self.scaler
        n = len(self.train)
        k = self.batching.accumulation
        splits = self.batching.splits
        shrink = cfg.on_oom == "shrink"
        step_hooks = self.events["step_end"]
        signals = self.signals
        metric_fns = list(self.metrics.values())
        msums = acc["metrics"]
        loss_sum = acc["loss"]
        device = self.device
        to_device = device.type != "cpu"
        ddp = self.dist.active
        # DDP with on_oom="shrink": every micro-batch runs on the bare module, the ranks agree that none ran
        # out of memory, then the gradients are averaged (DDP's reducer would hang the ranks that did not)
        agree = ddp and shrink
        if agree:
            model = self.runner  # the module, or its torch.compile wrapper
        gn_every = cfg.grad_norm_every
        autocast = self.autocast
        loss_fn = self.loss_fn
        val_every = st.val_every if self.val is not None else 0
        max_steps = self.budget.max_steps or 0
        i = st.batch
        saved = None
        model.train()
        if (max_steps and st.step >= max_steps) or self._cooldown_over():  # resumed at the end
            return True
        for batch in self.train.iter_from(i):
            *xs, y = batch
            if to_device:
                xs = [x.to(device, non_blocking=True) for x in xs]
                y = y.to(device, non_blocking=True)
            if k == 1:
                size, last = 1, True
            else:
                size = min(k, n - (i - i % k))
                last = (i % k) + 1 == size
            if shrink and i % k == 0 and (k > 1 or agree):
                saved = self._save_acc()  # what an out-of-memory later in this update must undo
            bs = len(y)
            failed = False
            try:
                if splits > 1:
                    d, parts = self._split_step(model, xs, y, size, splits, last and not agree)
                    for j, part in enumerate(parts):
                        msums[j] += part
                    loss_sum.add_(d, alpha=bs)
                else:
                    if ddp and not last and not agree:
                        with model.no_sync():
                            loss, out = self._forward_backward(xs, y, size)
                    elif autocast is None and scaler is None and self.checked:
                        out = model(*xs)
                        loss = loss_fn(out, y)
                        (loss / size if size > 1 else loss).backward()
                    else:
                        loss, out = self._forward_backward(xs, y, size, model)
                    d = loss.detach()
                    loss_sum.add_(d, alpha=bs)
                    if metric_fns:
                        od = out.detach()
                        for j, fn in enumerate(metric_fns):
                            msums[j] += fn(od, y) * bs
            except Exception as exc:
                if not (shrink and is_oom(exc) and all(isinstance(x, torch.Tensor) for x in xs)):
                    raise  # a batch that is not tensors cannot be split
                failed = True
            if failed or (agree and last):
                if D.any_rank(failed, self.dist, device):
                    self._oom = (i - i % k, saved)
                    return False
                D.average_grads(self.module, self.dist)
            acc["n"] += bs
            i += 1
            st.batch = i
            st.last_loss = d
            if last:
                self._update(opt, scaler, gn_every)
                st.step += 1
                if step_hooks:
                    for hook in step_hooks:
                        answer = hook(st)
                        if answer is not None:
                            self._handle(as_requests(answer), mid_epoch=True)
                    if st.stop and not ddp:
                        break
                if signals.signum:
                    self._interrupt(mid_epoch=True)
                if max_steps and st.step >= max_steps:
                    break  # the step budget ends mid-epoch: the epoch ends (and validates) here
                if st.cooldown_start is not None and self._cooldown_over():
                    break  # the cooldown's last update: the epoch ends (and validates) here
                if val_every and st.step % val_every == 0 and i < n:
                    self._check()
                    if st.stop:
                        break
        return True  # a non-finite loss shows in the epoch's row, read once at its end (_end_epoch)

    def _forward_backward(
        self, xs: list[torch.Tensor], y: torch.Tensor, size: int, model: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward (under autocast when mixed precision), loss (checked on the first batch), scaled backward."""
        model = self.model if model is None else model
        with self.autocast or contextlib.nullcontext():
            out = model(*xs) if self.checked else self._first_forward(model, xs)
            loss = self._loss(out, y)
        scaled = loss / size if size > 1 else loss
        if self.scaler is not None:
            self.scaler.scale(scaled).backward()
        else:
            scaled.backward()
        return loss, out

    def _grad_norm(self) -> torch.Tensor:
        """Total L2 norm of the gradients (one fused norm per tensor, then the norm of those)."""
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return torch.zeros((), device=self.device)
        try:
            return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        except (RuntimeError, AttributeError):  # mixed devices or dtypes
            return torch.nn.utils.get_total_norm(grads)

    def _update(self, opt: torch.optim.Optimizer, scaler: Any, gn_every: int) -> None:
        clip = self.cfg.clip_grad_norm
        acc = self.acc
        if clip is not None or (
            gn_every and (acc["gcount"] == 0 or self.state.step % gn_every == 0)
        ):
            if scaler is not None:
                scaler.unscale_(opt)
            if clip is not None:
                norm = torch.nn.utils.clip_grad_norm_(self.params, clip)
            else:
                norm = self._grad_norm()
            acc["gnorm"].add_(norm.detach())
            acc["gcount"] += 1
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)

    def _end_epoch(self) -> None:
        """Validate, build the row, let callbacks decide, record, checkpoint."""
        st, acc = self.state, self.acc
        t0 = time.perf_counter()
        names = list(self.metrics)
        parts = [
            acc["loss"],
            torch.tensor(float(acc["n"]), dtype=torch.float64, device=self.device),
            *acc["metrics"],
        ]
        if self.val is not None:
            vloss, vn, vm = self._validate()
            parts += [vloss, torch.tensor(float(vn), dtype=torch.float64, device=self.device), *vm]
        parts += [
            acc["gnorm"],
            torch.tensor(float(acc["gcount"]), dtype=torch.float64, device=self.device),
        ]
        elapsed = (
            acc["elapsed"] + time.perf_counter() - t0
        )  # averaged over ranks, so every rank's row agrees
        parts.append(torch.tensor(elapsed, dtype=torch.float64, device=self.device))
        totals = D.all_sum(torch.stack([p.to(torch.float64) for p in parts]), self.dist).tolist()
        elapsed = totals.pop() / self.dist.world_size
        m = len(names)
        n = totals[1] or 1.0
        row: dict[str, Any] = {"epoch": st.epoch, "step": st.step, "train_loss": totals[0] / n}
        for j, name in enumerate(names):
            row[f"train_{name}"] = totals[2 + j] / n
        pos = 2 + m
        if self.val is not None:
            vn = totals[pos + 1] or 1.0
            row["val_loss"] = totals[pos] / vn
            for j, name in enumerate(names):
                row[f"val_{name}"] = totals[pos + 2 + j] / vn
            pos += 2 + m
        row["lr"] = float(self.optimizer.param_groups[0]["lr"])
        row["grad_norm"] = totals[pos] / totals[pos + 1] if totals[pos + 1] else float("nan")
        row["epoch_time_s"] = elapsed
        row["samples_per_s"] = totals[1] / elapsed if elapsed > 0 else float("nan")
        if self.batching.chosen == "auto" or self.batching.shrinks:
            row["micro_batch"] = self.batching.micro_batch
        if self.cfg.cooldown is not None:
            row["branch"], row["trunk_epoch"] = self._branch_position()
        if not math.isfinite(row["train_loss"]):
            self._record_row(row)
            self._not_finite()
            return
        if st.stop:  # a mid-epoch validation already stopped training: record, do not feed again
            st.row = row
        else:
            self._feed(row, mid=False)
        self._record_row(row)
        self._finish_cooldown()
        self._sweep_epoch_end()
        self._budget_check()
        self._handle(D.broadcast(self._dispatch("epoch_end"), self.dist))
        if self.best_dirty:
            self._write_best()
        if self.cfg.on_nan == "rollback":
            self.snapshot = self._capture()

    def _budget_check(self) -> None:
        """At epoch end: the step cap, and the time budget (rank 0 measures; every rank follows)."""
        st, budget = self.state, self.budget
        if budget.steps_done(st.step) and not st.stop:
            self._handle([Request("stop", *budget.steps_reason(st.epoch, st))])
        if not budget.max_time_s:
            return
        new, stop = D.broadcast(budget.after_epoch(st.epochs_done, st), self.dist)
        if new is not None:
            budget.epochs = new
            apply_budget(self, new)
        if stop is not None and not st.stop:
            self._handle([Request("stop", *stop)])

    def _record_row(self, row: dict[str, Any]) -> None:
        st = self.state
        st.history.append(row)
        st.epochs_done = st.epoch
        st.batch = 0
        if log.isEnabledFor(logging.INFO):  # the line is built only when someone reads it
            log.info(
                "epoch %d/%d: %s",
                st.epoch,
                st.max_epochs,
                ", ".join(f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float)),
            )

"""Validation: the pass over the validation data, mid-epoch checks (``val_every_steps``) and feeding each
validation's row to the ``validation_end`` callbacks. Mixed into ``Loop``."""

from __future__ import annotations

from typing import Any

import torch

from epochpilot.train import distributed as D

__all__ = ["Validation"]


class Validation:
    """Validation passes and decisions (the attributes come from ``Loop``)."""

    @torch.no_grad()
    def _validate(self) -> tuple[torch.Tensor, int, list[torch.Tensor]]:
        module = self.module
        was = module.training
        module.eval()
        z = torch.zeros((), dtype=torch.float64, device=self.device)
        loss_sum, n, msums = z.clone(), 0, [z.clone() for _ in self.metrics]
        fns = list(self.metrics.values())
        to_device = self.device.type != "cpu"
        try:
            for batch in self.val.iter_from(0):
                *xs, y = batch
                if to_device:
                    xs = [x.to(self.device, non_blocking=True) for x in xs]
                    y = y.to(self.device, non_blocking=True)
                with self._autocast():
                    out = module(*xs)
                    loss = self._loss(out, y)
                bs = len(y)
                loss_sum += loss.float() * bs
                for j, fn in enumerate(fns):
                    msums[j] += fn(out.float(), y) * bs
                n += bs
        finally:
            module.train(was)
        return loss_sum, n, msums

    def _feed(self, row: dict[str, Any], mid: bool) -> None:
        """Give one validation's row to the ``validation_end`` callbacks (stopper, schedule) and act on them."""
        st = self.state
        st.row = row
        st.checks += 1
        if st.val_every:
            st.checks_log.append(row)
        self._mid = mid
        self._handle(D.broadcast(self._dispatch("validation_end"), self.dist), mid_epoch=mid)
        if mid and self.best_dirty:
            self._write_best()  # now, so a later step checkpoint never points at unsaved best weights

    def _check(self) -> None:
        """A mid-epoch validation (``val_every_steps``): running train loss, validation metrics, decisions."""
        st, acc = self.state, self.acc
        f64 = dict(dtype=torch.float64, device=self.device)
        vloss, vn, vm = self._validate()
        parts = [
            acc["loss"],
            torch.tensor(float(acc["n"]), **f64),
            vloss,
            torch.tensor(float(vn), **f64),
            *vm,
        ]
        totals = D.all_sum(torch.stack([p.to(torch.float64) for p in parts]), self.dist).tolist()
        row: dict[str, Any] = {
            "epoch": st.epoch,
            "step": st.step,
            "train_loss": totals[0] / (totals[1] or 1.0),
        }
        row["val_loss"] = totals[2] / (totals[3] or 1.0)
        for j, name in enumerate(self.metrics):
            row[f"val_{name}"] = totals[4 + j] / (totals[3] or 1.0)
        row["lr"] = float(self.optimizer.param_groups[0]["lr"])
        self._feed(row, mid=True)

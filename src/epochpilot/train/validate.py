"""Validation: the pass over the validation data, mid-epoch checks (``val_every_steps``) and feeding each
validation's row to the ``validation_end`` callbacks. Mixed into ``Loop``.

Also the checks of the model against the data: a dry forward on the first batch of the in-memory data
before training, then, on the first real batch, the model's forward, ``loss_fn``'s result (a scalar tensor
with a gradient, shapes and dtypes that fit the targets) and each metric: one-line epochpilot errors.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Sequence
from typing import Any

import torch

from epochpilot.errors import ConfigError, ConfigTypeError, DataError
from epochpilot.train import distributed as D
from epochpilot.train.splitting import free_memory, is_oom

log = logging.getLogger("epochpilot")

__all__ = ["Validation", "dry_forward", "forward_error"]

#: errors a forward raises when the data does not fit the model (NotImplementedError is a missing forward)
_SHAPE_ERRORS = (RuntimeError, TypeError, ValueError, IndexError)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _shape(value: Any) -> Any:
    return tuple(value.shape) if hasattr(value, "shape") else type(value).__name__


def _first_linear(model: torch.nn.Module) -> tuple[str, int] | None:
    """The name and input width of the model's first layer with an ``in_features`` (a Linear)."""
    for name, module in model.named_modules():
        width = getattr(module, "in_features", None)
        if isinstance(width, int) and not isinstance(width, bool) and width > 0:
            return name or type(module).__name__, width
    return None


def _columns(x: torch.Tensor) -> str:
    return "1-D inputs (one value per sample)" if x.ndim == 1 else f"{x.shape[-1]} columns"


def forward_error(
    exc: BaseException,
    model: torch.nn.Module,
    xs: Sequence[Any],
    what: str,
    train_xs: Sequence[Any] | None = None,
) -> DataError:
    """The one-line DataError for a model forward that failed on the first batch of ``what``: names the
    model, the batch's shapes and, where it can tell, the mismatch and the fix."""
    shapes = ", ".join(str(tuple(x.shape)) if hasattr(x, "shape") else type(x).__name__ for x in xs)
    head = f"model {type(model).__name__} failed on the first batch of {what} (inputs {shapes or 'none'})"
    fix = "check that the model's input layer fits the data's columns"
    x = xs[0] if len(xs) == 1 and isinstance(xs[0], torch.Tensor) else None
    layer = _first_linear(model)
    params = next(model.parameters(), None)
    t0 = train_xs[0] if train_xs and isinstance(train_xs[0], torch.Tensor) else None
    if x is not None and t0 is not None and (x.shape[1:] != t0.shape[1:] or x.dtype != t0.dtype):
        fix = (
            f"{what} has {_columns(x)} ({x.dtype}), train_data has {_columns(t0)} ({t0.dtype}): "
            f"give {what} the same columns as train_data"
        )
    elif x is not None and layer is not None and (x.ndim == 1 or x.shape[-1] != layer[1]):
        name, width = layer
        fix = (
            f"model expects {width} input features (layer {name!r}), the data has {_columns(x)}: build "
            f"the model for the data's columns or give it the {width} columns it was built for"
        )
        if x.ndim == 1:
            fix += " (X.reshape(-1, 1) for one feature)"
    elif (
        x is not None
        and params is not None
        and not x.is_floating_point()
        and params.is_floating_point()
    ):
        fix = (
            f"the inputs have dtype {x.dtype} but the model's weights are {params.dtype}: convert X to "
            f"floats (X.astype('float32') or x.float())"
        )
    elif not xs:
        fix = f"{what} has no inputs: give (X, y), the inputs then the targets"
    return DataError(f"{head}: {_first_line(exc)}; {fix}")


def _autocast(precision: str, device: torch.device) -> Any:
    if precision == "32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def dry_forward(
    model: torch.nn.Module,
    data: Sequence[tuple[str, Any]],
    device: torch.device,
    precision: str = "32",
    batch_size: int = 32,
) -> None:
    """Before training, run ``model`` on the first batch of each in-memory data set (``("train_data",
    batches), ("val_data", batches)``) in eval mode without gradients, so a model that does not fit the
    data fails in one line before any work. RNG states, the model's mode and its weights are left as
    they were; data read through a Dataset or DataLoader is checked on its first real batch instead."""
    from epochpilot.train.rng import get_rng, set_rng

    rng = get_rng()
    was = model.training
    model.eval()
    train_xs: list[Any] | None = None
    try:
        for what, batches in data:
            tensors = getattr(batches, "tensors", None)
            if not tensors:
                continue
            xs = [t[:batch_size].to(device) for t in tensors[:-1]]
            try:
                with torch.no_grad(), _autocast(precision, device):
                    model(*xs)
            except NotImplementedError:
                raise
            except _SHAPE_ERRORS as exc:
                if is_oom(exc):  # not a misfit: training splits the batches (on_oom) or raises it
                    return
                raise forward_error(exc, model, xs, what, train_xs) from exc
            if what == "train_data":
                train_xs = xs
    finally:
        model.train(was)
        set_rng(rng)


class Validation:
    """Validation passes, decisions and first-batch checks (the attributes come from ``Loop``)."""

    def _first_forward(
        self, module: torch.nn.Module, xs: list[Any], what: str = "train_data"
    ) -> Any:
        """The model's forward on a first batch: a failure there is a DataError naming the shapes."""
        try:
            return module(*xs)
        except NotImplementedError:
            raise
        except _SHAPE_ERRORS as exc:
            if is_oom(exc):
                raise  # too big, not a misfit (see on_oom)
            raise forward_error(exc, D.unwrap(module), xs, what) from exc

    def _loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss; on the first batch, shape mismatches become a DataError naming both shapes."""
        if self.checked:
            return self.loss_fn(out, target)
        if not isinstance(out, torch.Tensor) and not callable(self.cfg.loss_fn):
            raise DataError(
                f"the model returned a {type(out).__name__}, not a tensor: return the logits tensor "
                f"or give a loss_fn that accepts a {type(out).__name__}"
            )
        shapes = f"model output shape {_shape(out)} vs target shape {_shape(target)}"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                loss = self.loss_fn(out, target)
            except (RuntimeError, ValueError, IndexError, TypeError) as exc:
                text = _first_line(exc)
                fix = (
                    "make the model's last layer produce what the loss expects (class scores (N, C) with "
                    "labels (N,), or the target's shape)"
                )
                if any(
                    w in text.lower() for w in ("dtype", "type float", "type long", "cast", "bool")
                ):
                    fix = (
                        f"y has dtype {getattr(target, 'dtype', '?')}: give integer class labels for "
                        f"cross_entropy (y.astype('int64')), float targets for mse/l1/huber/bce_with_logits "
                        f"(y.astype('float32'))"
                    )
                raise DataError(
                    f"loss_fn failed on the first batch: {shapes} ({text}); {fix}"
                ) from None
        for w in caught:
            if "size" in str(w.message) and "target" in str(w.message):
                raise DataError(
                    f"loss_fn would broadcast: {shapes}; reshape the target or the model output to match "
                    f"(e.g. y.reshape(-1, 1) or out.squeeze(-1))"
                )
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if not isinstance(loss, torch.Tensor):
            raise ConfigTypeError(
                f"loss_fn returned a {type(loss).__name__}, not a tensor: return a scalar tensor computed "
                f"from the model output with torch operations (no .item(), float() or numpy)"
            )
        if loss.ndim != 0:
            raise DataError(
                f"loss_fn returned shape {tuple(loss.shape)}, not a scalar: use reduction='mean'"
            )
        if torch.is_grad_enabled() and not loss.requires_grad:
            if isinstance(out, torch.Tensor) and not out.requires_grad:
                raise ConfigError(
                    f"model {type(self.module).__name__}'s output has no gradient (its forward detaches it "
                    f"or runs under torch.no_grad()): return the output of its layers as is"
                )
            raise ConfigError(
                "loss_fn returned a tensor without a gradient (requires_grad=False): compute it from the "
                "model output with torch operations (no .detach(), .item(), numpy or torch.no_grad())"
            )
        self._check_metrics(out, target)
        self.checked = True
        return loss

    def _check_metrics(self, out: Any, target: torch.Tensor) -> None:
        """Run each metric once on the first batch: a failure is a ConfigError naming ``metrics[name]``."""
        for name, fn in self.metrics.items():
            try:
                value = fn(out.detach().float(), target)
                torch.zeros((), dtype=torch.float64, device=self.device).add_(value)
            except (RuntimeError, ValueError, IndexError, TypeError, AttributeError) as exc:
                raise ConfigError(
                    f"metrics[{name!r}] failed on the first batch ({_first_line(exc)}): give a function "
                    f"(output, target) -> scalar tensor that fits output shape {_shape(out)} and target "
                    f"shape {_shape(target)}"
                ) from exc

    def _validate(self) -> tuple[torch.Tensor, int, list[torch.Tensor]]:
        """Loss sum, sample count and metric sums over the validation data. An out-of-memory
        (``on_oom="shrink"``) splits the batches in twice as many parts and validates again; under DDP every
        rank then splits as the most split one."""
        while True:
            try:
                out = self._validate_once()
                break
            except Exception as exc:
                if not (self.cfg.on_oom == "shrink" and is_oom(exc)):
                    raise
            free_memory(self.device)
            log.warning("validation: %s", self.batching.shrink(self.state.epoch, self.state.step))
        if self.dist.active and self.cfg.on_oom == "shrink":
            most = D.max_int(self.batching.splits, self.dist, self.device)
            self.batching.agree(most, self.state.epoch, self.state.step)
        return out

    @torch.no_grad()
    def _validate_once(self) -> tuple[torch.Tensor, int, list[torch.Tensor]]:
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
                    batch = (*xs, y)
                splits = (
                    self.batching.splits
                )  # run as the training batches are (see train.batching)
                parts = (
                    zip(*(torch.tensor_split(t, splits) for t in (*xs, y)))
                    if splits > 1
                    else [batch]
                )
                for *xs, y in parts:
                    if not len(y):
                        continue
                    with self._autocast():
                        if self.__dict__.get("_val_ok"):
                            out = module(*xs)
                        else:
                            out = self._first_forward(module, xs, "val_data")
                            self._val_ok = True
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

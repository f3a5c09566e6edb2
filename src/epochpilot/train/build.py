"""Turn config values into the loop's parts: loss, optimizer, seeding, and early checks of the monitor."""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from typing import Any

import numpy as np
import torch

from epochpilot.errors import ConfigError, ConfigTypeError, EpochpilotError
from epochpilot.train.config import TrainConfig

__all__ = [
    "AutoLoss",
    "build_loss",
    "build_optimizer",
    "build_schedule_checked",
    "build_stopper",
    "check_device",
    "check_monitor",
    "check_settings",
    "seed_all",
]

log = logging.getLogger("epochpilot")

_LOSSES = {
    "cross_entropy": torch.nn.CrossEntropyLoss,
    "mse": torch.nn.MSELoss,
    "l1": torch.nn.L1Loss,
    "bce_with_logits": torch.nn.BCEWithLogitsLoss,
    "huber": torch.nn.HuberLoss,
}
_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


class AutoLoss:
    """Cross-entropy for integer targets, mean squared error for float ones (chosen on the first batch)."""

    def __init__(self) -> None:
        self.fn: Any = None

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.fn is None:
            self.choose(target)
        return self.fn(output, target)

    def choose(self, target: torch.Tensor) -> None:
        """Pick the loss for targets like ``target`` (done before training when the data is in memory, so
        the run's records name the loss that runs)."""
        self.fn = torch.nn.MSELoss() if target.is_floating_point() else torch.nn.CrossEntropyLoss()
        log.info("loss_fn not given: using %s for %s targets", type(self.fn).__name__, target.dtype)

    def __repr__(self) -> str:
        return "auto"


def check_settings(kwargs: dict[str, Any]) -> None:
    """Unknown settings are a ConfigTypeError naming the closest field (``epochs`` -> ``max_epochs``)."""
    import difflib

    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    for name in kwargs:
        if name not in fields:
            close = difflib.get_close_matches(name, fields, n=1, cutoff=0.6)
            close = close or [f for f in fields if name in f][:1]
            close = close or (["lr"] if "learning" in name or "rate" in name else [])
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigTypeError(
                f"unknown setting {name!r}: {hint}(see TrainConfig for the accepted fields)"
            )


def check_device(device: str) -> None:
    """Refuse, in one line naming ``device``, a device this machine does not have (before any work)."""
    if device == "auto" or device == "cpu":
        return
    dev = torch.device(device)
    fix = "use device='cpu' or 'auto'"
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device={device!r} but CUDA is not available here (torch {torch.__version__}): {fix}"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ConfigError(
                f"device={device!r} but this machine has {count} CUDA device(s) (cuda:0 to "
                f"cuda:{count - 1}): {fix}, or a cuda index below {count}"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device={device!r} but Apple's MPS is not available here: {fix}")


def trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The model's parameters that require a gradient; none at all is a ConfigError naming ``model``."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        what = "has no parameters" if next(model.parameters(), None) is None else "is frozen"
        raise ConfigError(
            f"model {type(model).__name__} {what}: there is nothing to train (no parameter with "
            f"requires_grad=True): give a model with trainable weights or unfreeze some"
        )
    return params


def build_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer for ``optimizer`` (a name, an optimizer over ``model``'s parameters, or a factory)."""
    spec = cfg.optimizer
    params = trainable(model)
    if isinstance(spec, str):
        cls = _OPTIMIZERS[spec.lower()]
        return cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    _warn_unused(cfg)
    if hasattr(spec, "param_groups"):
        opt = spec
    else:
        try:
            opt = spec(model.parameters())
        except TypeError as exc:
            raise ConfigTypeError(
                f"optimizer factory {getattr(spec, '__name__', type(spec).__name__)} failed ({exc}): "
                f"give a callable params -> optimizer, e.g. lambda p: torch.optim.SGD(p, lr=0.1)"
            ) from exc
        if not hasattr(opt, "param_groups"):
            raise ConfigTypeError(
                f"optimizer factory returned {type(opt).__name__}, not a torch optimizer: return "
                f"e.g. torch.optim.SGD(params, lr=0.1)"
            )
    _check_covers(opt, model, params)
    return opt


def _warn_unused(cfg: TrainConfig) -> None:
    """One warning line per setting that a given optimizer (object or factory) makes unused: ``lr`` (unless a
    schedule named by a string takes it as its peak) and ``weight_decay``, when set to other than the
    default; the records say which values ran."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    unused = [
        name
        for name in ("lr", "weight_decay")
        if getattr(cfg, name) != defaults[name]
        and not (name == "lr" and isinstance(cfg.schedule, str))
    ]
    for name in unused:
        log.warning(
            "%s=%r is not used: the optimizer given as %s sets its own %s; set it there, or name the "
            "optimizer (optimizer='adam', 'adamw' or 'sgd') for %s to apply",
            name,
            getattr(cfg, name),
            "an object" if hasattr(cfg.optimizer, "param_groups") else "a factory",
            name,
            name,
        )


def _check_covers(opt: Any, model: torch.nn.Module, params: list[torch.nn.Parameter]) -> None:
    """An optimizer that updates none of the model's trainable parameters would train nothing: refuse it;
    one that misses some is warned about (those get gradients but never change)."""
    held = {id(p) for group in opt.param_groups for p in group["params"]}
    missing = [p for p in params if id(p) not in held]
    if not missing:
        return
    if len(missing) == len(params):
        raise ConfigError(
            f"optimizer holds none of the {len(params)} trainable parameter tensors of model "
            f"{type(model).__name__} (built for another model, or before the model was re-created?), so "
            f"training would change nothing: build it from this model, "
            f"torch.optim.Adam(model.parameters()), or pass a name ('adam') or a factory lambda p: ..."
        )
    names = {id(p): n for n, p in model.named_parameters()}
    first = ", ".join(repr(names.get(id(p), "?")) for p in missing[:3])
    more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
    log.warning(
        "optimizer updates %d of the model's %d trainable parameter tensors; %s%s get gradients but "
        "never change: add them to the optimizer or set requires_grad=False on them",
        len(params) - len(missing),
        len(params),
        first,
        more,
    )


def build_schedule_checked(cfg: TrainConfig, total_steps: int) -> tuple[Any, Any]:
    """``budgets.build_schedule`` for ``cfg.schedule``, its failures and a schedule that does not give a
    learning rate (a finite number >= 0) at update 0 as one ConfigError line naming ``schedule``."""
    from epochpilot.train.budgets import build_schedule

    spec = cfg.schedule
    name = spec if isinstance(spec, str) else getattr(spec, "__name__", type(spec).__name__)
    try:
        schedule, factory = build_schedule(spec, total_steps, cfg.lr)
    except EpochpilotError:
        raise
    except (ValueError, TypeError, ArithmeticError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"schedule={name!r} does not fit this run of {total_steps} updates: {text}"
        ) from exc
    if schedule is None:
        return None, None
    try:
        lr = float(schedule(0))
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise ConfigTypeError(
            f"schedule={name!r} gave no learning rate at update 0 ({exc}): a schedule maps an update "
            f"number to a float lr, e.g. epochpilot.core.schedules.parse('cosine', lr=1e-3, total_steps=n)"
        ) from exc
    if not math.isfinite(lr) or lr < 0:
        raise ConfigError(
            f"schedule={name!r} gives lr={lr} at update 0: a learning rate must be a finite number >= 0"
        )
    return schedule, factory


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def check_monitor(monitor: str | None, metrics: list[str], has_val: bool) -> None:
    if not isinstance(monitor, str):
        return
    keys = ["train_loss", "lr", "grad_norm"] + [f"train_{m}" for m in metrics]
    if has_val:
        keys += ["val_loss"] + [f"val_{m}" for m in metrics]
    if monitor not in keys:
        hint = "pass val_data, " if monitor.startswith("val_") and not has_val else ""
        raise ConfigError(
            f"stopper monitors {monitor!r}, which no epoch row will have (rows have {', '.join(keys)}): "
            f"{hint}add the metric to metrics= or monitor one of those"
        )


def build_loss(spec: Any, device: torch.device) -> Any:
    """The loss callable for ``loss_fn`` (None: chosen from the targets; a name; or the user's callable)."""
    if spec is None:
        return AutoLoss()
    fn = _LOSSES[spec]() if isinstance(spec, str) else spec
    if isinstance(fn, torch.nn.Module):
        fn.to(device)  # class weights and the like live with the model
    return fn


def build_stopper(spec: Any, has_val: bool, max_epochs: int, extend: float | None = None) -> Any:
    """The stop policy for ``stopper``: the user's policy, False (none), None or ``"auto"`` (the default),
    ``"early"`` or ``"forecast"``, on ``val_loss`` with mode "min" (``train_loss`` without validation data).

    ``"auto"`` is ``EarlyStopping(patience=10)``, the most robust rule of the held-out stopping benchmark;
    ``"early"`` the classic ``EarlyStopping(patience=5)``; ``"forecast"`` is ``auto_stopper`` (Forecast, reading
    the training loss too, plus a blow-up guard), whose budget starts at ``max_epochs`` and follows a step or
    time budget; it asks for more epochs only when ``extend`` allows it (the loop grants at most that share).
    """
    monitor = "val_loss" if has_val else "train_loss"
    if spec is None or spec == "auto":
        from epochpilot.core.stopping import default_stopper

        return default_stopper(monitor, "min")
    if spec == "forecast":
        from epochpilot.core.stopping import auto_stopper

        extra = {"train_monitor": "train_loss"} if has_val else {}
        return auto_stopper(monitor, "min", budget=max_epochs, max_extension=extend or 0.0, **extra)
    if spec == "early":
        from epochpilot.core.stopping import EarlyStopping

        return EarlyStopping(monitor=monitor, mode="min", patience=5)
    return spec


def scale_schedule(schedule: Any, factory: Any, factor: float, optimizer: Any) -> tuple[Any, Any]:
    """``(schedule, factory)`` times ``factor`` (``lr_scaling``): the schedule carries the scaled lr, so the
    optimizer is never changed behind its back; without a schedule, a constant one at the optimizer's lr."""
    if factor == 1.0:
        return schedule, factory
    from epochpilot.core.schedules import Constant, Scaled

    if schedule is None:
        schedule = Constant(lr=float(optimizer.param_groups[0]["lr"]))
    scaled = Scaled(schedule, by=factor)
    if factory is None:
        return scaled, None

    def rebuilt(total_steps: int) -> Any:
        return Scaled(factory(total_steps), by=factor)

    return scaled, rebuilt


def compiled(model: torch.nn.Module) -> torch.nn.Module:
    """``torch.compile(model)`` for the training steps (``compile=True``); it shares the model's parameters,
    so checkpoints and the best weights keep the model's own state-dict keys."""
    if not hasattr(torch, "compile"):
        raise ConfigError(
            "compile=True needs torch.compile (torch >= 2.0): upgrade torch or drop compile"
        )
    return torch.compile(model)

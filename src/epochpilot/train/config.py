"""``TrainConfig``: every trainer setting in one dataclass, validated at construction, saved as TOML.

Each bad value raises a one-line :class:`~epochpilot.errors.ConfigError` naming the field and the fix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from epochpilot.errors import ConfigError, ConfigTypeError
from epochpilot.train.callback_check import check_callbacks as _check_callbacks
from epochpilot.train.tomlwrite import plain as _plain
from epochpilot.train.tomlwrite import to_toml

__all__ = ["TrainConfig", "parse_every", "to_toml"]

OPTIMIZERS = ("adam", "adamw", "sgd")
PRECISIONS = ("32", "bf16-mixed", "16-mixed")
LOSSES = ("cross_entropy", "mse", "l1", "bce_with_logits", "huber")
ON_NAN = ("stop", "rollback")

#: fields left out of the hash while at their default (added later: older runs keep their hash)
_UNHASHED_DEFAULTS = {
    "cooldown": None,
    "cooldown_fraction": 0.2,
    "sweep_start": 4.0,
    "sweep_patience": 2,
    "extend": None,
    "effective_batch": None,
    "lr_scaling": None,
    "reference_batch": None,
}
#: fields that do not change what is trained; a run_dir may be resumed with different values for these.
_NOT_HASHED = frozenset(
    {
        "run_dir",
        "resume",
        "overwrite",
        "progress",
        "tensorboard",
        "callbacks",
        "device",
        "max_epochs",
        "max_steps",
        "max_time",
        "checkpoint_fsync",
        "report",
        "on_oom",
        "compile",
    }
)


def parse_every(value: int | str | None, name: str = "checkpoint_every") -> tuple[str, int] | None:
    """Parse ``3`` / ``"3 epochs"`` / ``"500 steps"`` into ``("epochs"|"steps", n)``; None/0 means never."""
    if value is None or value is False or value == 0:
        return None
    if isinstance(value, bool):
        raise ConfigError(
            f"{name}=True is ambiguous: give a number of epochs (1) or a string like '500 steps'"
        )
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(
                f"{name} must be >= 0 epochs, got {value}: use 0 or None to turn it off"
            )
        return ("epochs", value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*(epochs?|steps?)\s*", value)
        if match:
            n = int(match.group(1))
            unit = "epochs" if match.group(2).startswith("epoch") else "steps"
            return (unit, n) if n > 0 else None
    raise ConfigError(
        f"{name}={value!r} is not understood: give an int of epochs or a string like '500 steps'"
    )


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    """A finite float, or an int a float holds exactly (torch takes these as scalars); not a bool."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) <= 2**53 if isinstance(value, int) else math.isfinite(value)


#: fields that take True or False only (a string such as "no" would be truthy)
_BOOLS = ("deterministic", "shuffle", "drop_last", "overwrite", "tensorboard", "report", "compile")


@dataclass
class TrainConfig:
    """Trainer settings (``help(epochpilot.fit)`` lists each, its default and meaning); steps are updates."""

    loss_fn: Callable | str | None = None
    optimizer: Any = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: Callable[[int], float] | None = None
    stopper: Any = None
    max_epochs: int = 100
    max_steps: int | None = None
    max_time: float | str | None = None
    batch_size: int | str = 32
    accumulation: int = 1
    effective_batch: int | None = None
    on_oom: str = "shrink"
    lr_scaling: str | None = None
    reference_batch: int | None = None
    clip_grad_norm: float | None = None
    precision: str = "32"
    device: str = "auto"
    metrics: Mapping[str, Any] | Sequence[str] | None = None
    seed: int | None = None
    deterministic: bool = False
    shuffle: bool = True
    drop_last: bool = False
    num_workers: int = 0
    run_dir: str | Path | None = None
    checkpoint_every: int | str | None = 1
    keep_last: int = 2
    checkpoint_fsync: bool = False
    resume: bool | str | Path = False
    overwrite: bool = False
    progress: bool | None = None
    tensorboard: bool = False
    report: bool = True
    callbacks: Sequence[Any] = field(default_factory=tuple)
    on_nan: str = "stop"
    grad_norm_every: int = 50
    val_every_steps: int | None = None
    cooldown: str | None = None
    cooldown_fraction: float = 0.2
    sweep_start: float = 4.0
    sweep_patience: int = 2
    extend: float | None = None
    compile: bool = False

    def __post_init__(self) -> None:
        """Validate every field (one-line ConfigError naming the field and the fix)."""
        if isinstance(self.loss_fn, str):
            _check(
                self.loss_fn in LOSSES,
                f"loss_fn={self.loss_fn!r} is unknown: use one of {LOSSES} or a callable",
            )
        elif isinstance(self.loss_fn, type):
            raise ConfigTypeError(
                f"loss_fn={self.loss_fn.__module__}.{self.loss_fn.__qualname__} is a class: pass an "
                f"instance, e.g. {self.loss_fn.__name__}()"
            )
        elif self.loss_fn is not None and not callable(self.loss_fn):
            raise ConfigTypeError(
                f"loss_fn must be a callable (output, target) -> scalar tensor, a name from {LOSSES} "
                f"or None, got {type(self.loss_fn).__name__}"
            )
        if isinstance(self.optimizer, str):
            _check(
                self.optimizer.lower() in OPTIMIZERS,
                f"optimizer={self.optimizer!r} is unknown: use one of {OPTIMIZERS}, an optimizer or a factory",
            )
        else:
            _check(
                callable(self.optimizer) or hasattr(self.optimizer, "param_groups"),
                "optimizer must be a name, a torch optimizer or a factory callable(params) -> optimizer",
            )
        _check(
            _is_number(self.lr) and self.lr > 0,
            f"lr must be a positive number, got {self.lr!r}: try 1e-3",
        )
        _check(
            _is_number(self.weight_decay) and self.weight_decay >= 0,
            f"weight_decay must be >= 0 (a number), got {self.weight_decay!r}: try 0.0 or 0.01",
        )
        _check(
            self.schedule is None or callable(self.schedule) or isinstance(self.schedule, str),
            "schedule must be an epochpilot schedule (step -> lr), a factory total_steps -> schedule, "
            "or a name such as 'warmup(cosine)'",
        )
        if isinstance(self.schedule, str):
            from epochpilot.core.schedules import parse

            try:
                parse(self.schedule, lr=1e-3, total_steps=1000)
            except ValueError as exc:
                raise ConfigError(f"schedule={self.schedule!r}: {exc}") from None
        if isinstance(self.stopper, str):
            _check(
                self.stopper in ("auto", "early", "forecast"),
                f"stopper must be a stop policy (epochpilot.core.stopping), 'auto' (the default, patience 10), "
                f"'early' (patience 5), 'forecast' or False for none; got the unknown name {self.stopper!r}",
            )
        elif self.stopper is not None and self.stopper is not False:
            _check(
                hasattr(self.stopper, "update") and hasattr(self.stopper, "state_dict"),
                "stopper must be a stop policy (epochpilot.core.stopping), 'auto', None for the default, or False for none",
            )
        _check(
            self.max_steps is None or (_is_int(self.max_steps) and self.max_steps >= 1),
            f"max_steps must be an int >= 1 (optimizer updates) or None, got {self.max_steps!r}",
        )
        from epochpilot.train.budgets import parse_duration

        parse_duration(self.max_time, "max_time")
        _check(
            _is_int(self.max_epochs) and self.max_epochs >= 1,
            f"max_epochs must be an int >= 1, got {self.max_epochs!r}",
        )
        from epochpilot.train.batching import check_batch_settings

        check_batch_settings(self)
        if self.clip_grad_norm is not None:
            _check(
                _is_number(self.clip_grad_norm) and self.clip_grad_norm > 0,
                f"clip_grad_norm must be > 0 (a number) or None, got {self.clip_grad_norm!r}: try 1.0",
            )
        self.precision = str(self.precision)
        _check(
            self.precision in PRECISIONS,
            f"precision={self.precision!r} is unknown: use one of {PRECISIONS}",
        )
        _check(
            isinstance(self.device, str)
            and (
                self.device == "auto"
                or re.fullmatch(r"(cpu|cuda|mps)(:\d+)?", self.device) is not None
            ),
            f"device={self.device!r} is unknown: use 'auto', 'cpu', 'cuda' or 'cuda:N'",
        )
        self.metrics = self._normalise_metrics(self.metrics)
        _check(
            self.seed is None or (_is_int(self.seed) and 0 <= self.seed < 2**62),
            f"seed must be an int from 0 to 2**62 - 1, or None, got {self.seed!r}",
        )
        for name in _BOOLS:
            value = getattr(self, name)
            _check(isinstance(value, bool), f"{name} must be True or False, got {value!r}")
        if self.run_dir is not None:
            _check(
                isinstance(self.run_dir, (str, os.PathLike)) and str(self.run_dir).strip() != "",
                f"run_dir must be a folder path (str or Path) or None, got {self.run_dir!r}",
            )
        if self.val_every_steps is not None:
            _check(
                _is_int(self.val_every_steps) and self.val_every_steps >= 0,
                f"val_every_steps must be an int >= 1 (updates between validations), or None to "
                f"validate once per epoch, got {self.val_every_steps!r}",
            )
        _check(
            _is_int(self.num_workers) and 0 <= self.num_workers <= 1024,
            f"num_workers must be an int from 0 to 1024 (0 loads in this process), got {self.num_workers!r}",
        )
        parse_every(self.checkpoint_every)
        _check(
            isinstance(self.checkpoint_fsync, bool),
            f"checkpoint_fsync must be True or False, got {self.checkpoint_fsync!r}",
        )
        _check(
            _is_int(self.keep_last) and self.keep_last >= 1,
            f"keep_last must be an int >= 1, got {self.keep_last!r}",
        )
        _check(
            isinstance(self.resume, (bool, Path))
            or (isinstance(self.resume, str) and bool(self.resume)),
            f"resume={self.resume!r}: use False, 'auto', True or a checkpoint path",
        )
        if (self.resume is True or self.resume == "auto") and self.run_dir is None:
            raise ConfigError(
                f"resume={self.resume!r} needs a run_dir: give run_dir='runs/NAME' or a checkpoint path"
            )
        _check(
            self.on_nan in ON_NAN, f"on_nan={self.on_nan!r} is unknown: use 'stop' or 'rollback'"
        )
        _check(
            _is_int(self.grad_norm_every) and self.grad_norm_every >= 0,
            f"grad_norm_every must be an int >= 0 (0 turns it off), got {self.grad_norm_every!r}",
        )
        _check(
            self.progress is None or isinstance(self.progress, bool),
            "progress must be True, False or None (auto)",
        )
        self.callbacks = _check_callbacks(self.callbacks)
        _check(
            self.cooldown in (None, "on_stop", "sweep"),
            f"cooldown={self.cooldown!r} is unknown: use 'sweep' (cooldown branches off a constant lr, "
            "keep the best), 'on_stop' (cool the lr down when the stopper fires), both with "
            "schedule='wsd', or None",
        )
        start = self.sweep_start
        _check(
            _is_number(start) and math.isfinite(start) and start > 0,
            f"sweep_start must be a number of epochs > 0 (the trunk's length before the first "
            f"cooldown branch), got {start!r}: try 4",
        )
        _check(
            _is_int(self.sweep_patience) and self.sweep_patience >= 1,
            f"sweep_patience must be an int >= 1 (branches in a row without improvement before the "
            f"trunk stops), got {self.sweep_patience!r}: try 2",
        )
        from epochpilot.train.budgets import check_extend

        self.extend = check_extend(self.extend)
        if self.cooldown == "sweep" and self.val_every_steps:
            raise ConfigError(
                "cooldown='sweep' validates once per epoch, but val_every_steps is set: drop "
                "val_every_steps, or use cooldown='on_stop'"
            )
        fraction = self.cooldown_fraction
        _check(
            isinstance(fraction, (int, float))
            and not isinstance(fraction, bool)
            and math.isfinite(fraction)
            and 0.0 < fraction <= 1.0,
            f"cooldown_fraction must be in (0, 1] (the cooldown's share of the updates so far), "
            f"got {fraction!r}: try 0.2",
        )

    @staticmethod
    def _normalise_metrics(metrics: Any) -> dict[str, Any]:
        from epochpilot.train.metrics import resolve_metric

        if metrics is None:
            return {}
        if isinstance(metrics, str):
            metrics = [metrics]
        if isinstance(metrics, Mapping):
            items = dict(metrics)
        elif isinstance(metrics, Sequence):
            items = {}
            for m in metrics:
                name = m if isinstance(m, str) else getattr(m, "__name__", None)
                _check(name is not None, f"metrics entry {m!r} has no name: pass a dict name -> fn")
                items[name] = m
        else:
            raise ConfigError(
                f"metrics must be a dict name -> fn or a list of names, got {type(metrics).__name__}"
            )
        for name, fn in items.items():
            _check(
                isinstance(name, str) and re.fullmatch(r"\w+", name) is not None,
                f"metric name {name!r} must be a word",
            )
            try:
                items[name] = resolve_metric(name, fn)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        return items

    def resolved(self) -> dict[str, Any]:
        """The config as plain TOML/JSON-safe values (objects recorded by qualified name or repr)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            out[f.name] = _plain(getattr(self, f.name))
        return out

    def config_hash(self, extra: Mapping[str, Any] | None = None) -> str:
        """A short hash of the fields that change what is trained (plus ``extra``, e.g. the model)."""
        data = {k: v for k, v in self.resolved().items() if k not in _NOT_HASHED}
        for (
            key,
            default,
        ) in _UNHASHED_DEFAULTS.items():  # runs from before these fields keep their hash
            if data.get(key) == default:
                data.pop(key)
        data.update(extra or {})
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[
            :16
        ]

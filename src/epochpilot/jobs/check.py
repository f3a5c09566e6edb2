"""Checks of the job spec's fields (types from the dataclass annotations, then ranges and choices).

Each failure is a :class:`~epochpilot.errors.FieldError` keyed ``section.key``; :mod:`epochpilot.jobs.spec` names it
as the user wrote it: ``[train] max_epochs in job.toml`` for a file, ``--max-epochs`` for a flag.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import re
import types
import typing
from typing import Any

from epochpilot.errors import ConfigError, FieldError

__all__ = ["check_device", "check_section"]

_WORDS = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true or false",
    list: "a list",
    dict: "a table",
}

#: the choices of ``epochpilot.data.table`` (BUILTINS, IMPUTE, TASKS), repeated here so that checking a job file
#: needs no pandas (a test holds them equal)
BUILTINS = ("digits", "breast_cancer", "wine", "mnist1d", "diabetes")
IMPUTE = ("mean", "median", "zero")
TASKS = ("classification", "regression")
OPTIMIZERS = ("adam", "adamw", "sgd")
PRECISIONS = ("32", "bf16-mixed", "16-mixed")
ON_NAN = ("stop", "rollback")
ON_OOM = ("shrink", "raise")
LR_SCALING = ("linear", "sqrt", "none")

#: how a type error names what a field takes, where the annotation's words would mislead ("a string")
_TYPE_WORDS = {"train.batch_size": "an integer >= 1 or 'auto'"}


@functools.cache
def _allowed(cls: type) -> dict[str, tuple[type, ...] | None]:
    """Field name -> the plain types its annotation allows (None: anything)."""
    out: dict[str, tuple[type, ...] | None] = {}
    for name, hint in typing.get_type_hints(cls).items():
        parts = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        plain = tuple(typing.get_origin(p) or p for p in parts)
        out[name] = None if Any in plain else plain
    return out


def _fits(value: Any, allowed: tuple[type, ...]) -> bool:
    if value is None:
        return type(None) in allowed
    if isinstance(value, bool):
        return bool in allowed
    if isinstance(value, numbers.Integral):  # numpy integers too
        return int in allowed or float in allowed
    if isinstance(value, numbers.Real):
        return float in allowed
    return any(t is not type(None) and isinstance(value, t) for t in allowed)


def _type_words(allowed: tuple[type, ...]) -> str:
    return " or ".join(_WORDS.get(t, t.__name__) for t in allowed if t is not type(None))


def _check_types(obj: Any, section: str) -> None:
    for name, allowed in _allowed(type(obj)).items():
        value = getattr(obj, name)
        if allowed is not None and not _fits(value, allowed):
            key = f"{section}.{name}"
            raise FieldError(
                key, f"must be {_TYPE_WORDS.get(key) or _type_words(allowed)}, got {value!r}"
            )


def _need(ok: bool, key: str, problem: str) -> None:
    if not ok:
        raise FieldError(key, problem)


def _at_least(obj: Any, section: str, name: str, minimum: int, fix: str = "") -> None:
    value = getattr(obj, name)
    if value is not None:
        tail = f": {fix}" if fix else ""
        _need(value >= minimum, f"{section}.{name}", f"must be >= {minimum}, got {value!r}{tail}")


def _number(obj: Any, section: str, name: str, low: float, strict: bool, fix: str = "") -> None:
    value = getattr(obj, name)
    if value is None:
        return
    sign = ">" if strict else ">="
    ok = math.isfinite(value) and (value > low if strict else value >= low)
    tail = f": {fix}" if fix else ""
    _need(ok, f"{section}.{name}", f"must be a finite number {sign} {low:g}, got {value!r}{tail}")


def _choice(obj: Any, section: str, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(obj, name)
    if value is not None and value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise FieldError(f"{section}.{name}", f"must be one of {valid}, got {value!r}")


def _check_data(d: Any) -> None:
    _need(
        not (d.builtin and d.csv),
        "data.builtin",
        "and csv are both set: keep one of them",
    )
    _choice(d, "data", "builtin", BUILTINS)
    _need(d.csv is None or bool(d.csv.strip()), "data.csv", "is empty: give the CSV's path")
    _need(bool(d.target.strip()), "data.target", "is empty: name the column to predict")
    _choice(d, "data", "task", TASKS)
    _choice(d, "data", "impute", IMPUTE)
    _need(
        math.isfinite(d.val_fraction) and 0.0 < d.val_fraction < 1.0,
        "data.val_fraction",
        f"must be in (0, 1), got {d.val_fraction!r}: try 0.2",
    )
    _need(
        math.isfinite(d.test_fraction) and 0.0 <= d.test_fraction < 1.0 - d.val_fraction,
        "data.test_fraction",
        f"must be in [0, 1 - val_fraction) = [0, {1.0 - d.val_fraction:g}), got {d.test_fraction!r}",
    )
    _at_least(d, "data", "n_samples", 1)
    _at_least(d, "data", "seed", 0)


def _default(cls: type, name: str) -> Any:
    """The default value of dataclass ``cls``'s field ``name``."""
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def _check_train(t: Any) -> None:
    leave_out = "leave it out to plan it from the data"
    _at_least(t, "train", "max_epochs", 1, f"train for at least one epoch, or {leave_out}")
    _at_least(t, "train", "max_steps", 1, "a budget in optimizer updates")
    if t.max_time is not None:
        _check_duration(t.max_time)
    _need(
        t.optimizer.lower() in OPTIMIZERS,
        "train.optimizer",
        f"must be one of {', '.join(map(repr, OPTIMIZERS))}, got {t.optimizer!r}",
    )
    _number(t, "train", "lr", 0.0, True, "try 1e-3")
    _number(t, "train", "weight_decay", 0.0, False)
    if t.schedule != _default(
        type(t), "schedule"
    ):  # the default parses (a test holds it); parse needs numpy
        from epochpilot.core.schedules import parse

        try:
            parse(t.schedule, lr=1e-3, total_steps=1000)
        except ValueError as exc:
            raise FieldError("train.schedule", f"is not usable: {exc}") from None
    _number(t, "train", "warmup", 0.0, False, "a fraction of all steps (< 1) or a number of steps")
    _choice(t, "train", "stopper", ("auto", "early", "forecast", "none"))
    _need(bool(t.monitor.strip()), "train.monitor", "is empty: name a metric such as 'val_loss'")
    _choice(t, "train", "mode", ("min", "max"))
    _at_least(t, "train", "patience", 0, "epochs without improvement before stopping")
    _number(t, "train", "min_delta", 0.0, False)
    _choice(t, "train", "min_delta_mode", ("abs", "rel"))
    _at_least(t, "train", "seed", 0)
    _at_least(t, "train", "accumulation", 1, "use 1 for no gradient accumulation")
    _check_batch(t)
    _number(t, "train", "clip_grad_norm", 0.0, True)
    _choice(t, "train", "precision", PRECISIONS)
    _need(
        t.device == "auto" or re.fullmatch(r"(cpu|cuda|mps)(:\d+)?", t.device) is not None,
        "train.device",
        f"must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {t.device!r}",
    )
    _check_every(t.checkpoint_every)
    _at_least(t, "train", "keep_last", 1, "how many epoch checkpoints to keep")
    _choice(t, "train", "on_nan", ON_NAN)
    _choice(t, "train", "cooldown", ("none", "on_stop", "sweep"))
    _need(
        math.isfinite(t.extend) and t.extend >= 0.0,
        "train.extend",
        f"must be a share >= 0 of max_epochs (0: max_epochs is a hard cap), got {t.extend!r}: try 0.5",
    )
    _need(
        math.isfinite(t.cooldown_fraction) and 0.0 < t.cooldown_fraction <= 1.0,
        "train.cooldown_fraction",
        f"must be in (0, 1] (a share of the updates so far), got {t.cooldown_fraction!r}: try 0.2",
    )
    _need(
        t.cooldown == "none"
        or t.schedule.strip().lower().replace(" ", "").startswith(("wsd", "warmup(wsd")),
        "train.cooldown",
        f"is {t.cooldown!r}, which needs a WSD schedule, but schedule is {t.schedule!r}: "
        'use schedule = "wsd" (--schedule wsd)',
    )


def _check_batch(t: Any) -> None:
    """batch_size (an int or "auto"), effective_batch, accumulation, on_oom and the lr scaling, together."""
    auto, effective = isinstance(t.batch_size, str), t.effective_batch
    _need(
        not auto or t.batch_size == "auto",
        "train.batch_size",
        f"must be an integer >= 1 or 'auto', got {t.batch_size!r}",
    )
    if not auto:
        _at_least(t, "train", "batch_size", 1, "or 'auto' to search the largest that fits")
    per_update = "the samples per optimizer update (micro-batch x accumulation)"
    _at_least(t, "train", "effective_batch", 1, per_update)
    _need(
        not auto or effective is not None,
        "train.batch_size",
        "is 'auto', which needs effective_batch (the samples per optimizer update): "
        "add effective_batch = 64 (--effective-batch 64)",
    )
    if effective is not None and not auto:
        _need(
            effective % t.batch_size == 0,
            "train.effective_batch",
            f"must be a multiple of batch_size {t.batch_size}, got {effective}: use effective_batch = "
            f"{max(1, round(effective / t.batch_size)) * t.batch_size} or batch_size = 'auto'",
        )
    _need(
        effective is None
        or t.accumulation == 1
        or (not auto and t.batch_size * t.accumulation == effective),
        "train.accumulation",
        f"is {t.accumulation} but effective_batch {effective} sets the accumulation "
        "(effective_batch / batch_size): keep one of them",
    )
    _choice(t, "train", "on_oom", ON_OOM)
    _choice(t, "train", "lr_scaling", LR_SCALING)
    _at_least(t, "train", "reference_batch", 1, "the batch size the lr was chosen for")
    scaling = t.lr_scaling not in (None, "none")
    _need(
        not scaling or t.reference_batch is not None,
        "train.lr_scaling",
        f"is {t.lr_scaling!r}, which needs reference_batch (the batch the lr was chosen for): "
        "add reference_batch = 32 (--reference-batch 32)",
    )
    _need(
        scaling or t.reference_batch is None,
        "train.reference_batch",
        "is set but lr_scaling is not: add lr_scaling = 'linear' (SGD) or 'sqrt' (Adam), "
        "or leave reference_batch out",
    )


def _check_duration(value: Any) -> None:
    from epochpilot._duration import parse_duration

    try:
        seconds = parse_duration(value, "max_time")
    except ConfigError:
        seconds = None
    _need(
        seconds is not None and math.isfinite(seconds) and seconds > 0,
        "train.max_time",
        f"must be a duration such as 90 (seconds), '90s', '10min' or '2h', got {value!r}",
    )


def _check_every(value: Any) -> None:
    if isinstance(value, numbers.Integral):
        _need(value >= 0, "train.checkpoint_every", f"must be >= 0 epochs (0: never), got {value}")
        return
    _need(
        re.fullmatch(r"\s*\d+\s*(epochs?|steps?)\s*", value) is not None,
        "train.checkpoint_every",
        f"must be a number of epochs or a string like '500 steps', got {value!r}",
    )


_RANGES = {"data": _check_data, "train": _check_train}


def check_section(obj: Any, section: str) -> None:
    """Check one section of a job spec (``data``, ``model``, ``train``, ``run``); raises a FieldError."""
    if isinstance(getattr(obj, "precision", None), int) and not isinstance(obj.precision, bool):
        object.__setattr__(obj, "precision", str(obj.precision))  # TOML: precision = 32
    _check_types(obj, section)
    if section in _RANGES:
        _RANGES[section](obj)


def check_device(device: str, key: str = "train.device") -> None:
    """Refuse a device this machine does not have (one line with the fix), before anything is written."""
    if device in ("auto", "cpu"):
        return
    import torch

    fix = 'use device = "cpu" or "auto"'
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise FieldError(key, f"is {device!r} but this machine has no CUDA: {fix}")
        index = int(device.partition(":")[2] or 0)
        count = torch.cuda.device_count()
        _need(
            index < count, key, f"is {device!r} but this machine has {count} CUDA device(s): {fix}"
        )
    elif device.startswith("mps"):
        mps = getattr(torch.backends, "mps", None)
        _need(
            mps is not None and mps.is_available(),
            key,
            f"is {device!r} but this machine has no MPS (Apple GPU): {fix}",
        )

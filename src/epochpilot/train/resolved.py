"""What ran, as plain records: the optimizer as built (class and the hyperparameters of its param groups),
the stop policy resolved (class and every parameter), the schedule resolved (class, parameters, warmup,
peak lr, the updates it was built for) and the loss chosen. ``config.toml``, ``summary.json``, the report's
config card and the config hash are written from these, so a factory, a lambda or ``stopper=None`` is
recorded as what it built, never as ``"__main__.<lambda>"`` or ``"none"``.

The config hash of these tables is :mod:`epochpilot.train.confighash`'s.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from collections.abc import Mapping
from typing import Any

from epochpilot.train.config import TrainConfig
from epochpilot.train.tomlwrite import plain

__all__ = [
    "FORMAT",
    "class_path",
    "describe_loss",
    "describe_optimizer",
    "describe_policy",
    "describe_schedule",
    "run_tables",
]

#: The format of ``config.toml`` written here (``[run] config_format``); absent means 1 (settings as given).
FORMAT = 2
#: the records kept as their own tables in config.toml (and keys of summary.json)
COMPONENTS = ("optimizer", "stopper", "schedule")
#: param-group keys that say how torch computes an update, not what it computes
_IMPLEMENTATION = frozenset({"params", "foreach", "fused", "capturable", "differentiable"})
_LOSS_NAMES = {
    "CrossEntropyLoss": "cross_entropy",
    "MSELoss": "mse",
    "L1Loss": "l1",
    "BCEWithLogitsLoss": "bce_with_logits",
    "HuberLoss": "huber",
}


def class_path(cls: type) -> str:
    """``cls`` by its shortest public dotted path among imported modules (``torch.optim.SGD``, not
    ``torch.optim.sgd.SGD``); epochpilot's own classes by their bare name (``EarlyStopping``)."""
    module = getattr(cls, "__module__", "") or ""
    name = getattr(cls, "__qualname__", type(cls).__name__)
    if module == "epochpilot" or module.startswith("epochpilot."):
        return name
    parts = module.split(".")
    for i in range(1, len(parts) + 1):
        prefix = ".".join(parts[:i])
        if getattr(sys.modules.get(prefix), name, None) is cls:
            return f"{prefix}.{name}"
    return f"{module}.{name}" if module else name


def _given(spec: Any) -> str:
    """How a setting was given: its name (a string), ``factory NAME``, ``function NAME`` or ``object``."""
    if isinstance(spec, str):
        return spec
    if spec is None:
        return "default"
    return "object"


def _number(value: Any) -> Any:
    """A plain value for a hyperparameter: tensors as floats, tuples as lists."""
    if hasattr(value, "item") and getattr(value, "numel", lambda: 2)() == 1:
        value = value.item()
    if isinstance(value, (tuple, list)):
        return [_number(v) for v in value]
    return plain(value)


def describe_optimizer(optimizer: Any, spec: Any) -> dict[str, Any]:
    """The optimizer as built: ``class``, how it was ``given`` (a name, ``factory NAME``, ``object``), the
    hyperparameters its param groups share, ``parameters`` (elements it updates) and, with more than one
    group, ``param_groups`` (each group's own hyperparameters and parameter count)."""
    groups = []
    for group in getattr(optimizer, "param_groups", []):
        hyper = {
            k: _number(v) for k, v in group.items() if k not in _IMPLEMENTATION and v is not None
        }
        hyper["parameters"] = sum(int(getattr(p, "numel", lambda: 0)()) for p in group["params"])
        groups.append(hyper)
    given = _given(spec)
    if not isinstance(spec, str) and callable(spec) and not hasattr(spec, "param_groups"):
        given = f"factory {plain(spec)}"
    out: dict[str, Any] = {"class": class_path(type(optimizer)), "given": given}
    if not groups:
        return out
    shared = {
        k: v
        for k, v in groups[0].items()
        if k != "parameters" and all(g.get(k, _MISSING) == v for g in groups[1:])
    }
    out.update(shared)
    out["parameters"] = sum(g["parameters"] for g in groups)
    if len(groups) > 1:
        out["param_groups"] = [{k: v for k, v in g.items() if k not in shared} for g in groups]
    return out


_MISSING = object()


def _is_policy(obj: Any) -> bool:
    return (
        not isinstance(obj, type) and hasattr(obj, "update") and hasattr(obj, "state_dict")
    ) or _is_epochpilot(obj)


def _is_epochpilot(obj: Any) -> bool:
    module = getattr(type(obj), "__module__", "") or ""
    return module.startswith("epochpilot.") and not isinstance(obj, (type, str, int, float))


def _describe_object(obj: Any, depth: int = 0) -> dict[str, Any]:
    """``class`` and every constructor parameter read back from the attribute of the same name (epochpilot
    stores its arguments unchanged); nested policies, schedules and plateaus are described the same way."""
    out: dict[str, Any] = {"class": class_path(type(obj))}
    if dataclasses.is_dataclass(obj):
        names = [(f.name, False) for f in dataclasses.fields(obj) if f.init]
    else:
        try:
            params = inspect.signature(type(obj).__init__).parameters.values()
        except (TypeError, ValueError):
            params = []
        names = [
            (p.name, p.kind is p.VAR_POSITIONAL)
            for p in params
            if p.name != "self" and p.kind is not p.VAR_KEYWORD
        ]
    for name, many in names:
        if not hasattr(obj, name):
            continue
        value = getattr(obj, name)
        if name == "parts" and isinstance(value, tuple):  # Join: (schedule, until) pairs
            out[name] = [{"schedule": _value(s, depth), "until": u} for s, u in value]
        elif many:
            out[name] = [_value(v, depth) for v in value]
        else:
            out[name] = _value(value, depth)
    return out


def _value(value: Any, depth: int) -> Any:
    """A parameter's record: nested policies, schedules and plateaus described (up to 8 levels deep)."""
    nested = _is_policy(value) or (dataclasses.is_dataclass(value) and not isinstance(value, type))
    if nested and depth < 8:
        return _describe_object(value, depth + 1)
    return _number(value)


def describe_policy(policy: Any, spec: Any) -> dict[str, Any]:
    """The stop policy that ran: ``class``, how it was ``given`` (``default``, ``auto``, ``early``,
    ``forecast``, ``object``) and every parameter (``{"class": "none"}`` for ``stopper=False``)."""
    if policy is False or policy is None:
        return {"given": "False", "class": "none"}
    return {"given": _given(spec), **_describe_object(policy)}


def _repr(obj: Any) -> str:
    """A one-line constructor call for ``[train]`` (the class path when the repr fails or has none)."""
    try:
        return str(plain(obj))
    except Exception:  # noqa: BLE001 - a user's broken __repr__ must not fail the run
        return class_path(type(obj))


def _peak(schedule: Any, total: int) -> float | None:
    """The highest lr over the run's updates (exact for epochpilot's schedules, on a grid of about a
    thousand updates for any other function); None when the schedule cannot be evaluated."""
    from epochpilot.core.schedules import Schedule
    from epochpilot.core.schedules.presets import peak

    try:
        if isinstance(schedule, Schedule):
            return float(peak(schedule, max(1, total))[1])
        grid = (
            sorted({round(i * (total - 1) / 999) for i in range(1000)})
            if total > 1000
            else range(max(1, total))
        )
        return max((float(schedule(s)) for s in grid), default=None)
    except Exception:  # noqa: BLE001 - a record must never fail the run
        return None


def _warmup_steps(node: Mapping[str, Any]) -> int:
    """Updates of warmup in a described schedule (a Warmup's ``steps`` or a WSD's ``warmup_steps``)."""
    if node.get("class") == "Warmup" and isinstance(node.get("steps"), int):
        return node["steps"]
    if isinstance(node.get("warmup_steps"), int):
        return node["warmup_steps"]
    inner = node.get("schedule")
    return _warmup_steps(inner) if isinstance(inner, Mapping) else 0


def describe_schedule(
    schedule: Any, spec: Any, factory: Any, total_steps: int
) -> dict[str, Any] | None:
    """The schedule that ran (None without one): ``class`` and its parameters (nested schedules and
    plateaus described too), how it was ``given``, whether it ``follows_budget`` (rebuilt for the run's
    length: a name or a factory), the ``run_updates`` planned when it was built, its ``warmup`` (updates)
    and its ``peak_lr`` over them."""
    if schedule is None:
        return None
    if dataclasses.is_dataclass(schedule) and not isinstance(schedule, type):
        params = _describe_object(schedule)
    else:
        params = {"class": "function"}
        try:
            params["lr_at_0"] = float(schedule(0))
        except Exception:  # noqa: BLE001 - a record must never fail the run
            pass
    if isinstance(spec, str):
        given = spec
    elif factory is not None:
        given = f"factory {plain(factory)}"
    elif dataclasses.is_dataclass(schedule):
        given = "object"
    else:
        given = f"function {plain(schedule)}"
    out: dict[str, Any] = {
        "given": given,
        "follows_budget": isinstance(spec, str) or factory is not None,
        "run_updates": int(total_steps),
        "warmup": _warmup_steps(params),
    }
    peak_lr = _peak(schedule, int(total_steps))
    if peak_lr is not None:
        out["peak_lr"] = peak_lr
    return {**out, **params}


def describe_loss(loss_fn: Any, spec: Any) -> str:
    """The loss that runs, by its ``loss_fn`` name where it has one (``cross_entropy``, ``mse``...): the
    default's choice once made (from in-memory targets, before training), else ``"auto"``."""
    if isinstance(spec, str):
        return spec
    chosen = getattr(loss_fn, "fn", loss_fn) if spec is None else spec
    if chosen is None:
        return "auto"
    name = _LOSS_NAMES.get(type(chosen).__name__)
    if (
        name is not None
        and type(chosen).__module__.startswith("torch.")
        and not _has_options(chosen)
    ):
        return name
    return _repr(chosen)


def _has_options(loss: Any) -> bool:
    """Whether a torch loss module was built with anything but its defaults (then its repr is kept)."""
    try:
        fresh = type(loss)()
    except Exception:  # noqa: BLE001
        return True
    keys = ("reduction", "ignore_index", "label_smoothing", "delta", "weight", "pos_weight")
    for key in keys:
        a, b = getattr(loss, key, None), getattr(fresh, key, None)
        if (a is None) != (b is None) or (a is not None and not _same(a, b)):
            return True
    return False


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - tensors
        return False


def ran_train_table(
    cfg: TrainConfig,
    *,
    optimizer: dict[str, Any],
    stopper: Any,
    schedule: Any,
    schedule_record: dict[str, Any] | None,
    loss: str,
) -> dict[str, Any]:
    """``[train]``: every setting as it ran. ``lr`` is the first param group's peak lr (the schedule's peak
    when a schedule sets it), ``weight_decay`` the first group's; ``optimizer``, ``stopper`` and ``schedule``
    name what was built (a name given stays as written; their tables hold every parameter)."""
    table = cfg.resolved()
    table["loss_fn"] = loss
    if not isinstance(cfg.optimizer, str):
        table["optimizer"] = optimizer["class"]
    groups = optimizer.get("param_groups") or [optimizer]
    lr = groups[0].get("lr", optimizer.get("lr"))
    if schedule_record is not None and schedule_record.get("peak_lr") is not None:
        lr = schedule_record["peak_lr"]
    table["lr"] = lr
    table["weight_decay"] = groups[0].get("weight_decay", optimizer.get("weight_decay"))
    table["stopper"] = False if stopper is False else _repr(stopper)
    if schedule is not None and not isinstance(cfg.schedule, str):
        table["schedule"] = _repr(schedule)
    return table


def run_tables(
    cfg: TrainConfig,
    *,
    optimizer: Any,
    stopper: Any,
    schedule: Any,
    factory: Any,
    total_steps: int,
    loss_fn: Any,
    model: Mapping[str, Any],
    data: Mapping[str, Any],
) -> dict[str, dict[str, Any]]:
    """The tables of ``config.toml`` (without ``[run]``): ``[train]`` as it ran, ``[optimizer]``,
    ``[stopper]``, ``[schedule]`` (``class = "none"`` without one), ``[model]`` and ``[data]``."""
    opt = describe_optimizer(optimizer, cfg.optimizer)
    sched = describe_schedule(schedule, cfg.schedule, factory, total_steps)
    train = ran_train_table(
        cfg,
        optimizer=opt,
        stopper=stopper,
        schedule=schedule,
        schedule_record=sched,
        loss=describe_loss(loss_fn, cfg.loss_fn),
    )
    return {
        "train": train,
        "optimizer": opt,
        "stopper": describe_policy(stopper, cfg.stopper),
        "schedule": sched if sched is not None else {"class": "none"},
        "model": dict(model),
        "data": dict(data),
    }

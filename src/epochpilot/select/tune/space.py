"""The search space of ``epochpilot.select.tune.run``: declared as data, validated with messages naming the parameter.

``{"lr": ("log", 1e-4, 1e-1), "batch_size": ("choice", [16, 32, 64])}``: kinds float, log, int and choice.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna

__all__ = [
    "JOB_RANGES",
    "KINDS",
    "Param",
    "apply_params",
    "job_parameters",
    "parse_space",
    "real_params",
    "space_from_key",
    "space_key",
]

KINDS = ("float", "log", "int", "choice")
_SCALARS = (type(None), bool, int, float, str)
#: job settings a config-driven study may not tune (they change where or how, not what, is trained)
_NOT_TUNABLE = ("device", "progress", "tensorboard", "checkpoint_every", "keep_last", "seed")


@dataclass(frozen=True)
class Param:
    """One dimension of the space: ``kind`` float | log | int | choice, a range or the choices."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        """Ask the trial for this parameter's value."""
        if self.kind == "choice":
            encoded = [_encode(c) for c in self.choices]
            return self.real(trial.suggest_categorical(self.name, encoded))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high))  # type: ignore[arg-type]
        return trial.suggest_float(self.name, self.low, self.high, log=self.kind == "log")  # type: ignore[arg-type]

    def real(self, stored: Any) -> Any:
        """The value a trial of this parameter holds, as declared: a list choice stored as JSON text comes
        back as a list (a fresh one); anything else unchanged."""
        if self.kind == "choice" and isinstance(stored, str):
            for choice in self.choices:
                if isinstance(choice, tuple) and _encode(choice) == stored:
                    return list(choice)
        return stored

    def to_json(self) -> list[Any]:
        """The declaration as JSON-safe data (what the study stores to detect a changed space)."""
        if self.kind == "choice":
            return ["choice", [list(c) if isinstance(c, tuple) else c for c in self.choices]]
        return [self.kind, self.low, self.high]


def _encode(value: Any) -> Any:
    """Optuna stores scalar choices only: a list choice travels as its JSON text."""
    return value if isinstance(value, _SCALARS) else json.dumps(list(value))


def _number(label: str, value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{label}: {what} must be a finite number, got {value!r}")
    return value


#: The job's numeric [train] settings a config-driven study may search: the smallest valid value (and whether
#: it is excluded) and the largest a trial may ask for. The caps keep one trial finite: ``max_epochs`` of 1e11
#: would allocate its forecast horizon (81 GiB) and never end.
JOB_RANGES: dict[str, tuple[float, bool, float | None]] = {
    "max_epochs": (1, False, 100_000),
    "max_steps": (1, False, 1_000_000_000),
    "batch_size": (1, False, 1_000_000),
    "patience": (0, False, 100_000),
    "accumulation": (1, False, 10_000),
    "lr": (0.0, True, None),
    "weight_decay": (0.0, False, None),
    "warmup": (0.0, False, None),
    "min_delta": (0.0, False, None),
    "clip_grad_norm": (0.0, True, None),
}


def _check_job_range(label: str, name: str, values: Sequence[Any]) -> None:
    """Refuse a value below what the job accepts or above what one trial may ask for, naming the key."""
    if name not in JOB_RANGES:
        return
    lowest, open_low, highest = JOB_RANGES[name]
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            continue  # not a number: the job's own check names the type
        if value < lowest or (open_low and value == lowest):
            bound = f"> {lowest:g}" if open_low else f">= {lowest:g}"
            raise ValueError(f"{label}: {value!r} is out of range: {name} must be {bound}")
        if highest is not None and value > highest:
            raise ValueError(
                f"{label}: {value!r} is out of range: a trial may ask for at most {name} = {highest:,}; "
                "lower it"
            )


def parse_space(
    space: Mapping[str, Any], allowed: Sequence[str] | None = None, *, where: str | None = None
) -> dict[str, Param]:
    """Validate a space such as ``{"lr": ("log", 1e-4, 1e-1), "batch_size": ("choice", [16, 32])}``.

    Kinds: ``("float", low, high)``, ``("log", low, high)`` (log-uniform, low > 0), ``("int", low, high)``
    (inclusive) and ``("choice", [options])`` (numbers, strings, booleans, None or lists of those). An
    unknown kind, an empty range (low >= high) or, when ``allowed`` is given, an unknown name or a value the
    job refuses or that is too large for one trial (:data:`JOB_RANGES`) raise a ValueError naming the parameter
    and the fix. ``where`` (a file, ``--space``) names the parameter as ``NAME in WHERE`` instead of
    ``space['NAME']``.
    """
    if not isinstance(space, Mapping) or not space:
        raise ValueError(
            "space must be a non-empty dict name -> (kind, ...), e.g. {'lr': ('log', 1e-4, 1e-1)}"
        )
    out: dict[str, Param] = {}
    for name, decl in space.items():
        label = f"space[{name!r}]" if where is None else f"{name} in {where}"
        if allowed is not None and name not in allowed and not str(name).startswith("model."):
            near = difflib.get_close_matches(str(name), list(allowed), n=1)
            hint = f"did you mean {near[0]!r}?" if near else f"use one of {', '.join(allowed)}"
            at = "" if where is None else f" in {where}"
            raise ValueError(
                f"space has unknown parameter {name!r}{at}: {hint} (or 'model.NAME' for a model argument)"
            )
        if not isinstance(decl, (tuple, list)) or not decl or not isinstance(decl[0], str):
            raise ValueError(
                f"{label} must be a tuple (kind, ...) such as ('log', 1e-4, 1e-1), got {decl!r}"
            )
        kind = decl[0]
        if kind not in KINDS:
            raise ValueError(f"{label}: unknown kind {kind!r}: use one of {', '.join(KINDS)}")
        if kind == "choice":
            if len(decl) != 2 or not isinstance(decl[1], (list, tuple)) or not decl[1]:
                raise ValueError(
                    f"{label}: write ('choice', [option, ...]) with at least one option"
                )
            for option in decl[1]:
                ok = isinstance(option, _SCALARS) or (
                    isinstance(option, (list, tuple))
                    and all(isinstance(v, _SCALARS) for v in option)
                )
                if not ok:
                    raise ValueError(
                        f"{label}: option {option!r} is not a number, string, bool, None or list of those"
                    )
            if allowed is not None:
                _check_job_range(label, name, decl[1])
            choices = tuple(tuple(o) if isinstance(o, list) else o for o in decl[1])
            seen: set[tuple[str, Any]] = set()
            for option in choices:
                stored = _encode(option)
                if (type(stored).__name__, stored) in seen:
                    raise ValueError(
                        f"{label}: option {stored!r} is given twice (a list and its JSON text are one "
                        "option to Optuna): keep one"
                    )
                seen.add((type(stored).__name__, stored))
            out[name] = Param(name, kind, choices=choices)
            continue
        if len(decl) != 3:
            raise ValueError(f"{label}: write ({kind!r}, low, high)")
        low, high = _number(label, decl[1], "low"), _number(label, decl[2], "high")
        if low >= high:
            raise ValueError(
                f"{label} has an empty range ({low!r}, {high!r}): make low < high "
                f"(or use ('choice', [{low!r}]) for a fixed value)"
            )
        if kind == "log" and low <= 0:
            raise ValueError(f"{label}: a 'log' range needs low > 0, got {low!r}")
        if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
            raise ValueError(f"{label}: an 'int' range needs whole numbers, got ({low}, {high})")
        if allowed is not None:
            _check_job_range(label, name, (low, high))
        out[name] = Param(name, kind, low, high)
    return out


def space_key(params: Mapping[str, Param]) -> str:
    """Canonical JSON of a parsed space (stored in the study to refuse a changed space)."""
    return json.dumps({n: p.to_json() for n, p in params.items()}, sort_keys=True)


def space_from_key(key: str) -> dict[str, Param]:
    """The parsed space back from its :func:`space_key` text (what a study stores); {} if unreadable."""
    try:
        data = json.loads(key)
        return parse_space({n: (d[0], *d[1:]) for n, d in data.items()})
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return {}


def real_params(
    params: Mapping[str, Any], space: Mapping[str, Param] | str | None
) -> dict[str, Any]:
    """A trial's ``params`` as declared: list choices as lists (Optuna stores them as JSON text).

    ``space`` is the parsed space or the study's stored ``epochpilot_space`` text; names it does not hold
    are returned unchanged.
    """
    if isinstance(space, str):
        space = space_from_key(space)
    space = space or {}
    return {k: space[k].real(v) if k in space else v for k, v in params.items()}


def job_parameters() -> list[str]:
    """Names a config-driven study may tune: the job's [train] settings (plus any ``model.NAME``)."""
    from epochpilot.jobs.spec import TrainSpec

    return [f.name for f in dataclasses.fields(TrainSpec) if f.name not in _NOT_TUNABLE]


def apply_params(spec: Any, params: Mapping[str, Any]) -> Any:
    """The job with the trial's settings: ``model.NAME`` goes to the model factory, the rest to [train]."""
    from epochpilot.jobs.spec import ModelSpec, override

    model = {k[len("model.") :]: v for k, v in params.items() if k.startswith("model.")}
    train = {k: v for k, v in params.items() if not k.startswith("model.")}
    spec = override(spec, "train", **train)
    if model:
        spec = dataclasses.replace(
            spec, model=ModelSpec(spec.model.factory, {**spec.model.kwargs, **model})
        )
    return spec

"""The search space of ``epochpilot.tune``: declared as data, validated with messages naming the parameter.

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

__all__ = ["KINDS", "Param", "job_parameters", "parse_space", "space_key"]

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
            return _decode(trial.suggest_categorical(self.name, encoded))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high))  # type: ignore[arg-type]
        return trial.suggest_float(self.name, self.low, self.high, log=self.kind == "log")  # type: ignore[arg-type]

    def to_json(self) -> list[Any]:
        """The declaration as JSON-safe data (what the study stores to detect a changed space)."""
        if self.kind == "choice":
            return ["choice", [list(c) if isinstance(c, tuple) else c for c in self.choices]]
        return [self.kind, self.low, self.high]


def _encode(value: Any) -> Any:
    """Optuna stores scalar choices only: a list choice travels as its JSON text."""
    return value if isinstance(value, _SCALARS) else json.dumps(list(value))


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _number(name: str, value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"space[{name!r}]: {what} must be a finite number, got {value!r}")
    return value


def parse_space(space: Mapping[str, Any], allowed: Sequence[str] | None = None) -> dict[str, Param]:
    """Validate a space such as ``{"lr": ("log", 1e-4, 1e-1), "batch_size": ("choice", [16, 32])}``.

    Kinds: ``("float", low, high)``, ``("log", low, high)`` (log-uniform, low > 0), ``("int", low, high)``
    (inclusive) and ``("choice", [options])`` (numbers, strings, booleans, None or lists of those). An
    unknown kind, an empty range (low >= high) or, when ``allowed`` is given, an unknown name raise a
    ValueError naming the parameter and the fix.
    """
    if not isinstance(space, Mapping) or not space:
        raise ValueError(
            "space must be a non-empty dict name -> (kind, ...), e.g. {'lr': ('log', 1e-4, 1e-1)}"
        )
    out: dict[str, Param] = {}
    for name, decl in space.items():
        if allowed is not None and name not in allowed and not str(name).startswith("model."):
            near = difflib.get_close_matches(str(name), list(allowed), n=1)
            hint = f"did you mean {near[0]!r}?" if near else f"use one of {', '.join(allowed)}"
            raise ValueError(
                f"space has unknown parameter {name!r}: {hint} (or 'model.NAME' for a model argument)"
            )
        if not isinstance(decl, (tuple, list)) or not decl or not isinstance(decl[0], str):
            raise ValueError(
                f"space[{name!r}] must be a tuple (kind, ...) such as ('log', 1e-4, 1e-1), got {decl!r}"
            )
        kind = decl[0]
        if kind not in KINDS:
            raise ValueError(
                f"space[{name!r}]: unknown kind {kind!r}: use one of {', '.join(KINDS)}"
            )
        if kind == "choice":
            if len(decl) != 2 or not isinstance(decl[1], (list, tuple)) or not decl[1]:
                raise ValueError(
                    f"space[{name!r}]: write ('choice', [option, ...]) with at least one option"
                )
            for option in decl[1]:
                ok = isinstance(option, _SCALARS) or (
                    isinstance(option, (list, tuple))
                    and all(isinstance(v, _SCALARS) for v in option)
                )
                if not ok:
                    raise ValueError(
                        f"space[{name!r}]: option {option!r} is not a number, string, bool, None or list of those"
                    )
            choices = tuple(tuple(o) if isinstance(o, list) else o for o in decl[1])
            out[name] = Param(name, kind, choices=choices)
            continue
        if len(decl) != 3:
            raise ValueError(f"space[{name!r}]: write ({kind!r}, low, high)")
        low, high = _number(name, decl[1], "low"), _number(name, decl[2], "high")
        if low >= high:
            raise ValueError(
                f"space[{name!r}] has an empty range ({low!r}, {high!r}): make low < high "
                f"(or use ('choice', [{low!r}]) for a fixed value)"
            )
        if kind == "log" and low <= 0:
            raise ValueError(f"space[{name!r}]: a 'log' range needs low > 0, got {low!r}")
        if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
            raise ValueError(
                f"space[{name!r}]: an 'int' range needs whole numbers, got ({low}, {high})"
            )
        out[name] = Param(name, kind, low, high)
    return out


def space_key(params: Mapping[str, Param]) -> str:
    """Canonical JSON of a parsed space (stored in the study to refuse a changed space)."""
    return json.dumps({n: p.to_json() for n, p in params.items()}, sort_keys=True)


def job_parameters() -> list[str]:
    """Names a config-driven study may tune: the job's [train] settings (plus any ``model.NAME``)."""
    from epochpilot.job import TrainSpec

    return [f.name for f in dataclasses.fields(TrainSpec) if f.name not in _NOT_TUNABLE]

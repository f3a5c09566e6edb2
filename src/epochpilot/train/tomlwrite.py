"""Config values as plain TOML/JSON-safe data, and a small TOML writer (``tomllib`` only reads): what
``config.toml`` and ``job.toml`` are written with."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["plain", "to_toml"]


def plain(value: Any) -> Any:
    """A TOML/JSON-safe rendering of a config value."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return repr(value)
    if hasattr(value, "param_groups"):
        return f"{type(value).__module__}.{type(value).__qualname__}"
    qual = getattr(value, "__qualname__", None)
    if qual is not None:
        return f"{getattr(value, '__module__', '')}.{qual}"
    if type(value).__repr__ is object.__repr__:
        return f"{type(value).__module__}.{type(value).__qualname__}"
    return repr(value)


def _toml_value(value: Any) -> str:
    if value is None:
        return '"none"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def to_toml(tables: Mapping[str, Mapping[str, Any]]) -> str:
    """Render ``{table: {key: value}}`` as TOML (None as the string "none"); ``tomllib`` reads it back."""
    lines: list[str] = []
    for table, values in tables.items():
        lines.append(f"[{_toml_key(table)}]")
        lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in values.items())
        lines.append("")
    return "\n".join(lines)

"""Durations as users write them (``90``, ``"90s"``, ``"10min"``, ``"1h30min"``) in seconds, for ``max_time``.

Standard library only, so the command line checks ``--max-time`` without importing torch.
"""

from __future__ import annotations

import math
import re
from typing import Any

from epochpilot.errors import ConfigError

__all__ = ["parse_duration"]

_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hrs": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
}
_PART = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*")
_EXAMPLES = "give seconds (90) or a string like '90s', '10min', '2h' or '1h30min'"


def parse_duration(value: Any, name: str = "max_time") -> float | None:
    """Seconds in ``value``: a number of seconds or ``"90s"``, ``"10min"``, ``"2h"``, ``"1h30min"``; None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"{name}={value!r} is not a duration: {_EXAMPLES}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        seconds, pos = 0.0, 0
        while pos < len(text):
            match = _PART.match(text, pos)
            if not match or match.end() == pos or match.group(2) not in _UNITS and match.group(2):
                raise ConfigError(f"{name}={value!r} is not understood: {_EXAMPLES}")
            unit = match.group(2) or "s"
            if not match.group(2) and (pos > 0 or match.end() < len(text)):
                raise ConfigError(f"{name}={value!r} is not understood: {_EXAMPLES}")
            seconds += float(match.group(1)) * _UNITS[unit]
            pos = match.end()
        if not text:
            raise ConfigError(f"{name}={value!r} is empty: {_EXAMPLES}")
    else:
        raise ConfigError(
            f"{name} must be a number of seconds or a string, got {type(value).__name__}: {_EXAMPLES}"
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{name} must be a positive duration, got {value!r}: {_EXAMPLES}")
    return seconds

"""The exception types epochpilot raises, so callers can catch "bad config" apart from "bad data".

Each is also a ``ValueError`` where the cause is a bad value, so ``except ValueError`` keeps working.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ConfigTypeError",
    "DataError",
    "EpochpilotError",
    "FieldError",
    "short_list",
]


class EpochpilotError(Exception):
    """Base of every error epochpilot raises on purpose."""


class ConfigError(EpochpilotError, ValueError):
    """A configuration field has a bad value; the message names the field and the fix."""


class DataError(EpochpilotError, ValueError):
    """The data (or the model's output against it) cannot be trained on as given."""


class CheckpointError(EpochpilotError):
    """A checkpoint is missing, truncated, foreign or unsafe; the message names the file."""


class ConfigTypeError(ConfigError, TypeError):
    """An argument has the wrong type (a loss returning a float, a callback that is not one); a TypeError too."""


class FieldError(ConfigError):
    """A bad value of one setting, reworded for where the user wrote it.

    ``key`` is the setting's dotted name (``train.max_epochs``) and ``problem`` the rest of the message
    (``must be >= 1, got 0``); the message is ``"<name> <problem>"`` where ``name`` is the flag or TOML key
    the user wrote (``--max-epochs``, ``[train] max_epochs in job.toml``), ``key`` until :meth:`named` says.

    >>> str(FieldError("train.max_epochs", "must be >= 1, got 0").named("--max-epochs"))
    '--max-epochs must be >= 1, got 0'
    """

    def __init__(self, key: str, problem: str, name: str | None = None) -> None:
        self.key, self.problem, self.name = key, problem, name or key
        super().__init__(f"{self.name} {problem}")

    def named(self, name: str) -> FieldError:
        """The same error, naming the setting as ``name`` (a flag, or a TOML key and its file)."""
        return FieldError(self.key, self.problem, name)

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across worker processes
        return (FieldError, (self.key, self.problem, self.name))


def short_list(items: Iterable[Any], n: int = 5, *, quote: bool = True) -> str:
    """``items`` joined by commas, cut after ``n`` with "... and 19,990 more" (messages stay one short line).

    >>> short_list(["a", "b", "c"], 2)
    "'a', 'b' ... and 1 more"
    """
    items = list(items)
    shown = ", ".join(repr(i) if quote else str(i) for i in items[:n])
    rest = len(items) - n
    return f"{shown} ... and {rest:,} more" if rest > 0 else shown

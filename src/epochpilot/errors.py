"""The exception types epochpilot raises, so callers can catch "bad config" apart from "bad data".

Each is also a ``ValueError`` where the cause is a bad value, so ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = ["CheckpointError", "ConfigError", "DataError", "EpochpilotError"]


class EpochpilotError(Exception):
    """Base of every error epochpilot raises on purpose."""


class ConfigError(EpochpilotError, ValueError):
    """A configuration field has a bad value; the message names the field and the fix."""


class DataError(EpochpilotError, ValueError):
    """The data (or the model's output against it) cannot be trained on as given."""


class CheckpointError(EpochpilotError):
    """A checkpoint is missing, truncated, foreign or unsafe; the message names the file."""

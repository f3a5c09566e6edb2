"""How a refusal about a run directory names the way out, in the place where it reaches the user.

The same check answers ``fit(run_dir=...)`` and ``epochpilot train --run-dir``: a Python caller must read the
argument names (``run_dir``, ``resume='auto'``, ``overwrite=True``), a command-line user what they can type
(``--run-dir``, ``--resume``, ``epochpilot resume RUN_DIR``, ``--overwrite``). The CLI sets its command's
:class:`Words` for the time the command runs (:func:`speaking`); Python's are the default.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PYTHON", "Words", "cli_words", "speaking", "words"]


@dataclass(frozen=True)
class Words:
    """The name of the run-directory argument and the phrases for each way out (None: there is none where
    the refusal is read); ``{path}`` in a phrase becomes the run directory."""

    field: str = "run_dir"
    #: continue the run there (same config)
    resume: str | None = "pass resume='auto' to continue it"
    #: continue it although its config differs or cannot be compared
    anyway: str | None = "pass resume=True to continue it anyway"
    #: replace the run
    overwrite: str | None = "pass overwrite=True to replace it"
    #: use another folder
    other: str | None = "use another run_dir"
    #: True for Python's wording
    python: bool = True

    def ways(self, path: str | Path, *phrases: str | None) -> str:
        """``phrases`` that exist here joined as "a, b, or c", ``{path}`` filled in."""
        parts = [p.replace("{path}", str(path)) for p in phrases if p]
        if len(parts) < 2:
            return "".join(parts)
        return f"{', '.join(parts[:-1])}, or {parts[-1]}"


PYTHON = Words()

_REPLACE = "pass --overwrite to replace it"
_CLI: dict[str, Words] = {
    "train": Words(
        "--run-dir", "pass --resume to continue it", None, _REPLACE, "use another --run-dir", False
    ),
    "resume": Words(
        "RUN_DIR",
        None,
        None,
        "start it again with 'epochpilot train ... --run-dir {path} --overwrite'",
        None,
        False,
    ),
    "continue": Words("--out", None, None, _REPLACE, "use another --out", False),
}
#: commands that write a run directory and have no way to continue one there (cv, tune, finetune, demo)
_CLI_DEFAULT = Words("--run-dir", None, None, _REPLACE, "use another --run-dir", False)

_CURRENT: ContextVar[Words] = ContextVar("epochpilot_words", default=PYTHON)


def cli_words(command: str) -> Words:
    """The wording for ``epochpilot COMMAND``."""
    return _CLI.get(command, _CLI_DEFAULT)


def words() -> Words:
    """The wording in force here: the running CLI command's, else Python's."""
    return _CURRENT.get()


@contextlib.contextmanager
def speaking(wording: Words) -> Iterator[Words]:
    """Use ``wording`` for the refusals raised inside the block."""
    token = _CURRENT.set(wording)
    try:
        yield wording
    finally:
        _CURRENT.reset(token)

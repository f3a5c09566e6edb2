"""Data in: tables and CSV loading (table, csvfile), labelled texts (text) and the data audit (audit/).

Imports core and the shared leaves only; never the packages built on it (jobs, select, finetune, report, cli).
``epochpilot.data`` gives every public name of the module it was before (``table`` now), on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from epochpilot.data.table import (  # noqa: F401 - for type checkers; the names load on first use
        BUILTINS,
        IMPUTE,
        TASKS,
        Preprocessor,
        Table,
        infer_task,
        load_builtin,
        read_csv,
        read_frame,
        write_builtin_csv,
    )

#: every public name of the old module (its ``__all__`` and the public names outside it), loaded on first use
_NAMES = (
    "BUILTINS",
    "IMPUTE",
    "Preprocessor",
    "TASKS",
    "Table",
    "infer_task",
    "load_builtin",
    "read_csv",
    "read_frame",
    "write_builtin_csv",
)

__all__ = [
    "BUILTINS",
    "Preprocessor",
    "Table",
    "load_builtin",
    "read_csv",
    "read_frame",
    "write_builtin_csv",
]


def __getattr__(name: str) -> Any:
    """A name of ``table`` on first use (PEP 562): importing a sibling module
    (the command line's CSV check imports ``epochpilot.data.csvfile``) stays free of numpy and pandas."""
    if name in _NAMES:
        return getattr(importlib.import_module("epochpilot.data.table"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NAMES))

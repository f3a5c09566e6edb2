"""Encoder fine-tuning for text classification: the model and its training (encoder), representation probes
(probe), mixed general and task data (mixed) and staged schedules across them (stages).

``epochpilot.finetune`` gives every public name of the module it was before (``encoder`` now), on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from epochpilot.finetune.encoder import (  # noqa: F401 - for type checkers; the names load on first use
        MODEL_NAME,
        FreezeEncoder,
        TextClassifier,
        build_model,
        bundled_model_path,
        finetune,
        fresh_copy,
        linear_module_names,
        load_encoder,
        optimizer_factory,
    )

#: every public name of the old module (its ``__all__`` and the public names outside it), loaded on first use
_NAMES = (
    "FreezeEncoder",
    "MODEL_NAME",
    "TextClassifier",
    "build_model",
    "bundled_model_path",
    "finetune",
    "fresh_copy",
    "linear_module_names",
    "load_encoder",
    "optimizer_factory",
)

__all__ = [
    "MODEL_NAME",
    "TextClassifier",
    "build_model",
    "finetune",
    "linear_module_names",
    "load_encoder",
    "optimizer_factory",
]


def __getattr__(name: str) -> Any:
    """A name of ``encoder`` on first use (PEP 562): importing a sibling module
    (``epochpilot.finetune.probe``) does not load the encoder code."""
    if name in _NAMES:
        return getattr(importlib.import_module("epochpilot.finetune.encoder"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NAMES))

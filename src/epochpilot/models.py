"""Default models for tabular data, and loading a user's model factory from ``"package.module:function"``."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from epochpilot.errors import ConfigError

__all__ = ["import_factory", "mlp"]


def mlp(
    n_features: int, n_outputs: int, *, hidden: Sequence[int] = (128, 64), dropout: float = 0.1
) -> nn.Module:
    """A ReLU MLP with dropout: the default model for ``epochpilot train`` on a table."""
    if n_features < 1 or n_outputs < 1:
        raise ConfigError(
            f"mlp needs n_features >= 1 and n_outputs >= 1, got {n_features}, {n_outputs}"
        )
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"model.dropout must be in [0, 1), got {dropout}")
    layers: list[nn.Module] = []
    width = n_features
    for h in hidden:
        if int(h) < 1:
            raise ConfigError(f"model.hidden sizes must be >= 1, got {list(hidden)}")
        layers += [nn.Linear(width, int(h)), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = int(h)
    layers.append(nn.Linear(width, n_outputs))
    return nn.Sequential(*layers)


def import_factory(spec: str, search: Sequence[str | Path] = ()) -> Callable[..., nn.Module]:
    """Resolve ``"package.module:function"`` to the callable, also looking in ``search`` folders (e.g. the
    job file's folder and the working directory); errors say what to fix."""
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise ConfigError(f"model factory {spec!r} must look like 'package.module:function'")
    module_name, attr = spec.split(":")
    for folder in search:
        folder = str(Path(folder).resolve())
        if folder not in sys.path:
            sys.path.append(folder)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"model factory module {module_name!r} cannot be imported ({exc}): check PYTHONPATH"
        ) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"{module_name} has no callable {attr!r}: check the model factory name")
    return factory


def build_model(
    spec: str,
    n_features: int,
    n_outputs: int,
    kwargs: dict[str, Any],
    search: Sequence[str | Path] = (),
) -> nn.Module:
    """Call the factory with the data's shape (when it accepts them) and the TOML's keyword arguments."""
    factory = import_factory(spec, search)
    params = inspect.signature(factory).parameters
    shape = {"n_features": n_features, "n_outputs": n_outputs}
    call = {k: v for k, v in shape.items() if k in params or _takes_kwargs(params)}
    try:
        model = factory(**call, **kwargs)
    except TypeError as exc:
        raise ConfigError(
            f"model factory {spec} rejected its arguments {sorted({**call, **kwargs})}: {exc}"
        ) from None
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model factory {spec} returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def _takes_kwargs(params: Any) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())

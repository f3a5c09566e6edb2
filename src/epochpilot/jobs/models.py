"""Default models for tabular data, and loading a user's model factory from ``"package.module:function"``.

A run directory is data: the factory its ``model.json``/``job.toml`` names is imported only when it is one of
:data:`BUILTIN_FACTORIES` (compared as a string, before any import) or the caller trusts the run directory
(``--trust-factory`` / ``trust_factory=True``, as Hugging Face's ``trust_remote_code``); see :func:`check_factory`.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from torch import nn

from epochpilot.errors import ConfigError

__all__ = ["BUILTIN_FACTORIES", "check_factory", "import_factory", "mlp"]


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


#: The factories epochpilot itself writes into a run directory: loading a run may use these without trust.
BUILTIN_FACTORIES: Mapping[str, Callable[..., nn.Module]] = MappingProxyType(
    {"epochpilot.models:mlp": mlp}
)


def check_factory(spec: Any, source: str | Path, trust_factory: bool) -> None:
    """Refuse, before anything is imported, a model factory that a run directory's file names unless it is
    built in or ``trust_factory`` is set; the ConfigError names the file, the factory and the fix."""
    if trust_factory or (isinstance(spec, str) and spec in BUILTIN_FACTORIES):
        return
    raise ConfigError(
        f"{source} names model factory {spec!r}, not built into epochpilot: loading this run would run its "
        f"code; pass --trust-factory (Python: trust_factory=True) only if you trust where this run directory "
        f"came from"
    )


def import_factory(spec: str, search: Sequence[str | Path] = ()) -> Callable[..., nn.Module]:
    """Resolve ``"package.module:function"`` to the callable, also looking in ``search`` folders (e.g. the
    job file's folder and the working directory); errors say what to fix. A built-in factory is returned
    without importing anything or touching ``sys.path``."""
    if isinstance(spec, str) and spec in BUILTIN_FACTORIES:
        return BUILTIN_FACTORIES[spec]
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

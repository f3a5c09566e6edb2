"""Is it a callback? The check behind ``callbacks=[...]``: each item must offer what the loop reads, else one
ConfigTypeError line naming the item and the fix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from epochpilot.errors import ConfigError, ConfigTypeError
from epochpilot.train.events import EVENTS

__all__ = ["check_callbacks"]

#: what the loop reads from every callback (besides at least one ``on_<event>`` method)
_CALLBACK_NEEDS = ("state_key", "state_dict", "load_state_dict")


def check_callbacks(callbacks: Any) -> tuple[Any, ...]:
    """``callbacks`` as a tuple; anything that is not a list of callbacks is a ConfigTypeError naming the item."""
    if callbacks is None:
        return ()
    if isinstance(callbacks, (str, bytes, Mapping)) or not isinstance(callbacks, Sequence):
        fix = "wrap it in a list: callbacks=[cb]" if _is_callback(callbacks) else "give a list"
        raise ConfigTypeError(
            f"callbacks must be a list of callbacks, got {type(callbacks).__name__}: {fix}"
        )
    for i, cb in enumerate(callbacks):
        if not _is_callback(cb):
            missing = [a for a in _CALLBACK_NEEDS if not hasattr(cb, a)]
            what = f"lacks {', '.join(missing)}" if missing else "has no on_<event> method"
            if isinstance(cb, type):
                what = f"a class: pass an instance, {cb.__name__}()"
            raise ConfigTypeError(
                f"callbacks[{i}] ({type(cb).__name__}) is not a callback ({what}): subclass "
                f"epochpilot.train.Callback and override on_<event> (one of {', '.join(EVENTS)})"
            )
    keys = [cb.state_key for cb in callbacks]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise ConfigError(
            f"callbacks share the state_key {dupes}: give each a distinct state_key (it names the "
            f"callback's state in checkpoints)"
        )
    return tuple(callbacks)


def _is_callback(obj: object) -> bool:
    if isinstance(obj, type) or not all(hasattr(obj, a) for a in _CALLBACK_NEEDS):
        return False
    return any(callable(getattr(obj, f"on_{event}", None)) for event in EVENTS)

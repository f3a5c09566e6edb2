"""The one line an adapter prints when training ends (``verbose=True``).

In the frameworks' style: Keras' ``EarlyStopping(verbose=1)`` prints ``Epoch 21: early stopping`` (then
``Restoring model weights from the end of the best epoch: 15.``), Lightning's ``EarlyStopping(verbose=True)``
logs its reason (``Monitored metric val_loss did not improve in the last 6 records. Best score: 0.145.
Signaling Trainer to stop.``). The adapters say it in one line, with epochpilot's plain stop message and the
epoch whose weights the model holds now: ``Epoch 21: early stopping: <why>. Kept epoch 15 (val_loss 0.145):
its weights are restored. Saved to runs/x/model.keras.``

Pure: standard library only.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["plain", "stop_line"]

_LEAD = re.compile(r"^stopped at (?:epoch|evaluation|validation) \d+\s*[:.,;]?\s*", re.IGNORECASE)
_TAIL = re.compile(r"\s*:\s*(?:stop|continue)\.?$")
_KEPT = re.compile(
    r"\s*Kept (?:epoch|evaluation|validation) \d+(?: \([^)]*\))?\s*[.;]?", re.IGNORECASE
)


def plain(message: str) -> str:
    """A policy's message as the body of the line: no leading ``Stopped at epoch N:`` (the line says it
    already), no trailing ``: stop`` and no ``Kept epoch N (...)`` (the adapter says which epoch the model
    holds, which ``restore_best=False`` changes); ends with a full stop."""
    text = _TAIL.sub("", _LEAD.sub("", " ".join(str(message).split())))
    text = _KEPT.sub("", text).strip()
    return text if not text or text.endswith((".", "!", "?")) else f"{text}."


def _value(value: Any) -> str:
    return "none" if value is None else f"{float(value):.4g}"


def stop_line(core: Any, *, restored: bool, saved: str | None = None, unit: str = "epoch") -> str:
    """The line for a finished run seen by ``core`` (a ``PilotCore``): the stop (or that none came), the
    kept epoch (``restored``: the best epoch's weights were put back) and where the model was ``saved``."""
    last = int(core.history[-1]["epoch"]) if core.history else None
    word = unit.capitalize()
    if core.stop_epoch is not None:
        why = str(getattr(core, "stop_why", "") or "").strip().rstrip(".")
        if why and core.note:
            why = f"{why} ({core.note})"
        head = f"{word} {core.stop_epoch}: early stopping: {plain(why or core.stop_message)}"
    elif last is None:
        return f"epochpilot: training ended before the first {unit} was judged; nothing to keep."
    else:
        head = f"{word} {last}: training ran to its end; the stop policy did not fire."
    best = core.best_epoch
    value = f"{core.monitor} {_value(core.best_value)}"
    if best is None:
        kept = f"No {unit} had a finite {core.monitor}: the model keeps its last weights."
    elif restored and best != last:
        kept = f"Kept {unit} {best} ({value}): its weights are restored."
    elif best == last:
        kept = f"Kept {unit} {best} ({value}), the last one."
    else:
        kept = (
            f"The model keeps the last {unit} ({last}; restore_best=False); "
            f"the best was {unit} {best} ({value})."
        )
    parts = [head, kept, f"Saved to {saved}." if saved else ""]
    return " ".join(part for part in parts if part)

"""The loop's state and its few named events; callbacks read the state and answer with requests.

Events, in order: ``fit_start``, then per epoch ``epoch_start``, ``step_end`` (after each optimizer update),
``validation_end`` (the epoch's metrics row is complete), ``epoch_end`` (row final, decisions taken), and
``fit_end``. A callback implements ``on_<event>(state)`` for the events it needs and may return ``None``, a
:class:`Request`, an action string ("stop", "save") or a list of those. It never drives the loop itself.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from epochpilot.core.stopping.base import Reason

__all__ = ["EVENTS", "Callback", "Request", "TrainState", "as_requests"]

EVENTS = ("fit_start", "epoch_start", "step_end", "validation_end", "epoch_end", "fit_end")
ACTIONS = ("stop", "save", "best", "extend")


@dataclass(frozen=True)
class Request:
    """What a callback asks of the loop.

    ``stop`` ends training after this event (with ``reason``/``message``: one plain sentence; ``details``:
    the numbers behind it; ``why``: the bare reason clause, for a loop that rewords the stop, e.g. a
    cooldown); ``save`` writes a checkpoint now; ``best`` says the monitored value improved (``value``), so
    the loop keeps a copy of these weights; ``extend`` asks for ``extend_by`` more epochs past
    ``max_epochs``, which the loop grants only as far as the user's ``extend`` setting allows
    (``Budget.grant``): the budget the user gave is a hard cap otherwise.
    """

    action: str
    reason: Reason = Reason.USER
    message: str = ""
    value: float | None = None
    extend_by: int = 0
    details: str = ""
    why: str = ""

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"Request action {self.action!r} is unknown: use one of {ACTIONS}")


def as_requests(answer: Any) -> list[Request]:
    """Normalise a callback's answer (None, str, Request or an iterable of those) into a list."""
    if answer is None:
        return []
    if isinstance(answer, Request):
        return [answer]
    if isinstance(answer, str):
        return [Request(answer)]
    if isinstance(answer, Iterable):
        return [r for item in answer for r in as_requests(item)]
    raise TypeError(f"a callback returned {answer!r}: return None, 'stop', 'save' or a Request")


@dataclass
class TrainState:
    """Everything the loop counts. Callbacks read it; only the loop writes it.

    ``epoch`` is the current (1-based) epoch while it runs and the last finished one between epochs;
    ``epochs_done`` counts finished epochs; ``batch`` counts batches consumed in the running epoch;
    ``step`` counts optimizer updates since the start of the run.
    """

    epoch: int = 0
    epochs_done: int = 0
    step: int = 0
    batch: int = 0
    max_epochs: int = 0
    steps_per_epoch: int = 0
    batches_per_epoch: int = 0
    monitor: str = "val_loss"
    mode: str = "min"
    best_epoch: int | None = None
    best_value: float | None = None
    stop: bool = False
    stop_reason: Reason = Reason.CONTINUE
    stop_message: str = ""
    #: the numbers behind the stop sentence (the policy's details line), or ""
    stop_details: str = ""
    lr_scale: float = 1.0
    rollbacks: int = 0
    #: validations fed to the stop policy so far (with ``val_every_steps`` several per epoch)
    checks: int = 0
    #: ``val_every_steps`` (0: validate once per epoch)
    val_every: int = 0
    #: True when the best weights came from a mid-epoch validation
    best_mid: bool = False
    #: ``cooldown="on_stop"``: the update the cooldown starts at (None: not started), its length in updates,
    #: the epoch the stopper fired in, and the stopper's reason and message (see ``train.cooldown``)
    cooldown_start: int | None = None
    cooldown_steps: int = 0
    cooldown_epoch: int | None = None
    cooldown_reason: str = ""
    cooldown_note: str = ""
    #: ``cooldown="sweep"``: the branch counters and results, JSON-safe (see ``train.sweep``); None otherwise
    sweep: dict[str, Any] | None = None
    rank: int = 0
    world_size: int = 1
    history: list[dict[str, Any]] = field(default_factory=list)
    #: every validation's row when ``val_every_steps`` is set (mid-epoch ones and epoch-end ones)
    checks_log: list[dict[str, Any]] = field(default_factory=list)
    #: the running epoch's row once validation has run (for ``validation_end``/``epoch_end`` callbacks).
    row: dict[str, Any] = field(default_factory=dict)
    #: the loss of the last batch as a tensor (no sync); for progress displays.
    last_loss: Any = None
    #: the optimizer, for callbacks that set the learning rate (schedules).
    optimizer: Any = None

    @property
    def is_main(self) -> bool:
        """True on the process that writes records and checkpoints (rank 0)."""
        return self.rank == 0

    def counters(self) -> dict[str, Any]:
        """The JSON-safe counters saved in a checkpoint."""
        return {
            "epoch": self.epoch,
            "epochs_done": self.epochs_done,
            "step": self.step,
            "batch": self.batch,
            "max_epochs": self.max_epochs,
            "best_epoch": self.best_epoch,
            "best_value": self.best_value,
            "stop": self.stop,
            "stop_reason": self.stop_reason.value,
            "stop_message": self.stop_message,
            "stop_details": self.stop_details,
            "lr_scale": self.lr_scale,
            "rollbacks": self.rollbacks,
            "checks": self.checks,
            "best_mid": self.best_mid,
            "cooldown_start": self.cooldown_start,
            "cooldown_steps": self.cooldown_steps,
            "cooldown_epoch": self.cooldown_epoch,
            "cooldown_reason": self.cooldown_reason,
            "cooldown_note": self.cooldown_note,
            "sweep": copy.deepcopy(self.sweep),
        }

    def load_counters(self, data: dict[str, Any]) -> None:
        """Restore :meth:`counters` output."""
        for key, value in data.items():
            if key == "stop_reason":
                value = Reason(value)
            elif key == "sweep":
                value = copy.deepcopy(value)
            setattr(self, key, value)


class Callback:
    """Base for features attached to the loop. Override only the ``on_<event>`` methods you need.

    ``state_key`` names the callback's entry in checkpoints; keep it stable. Give two instances of one class
    different keys.
    """

    @property
    def state_key(self) -> str:
        """The stable name of this callback's state in a checkpoint (default: the class name)."""
        return type(self).__name__

    def state_dict(self) -> dict[str, Any]:
        """State to checkpoint (plain values and tensors only)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""

    def on_fit_start(self, state: TrainState) -> Any:
        """Training begins (after any resume)."""

    def on_epoch_start(self, state: TrainState) -> Any:
        """An epoch begins (``state.epoch`` is its 1-based number)."""

    def on_step_end(self, state: TrainState) -> Any:
        """An optimizer update was made (``state.step`` counts it)."""

    def on_validation_end(self, state: TrainState) -> Any:
        """The epoch's metrics are in ``state.row``."""

    def on_epoch_end(self, state: TrainState) -> Any:
        """The epoch is over and its row is in ``state.history``."""

    def on_fit_end(self, state: TrainState) -> Any:
        """Training ended (``state.stop_reason`` says why); best weights are back in the model."""


def hooks(callbacks: Iterable[Callback], event: str) -> list[Any]:
    """The bound ``on_<event>`` methods of the callbacks that override it (so no-ops cost nothing)."""
    name = f"on_{event}"
    base = getattr(Callback, name)
    found = []
    for cb in callbacks:
        fn = getattr(cb, name, None)
        if fn is not None and getattr(fn, "__func__", fn) is not base:
            found.append(fn)
    return found

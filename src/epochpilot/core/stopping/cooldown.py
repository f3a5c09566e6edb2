"""When to cool down: the pure decisions behind ``cooldown="on_stop"`` and ``cooldown="sweep"``.

The schedule (:class:`epochpilot.core.schedules.WSD`) says *how* the lr falls once a cooldown starts; the loop
says *how* to fork a branch (copy model, optimizer and RNG state, train it, come back). This module says
*when*: :func:`cooldown_length` sizes a cooldown from the steps trained so far, :class:`BranchPoints` spaces
the sweep's branch points geometrically in optimizer steps, and :class:`SweepStop` ends the trunk when new
branches stop improving on earlier ones. Everything here holds plain numbers, so the decisions can be
recomputed from the stored branch results, and the state round-trips through JSON.

Pure: standard library only.

Example::

    >>> from epochpilot.core.stopping.cooldown import BranchPoints, SweepStop, cooldown_length
    >>> BranchPoints(first_step=40).points_until(400)
    [40, 80, 160, 320]
    >>> cooldown_length(320, 0.2)
    64
    >>> stop = SweepStop("min", patience=2)
    >>> [stop.update(v).stop for v in (0.9, 0.8, 0.85, 0.81)]
    [False, False, False, True]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from epochpilot.core.stopping.base import STATE_VERSION, check_float, check_int, check_mode

__all__ = [
    "BranchPoints",
    "SweepDecision",
    "SweepStop",
    "cooldown_length",
    "next_branch",
    "whole_epochs",
]


def cooldown_length(steps_so_far: int, fraction: float) -> int:
    """Updates in a cooldown that is ``fraction`` of the ``steps_so_far`` (at least one update)."""
    check_int("steps_so_far", steps_so_far, minimum=0)
    fraction = check_float("fraction", fraction, minimum=0.0, strict=True)
    if fraction > 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}: a share of the steps so far")
    return max(1, round(fraction * steps_so_far))


@dataclass(frozen=True)
class BranchPoints:
    """Branch points at ``first_step * factor**k`` optimizer steps (k = 0, 1, ...), rounded to whole steps."""

    first_step: int
    factor: float = 2.0

    def __post_init__(self) -> None:
        check_int("first_step", self.first_step, minimum=1)
        check_float("factor", self.factor, minimum=1.0, strict=True)

    def point(self, k: int) -> int:
        """The k-th branch point (0-based), strictly after the previous one."""
        check_int("k", k, minimum=0)
        return max(self.first_step + k, round(self.first_step * self.factor**k))

    def next_after(self, step: int) -> int:
        """The first branch point strictly after ``step``."""
        k = 0
        while self.point(k) <= step:
            k += 1
        return self.point(k)

    def points_until(self, step: int) -> list[int]:
        """Every branch point <= ``step``."""
        out, k = [], 0
        while self.point(k) <= step:
            out.append(self.point(k))
            k += 1
        return out


@dataclass(frozen=True)
class SweepDecision:
    """The answer to one branch result: stop the trunk or not, and the best branch so far (0-based)."""

    stop: bool
    improved: bool
    best_branch: int | None
    best_value: float | None
    message: str


class SweepStop:
    """Stop the trunk when ``patience`` branches in a row did not beat the best earlier branch by more than
    ``min_delta`` (relative: 0.01 means 1% of the best value's magnitude). A non-finite branch result never
    counts as an improvement."""

    def __init__(self, mode: str, patience: int = 2, min_delta: float = 0.0) -> None:
        self.mode = check_mode(mode)
        self.patience = check_int("patience", patience, minimum=1)
        self.min_delta = check_float("min_delta", min_delta, minimum=0.0)
        self.values: list[float] = []
        self.best_branch: int | None = None
        self.wait = 0

    @property
    def best_value(self) -> float | None:
        """The best branch result so far (None before the first finite one)."""
        return None if self.best_branch is None else self.values[self.best_branch]

    def _beats(self, value: float) -> bool:
        best = self.best_value
        if not math.isfinite(value):
            return False
        if best is None:
            return True
        margin = self.min_delta * abs(best)
        return value < best - margin if self.mode == "min" else value > best + margin

    def update(self, value: float) -> SweepDecision:
        """Record the best validated value of the branch that just ended; decide whether to stop the trunk."""
        value = float(value)
        index = len(self.values)
        self.values.append(value)
        improved = self._beats(value)
        if improved:
            self.best_branch, self.wait = index, 0
        else:
            self.wait += 1
        stop = self.wait >= self.patience
        best = self.best_value
        best_text = (
            "none finite yet" if best is None else f"{best:.4g} (branch {self.best_branch + 1})"
        )
        what = "improved on" if improved else "did not improve on"
        message = (
            f"cooldown branch {index + 1} ({value:.4g}) {what} the best so far; best {best_text}; "
            + (
                f"{self.wait} branch{'es' if self.wait > 1 else ''} in a row without improvement: "
                "stop the trunk"
                if stop
                else "continue"
            )
        )
        return SweepDecision(stop, improved, self.best_branch, best, message)

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state (non-finite values as strings)."""
        return {
            "version": STATE_VERSION,
            "values": [v if math.isfinite(v) else repr(v) for v in self.values],
            "best_branch": self.best_branch,
            "wait": self.wait,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output; refuses a state with other keys or another version."""
        keys = {"version", "values", "best_branch", "wait"}
        if set(state) != keys:
            raise ValueError(f"SweepStop state has keys {sorted(state)}, expected {sorted(keys)}")
        if state["version"] != STATE_VERSION:
            raise ValueError(
                f"SweepStop state version {state['version']} is not {STATE_VERSION}: "
                "it was saved by another epochpilot version"
            )
        self.values = [float(v) for v in state["values"]]
        self.best_branch = state["best_branch"]
        self.wait = int(state["wait"])


def next_branch(
    trunk_step: int,
    steps_left: int,
    steps_per_epoch: int,
    fraction: float,
    point: int,
) -> tuple[str, int]:
    """What the sweep does at the end of a trunk epoch: ``("none", 0)``, ``("branch", L)`` or ``("final", L)``.

    ``trunk_step`` counts the trunk's updates (branches excluded), ``steps_left`` the updates left before the
    run's cap (trunk and branches share it), ``point`` the next branch point in trunk updates. A branch
    cools down over ``fraction`` of the trunk's updates. The last branch takes every update left (the budget
    is a cap, and the model kept at the cap is annealed): it starts when another trunk epoch would leave too
    few updates for the cooldown after it, or when the branch due now would. Branches last whole epochs
    (their length rounded up), so each of their epochs is validated on the same footing as the trunk's.
    """
    check_int("trunk_step", trunk_step, minimum=0)
    check_int("steps_left", steps_left, minimum=0)
    check_int("steps_per_epoch", steps_per_epoch, minimum=1)
    check_int("point", point, minimum=1)
    if steps_left <= 0:
        return "none", 0
    length = whole_epochs(cooldown_length(trunk_step, fraction), steps_per_epoch)
    after_one_more = whole_epochs(
        cooldown_length(trunk_step + steps_per_epoch, fraction), steps_per_epoch
    )
    if steps_left - steps_per_epoch < after_one_more:
        return "final", steps_left
    if trunk_step >= point:
        if steps_left - length - steps_per_epoch < after_one_more:
            return "final", steps_left
        return "branch", length
    return "none", 0


def whole_epochs(steps: int, steps_per_epoch: int) -> int:
    """``steps`` rounded up to whole epochs of ``steps_per_epoch`` updates."""
    return -(-int(steps) // int(steps_per_epoch)) * int(steps_per_epoch)

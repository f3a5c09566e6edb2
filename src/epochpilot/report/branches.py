"""Cooldown branches in a run directory (``cooldown="on_stop"`` or ``"sweep"``) as the report reads them.

Which history rows belong to which branch, where each branch forked, where the kept model came from, and
the one sentence the report says about it. History rows carry ``branch`` (0: trunk, k: the k-th cooldown
branch) and ``trunk_epoch``; summary.json carries ``cooldown``, ``kept_from``, ``epochs_trained`` and
``branches`` (see the run-directory formats). Everything here is tolerant: a key left out or of the wrong
type is worked out from the rest, never an error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from epochpilot.report.page import fmt

if TYPE_CHECKING:
    from epochpilot.report.rundata import RunData

__all__ = [
    "BRANCH_KEYS",
    "Branch",
    "Kept",
    "analysed_rows",
    "branch_of",
    "branches",
    "cooldown_mode",
    "kept",
    "kept_sentence",
    "trunk_positions",
    "uses_cooldown",
]

#: history keys that say where a row was trained (not learning curves)
BRANCH_KEYS = ("branch", "trunk_epoch")

_KEPT_FROM = re.compile(r"cooldown from epoch (\d+)")


@dataclass
class Branch:
    """One cooldown branch: its number, the global epoch of the trunk row it forked after, its rows' global
    epochs, and its best monitored value (from summary.json, else worked out from the history)."""

    k: int
    fork_epoch: int | None = None
    epochs: list[int] = field(default_factory=list)
    steps: int | None = None
    best_value: float | None = None
    best_epoch: int | None = None
    final: bool = False


@dataclass
class Kept:
    """Where the kept model came from: ``source`` "trunk", "cooldown" or None (not recorded); for a
    cooldown, the branch number ``k`` (when known) and the epoch it forked after."""

    source: str | None
    k: int | None = None
    fork_epoch: int | None = None


def branch_of(row: Mapping[str, Any]) -> int | None:
    """The row's branch number (0 for the trunk), or None when the row has none or a malformed one."""
    v = row.get("branch")
    if isinstance(v, float) and v.is_integer():  # 1.0 from a writer that logs floats
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        return None
    return v


def _epoch(row: Mapping[str, Any], i: int) -> int:
    return int(row.get("epoch", i + 1))


def _finite(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def cooldown_mode(run: RunData) -> str | None:
    """The run's ``cooldown`` setting ("on_stop", "sweep", ...) from summary.json, else config.toml."""
    mode = run.summary.get("cooldown")
    if isinstance(mode, str) and mode:
        return mode
    train = (run.config or {}).get("train")
    mode = train.get("cooldown") if isinstance(train, dict) else None
    return mode if isinstance(mode, str) and mode not in ("", "none") else None


def uses_cooldown(run: RunData) -> bool:
    """True when the run used cooldown branches (set in its summary or config, or seen in its history)."""
    kept_from = run.summary.get("kept_from")
    return (
        cooldown_mode(run) is not None
        or bool(run.summary.get("branches"))
        or (isinstance(kept_from, str) and kept_from.startswith("cooldown"))
        or any(branch_of(r) is not None for r in run.history)
    )


def trunk_positions(history: Sequence[Mapping[str, Any]]) -> dict[int, float]:
    """Global epoch -> position on the trunk's epoch axis: a trunk row's count of trunk epochs so far, a
    branch row's fork position + its index in the branch (``trunk_epoch`` when recorded, else worked out)."""
    out: dict[int, float] = {}
    done, current, base, j = 0, None, 0, 0
    for i, row in enumerate(history):
        b = branch_of(row)
        if b is None:
            continue
        if b == 0:
            done += 1
            current, pos = None, done
        else:
            if b != current:
                current, base, j = b, done, 0
            j += 1
            pos = base + j
        recorded = _finite(row.get("trunk_epoch"))
        if recorded is not None:  # the record wins, and the count goes on from it
            pos = recorded
            if b == 0:
                done = int(recorded)
            else:
                base = int(recorded) - j
        out[_epoch(row, i)] = float(pos)
    return out


def _best(run: RunData, epochs: list[int]) -> tuple[float | None, int | None]:
    """The best monitored value among ``epochs`` and its epoch (None, None without a monitor)."""
    if run.monitor is None:
        return None, None
    sign = -1.0 if run.mode == "max" else 1.0
    by_epoch = {_epoch(r, i): r for i, r in enumerate(run.history)}
    best: tuple[float, int] | None = None
    for e in epochs:
        v = _finite(by_epoch.get(e, {}).get(run.monitor))
        if v is not None and (best is None or sign * v < sign * best[0]):
            best = (v, e)
    return best if best is not None else (None, None)


def branches(run: RunData) -> list[Branch]:
    """The run's cooldown branches in order: summary.json's entries merged with what the history shows."""
    rows: dict[int, list[int]] = {}
    forks: dict[int, int | None] = {}
    last_trunk: int | None = None
    last_branch: int | None = None
    for i, row in enumerate(run.history):
        b = branch_of(row)
        if b is None:
            continue
        last_branch = b
        if b == 0:
            last_trunk = _epoch(row, i)
        else:
            forks.setdefault(b, last_trunk)
            rows.setdefault(b, []).append(_epoch(row, i))
    recorded = {e["branch"]: e for e in run.summary.get("branches") or [] if isinstance(e, dict)}
    out = []
    for k in sorted(set(rows) | set(recorded)):
        entry = recorded.get(k, {})
        epochs = rows.get(k) or _span(entry.get("first_epoch"), entry.get("last_epoch"))
        best_value, best_epoch = _finite(entry.get("best_value")), entry.get("best_epoch")
        if best_value is None or best_epoch is None:
            best_value, best_epoch = _best(run, epochs)
        final = entry.get("final")
        out.append(
            Branch(
                k=k,
                fork_epoch=entry.get("fork_epoch", forks.get(k)),
                epochs=epochs,
                steps=entry.get("steps"),
                best_value=best_value,
                best_epoch=best_epoch,
                final=final if isinstance(final, bool) else (k == last_branch and k in rows),
            )
        )
    return out


def _span(first: Any, last: Any) -> list[int]:
    if isinstance(first, int) and isinstance(last, int) and first <= last:
        return list(range(first, last + 1))
    return []


def analysed_rows(run: RunData) -> list[dict[str, Any]] | None:
    """The rows the curve analysis should read when the run has branches that did not end it: the trunk
    and the branch that ended the run (earlier branches would read as noise); None to read them all."""
    brs = branches(run)
    ended = {b.k for b in brs if b.final}
    if not any(branch_of(r) not in (None, 0, *ended) for r in run.history):
        return None
    return [r for r in run.history if branch_of(r) in (0, *ended)]


def kept(run: RunData) -> Kept:
    """Where the kept (best) weights came from: the best epoch's row, else summary.json's ``kept_from``."""
    brs = branches(run)
    best = run.summary.get("best_epoch")
    row = run.row_at(best) if isinstance(best, int) else None
    k = branch_of(row) if row is not None else None
    if k == 0:
        return Kept("trunk")
    if k is not None:
        fork = next((b.fork_epoch for b in brs if b.k == k), None)
        return Kept("cooldown", k, fork)
    kept_from = run.summary.get("kept_from")
    if kept_from == "trunk":
        return Kept("trunk")
    m = _KEPT_FROM.fullmatch(kept_from) if isinstance(kept_from, str) else None
    if m is None:
        return Kept(None)
    fork = int(m.group(1))
    return Kept("cooldown", next((b.k for b in brs if b.fork_epoch == fork), None), fork)


def kept_sentence(run: RunData) -> str | None:
    """One plain sentence saying where the kept model came from, how many branches were tried and how
    many epochs were trained in all; None for a run without cooldown branches."""
    if not uses_cooldown(run):
        return None
    s, brs, where, mode = run.summary, branches(run), kept(run), cooldown_mode(run)
    best = s.get("best_epoch")
    value = _finite(s.get("best_value"))
    monitor = s.get("monitor") or run.monitor
    if isinstance(best, int) and value is None and run.monitor is not None:
        value = _finite((run.row_at(best) or {}).get(run.monitor))
    what = ""
    if isinstance(best, int):
        what = f" (epoch {best}, {monitor} {fmt(value)})" if value is not None and monitor else ""
        what = what or f" (epoch {best})"
    after = f" forked after epoch {where.fork_epoch}" if where.fork_epoch is not None else ""
    if where.source == "trunk":
        head = f"The kept model{what} comes from the trunk"
    elif where.source == "cooldown" and mode == "on_stop":
        after = after.replace("forked", "started")
        head = f"The kept model{what} comes from the cooldown{after}, when the stopper fired"
    elif where.source == "cooldown":
        name = f" {where.k}" if not after and where.k is not None else ""
        head = f"The kept model{what} comes from the cooldown branch{name}{after}"
    elif isinstance(best, int):
        head = f"The kept model{what} is not recorded as coming from the trunk or a branch"
    else:
        head = "No kept epoch is recorded"
    n = len(brs)
    if mode != "on_stop":
        tail = {0: "no cooldown branch was tried", 1: "1 branch was tried"}.get(
            n, f"{n} branches were tried"
        )
    elif n == 0:
        tail = "no cooldown ran"
    elif where.source == "trunk":
        fork = brs[-1].fork_epoch
        tail = (
            "the cooldown"
            + (f" after epoch {fork}" if fork is not None else "")
            + " did not beat it"
        )
    else:
        tail = ""
    trained = _finite(s.get("epochs_trained"))
    trained = float(len(run.history)) if trained is None else trained
    total = f"{trained:.1f} epochs trained in all"
    return f"{head}; {tail}, {total}." if tail else f"{head}; {total}."

"""Figures of a run with cooldown branches: the learning rate of the trunk and of each branch, and the
monitored validation curve with each branch forking off the trunk (the warmup-stable-decay picture)."""

from __future__ import annotations

import math
from typing import Any

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from epochpilot.report.branches import Branch, branch_of, branches, kept, trunk_positions
from epochpilot.report.load import RunData
from epochpilot.report.plots import _STYLE, SWEET_C, _figure, _log_if_wide

__all__ = ["BRANCH_COLORS", "TRUNK_C", "branch_curve_figure", "branch_lr_figure"]

TRUNK_C = "#1f2937"
#: one colour per branch, in fork order (cycled)
BRANCH_COLORS = ["#ea580c", "#2563eb", "#059669", "#db2777", "#7c3aed", "#0891b2", "#ca8a04"]


def _color(k: int) -> str:
    return BRANCH_COLORS[(k - 1) % len(BRANCH_COLORS)]


def _value(row: dict[str, Any] | None, key: str) -> float:
    v = None if row is None else row.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return math.nan
    return float(v)


Rows = list[tuple[int, dict[str, Any]]]


def _segments(run: RunData) -> list[tuple[int, Rows]]:
    """The history as (branch, [(epoch, row)]) runs in order: the trunk between branches, each branch."""
    out: list[tuple[int, Rows]] = []
    for i, row in enumerate(run.history):
        b = branch_of(row)
        if b is None:
            continue
        item = (int(row.get("epoch", i + 1)), row)
        if out and out[-1][0] == b:
            out[-1][1].append(item)
        else:
            out.append((b, [item]))
    return out


def _legend(ax: Any, fig: Figure, ncols: int = 4) -> None:
    try:
        fig.legend(loc="outside lower center", ncols=ncols)
    except ValueError:  # matplotlib < 3.7 has no "outside" legends
        ax.legend(loc="best", ncols=2)


def _label(b: Branch | None, k: int, pos: dict[int, float] | None = None) -> str:
    """``cooldown k (after epoch E)``, with the fork's trunk epoch when the x axis counts trunk epochs."""
    if b is None or b.fork_epoch is None:
        return f"cooldown {k}"
    t = (pos or {}).get(b.fork_epoch)
    on_trunk = f", trunk epoch {t:g}" if t is not None and t != b.fork_epoch else ""
    return f"cooldown {k} (after epoch {b.fork_epoch}{on_trunk})"


def _step_spans(run: RunData) -> dict[int, tuple[float, float]] | None:
    """Global epoch -> (last update before it, its last update), when every row has a step and the steps
    increase (else None: lr.csv's updates cannot be matched to epochs)."""
    spans: dict[int, tuple[float, float]] = {}
    last = -math.inf
    for i, row in enumerate(run.history):
        step = _value(row, "step")
        if not math.isfinite(step) or step <= last:
            return None
        spans[int(row.get("epoch", i + 1))] = (last, step)
        last = step
    return spans


def branch_lr_figure(run: RunData) -> Figure | None:
    """The lr as run, the trunk in one colour and each cooldown branch in its own, starting at its fork:
    per update from lr.csv when its steps can be matched to epochs, else per epoch from the history."""
    segs = _segments(run)
    if not any(b > 0 for b, _ in segs):
        return None
    spans = _step_spans(run) if run.lr_steps is not None else None
    info = {b.k: b for b in branches(run)}
    fig = _figure(width=6.4, height=3.6)
    ax = fig.axes[0]
    drawn, labelled = False, set()
    with matplotlib.rc_context(_STYLE):
        prev: tuple[float, float] | None = None  # the last trunk point: where a branch forks
        for b, rows in segs:
            if spans is not None:
                lo, hi = spans[rows[0][0]][0], spans[rows[-1][0]][1]
                xs, ys = _steps_between(run.lr_steps, lo, hi)
            else:
                xs = [float(e) for e, _ in rows]
                ys = [_value(r, "lr") for _, r in rows]
            if b > 0 and prev is not None:
                xs, ys = [prev[0], *xs], [prev[1], *ys]
            pts = [(x, y) for x, y in zip(xs, ys, strict=False) if math.isfinite(y)]
            if not pts:
                continue
            label = ("trunk" if b == 0 else _label(info.get(b), b)) if b not in labelled else None
            labelled.add(b)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=TRUNK_C if b == 0 else _color(b),
                    lw=1.8 if b == 0 else 1.6, label=label)  # fmt: skip
            drawn = True
            if b == 0:
                prev = pts[-1]
        if not drawn:
            return None
        ax.set_title("Learning rate: trunk and cooldown branches")
        ax.set_xlabel(
            "optimizer step" if spans is not None else "epoch (trunk and branches in order)"
        )
        ax.set_ylabel("lr")
        if spans is None:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _legend(ax, fig, ncols=2)
    return fig


def _steps_between(
    lr_steps: tuple[list[float], list[float]] | None, lo: float, hi: float
) -> tuple[list[float], list[float]]:
    steps, lrs = lr_steps or ([], [])
    pairs = [(s, v) for s, v in zip(steps, lrs, strict=False) if lo < s <= hi]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def branch_curve_figure(run: RunData) -> Figure | None:
    """The monitored metric against the trunk's epochs, each cooldown branch its own line forking off the
    trunk where it started (so branches overlap the trunk's later epochs); the kept epoch is starred."""
    mon = run.monitor
    segs = _segments(run)
    if mon is None or not any(b > 0 for b, _ in segs):
        return None
    pos = trunk_positions(run.history)
    info = {b.k: b for b in branches(run)}
    fig = _figure(width=10.5, height=4.1)
    ax = fig.axes[0]
    trunk = [(pos[e], _value(r, mon)) for b, rows in segs if b == 0 for e, r in rows]
    trunk = [p for p in trunk if math.isfinite(p[1])]
    vals = [p[1] for p in trunk]
    with matplotlib.rc_context(_STYLE):
        if trunk:
            ax.plot([p[0] for p in trunk], [p[1] for p in trunk], color=TRUNK_C, lw=2.0,
                    marker="o" if len(trunk) <= 40 else None, markersize=3, label="trunk")  # fmt: skip
        fork: tuple[float, float] | None = None
        for b, rows in segs:
            pts = [(pos[e], _value(r, mon)) for e, r in rows]
            pts = [p for p in pts if math.isfinite(p[1])]
            if b == 0:
                fork = pts[-1] if pts else fork
                continue
            if fork is not None:
                pts = [fork, *pts]
            if not pts:
                continue
            vals += [p[1] for p in pts]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=_color(b), lw=1.6,
                    marker="o" if len(pts) <= 25 else None, markersize=2.5,
                    label=_label(info.get(b), b, pos))  # fmt: skip
        _star(ax, run, pos)
        if mon.endswith("loss"):
            _log_if_wide(ax, vals)
        ax.set_title(f"{mon}: the trunk and each cooldown branch from where it forked")
        ax.set_xlabel("trunk epoch (a branch's epochs counted from its fork)")
        ax.set_ylabel(mon)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _legend(ax, fig)
    return fig


def _star(ax: Any, run: RunData, pos: dict[int, float]) -> None:
    """Mark the kept epoch, at its place on the trunk's axis."""
    best = run.summary.get("best_epoch")
    row = run.row_at(best) if isinstance(best, int) else None
    value = _value(row, run.monitor or "")
    if row is None or best not in pos or not math.isfinite(value):
        return
    where = kept(run)
    src = "trunk" if where.source == "trunk" else f"cooldown {where.k}" if where.k else "cooldown"
    ax.plot([pos[best]], [value], marker="*", ms=14, color=SWEET_C, mec="white", ls="none",
            label=f"kept weights (epoch {best}, {src})", zorder=5)  # fmt: skip

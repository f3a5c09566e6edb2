"""Matplotlib figures of a run: curves with phases, sweet spot and stop marked; lr, gradient norm, gap.

Figures are built on ``matplotlib.figure.Figure`` and rendered by Agg, so no pyplot state or GUI backend is
touched (safe in servers, notebooks and threads).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from epochpilot._files import atomic_write_bytes
from epochpilot.report.load import RunData, metric_pairs

__all__ = [
    "PHASE_COLORS",
    "PHASE_LABELS",
    "RUN_COLORS",
    "compare_figure",
    "figure_png",
]

TRAIN_C, VAL_C, SWEET_C, STOP_C, INK = "#2563eb", "#ea580c", "#059669", "#6b7280", "#1f2937"
PHASE_COLORS = {
    "fast_descent": "#60a5fa",
    "slow_optimization": "#34d399",
    "overfitting_risk": "#f87171",
}
PHASE_LABELS = {
    "fast_descent": "fast descent",
    "slow_optimization": "slow optimization",
    "overfitting_risk": "overfitting risk",
}
RUN_COLORS = [
    "#2563eb",
    "#ea580c",
    "#059669",
    "#7c3aed",
    "#db2777",
    "#0891b2",
    "#ca8a04",
    "#4b5563",
]
_STYLE = {
    "font.size": 9.5,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.edgecolor": "#d1d5db",
    "axes.labelcolor": "#374151",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e5e7eb",
    "grid.linewidth": 0.8,
    "xtick.color": "#4b5563",
    "ytick.color": "#4b5563",
    "legend.frameon": False,
    "legend.fontsize": 8.5,
    "lines.linewidth": 2.0,
}


def _figure(width: float = 7.2, height: float = 3.5) -> Figure:
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
        fig.add_subplot()
    return fig


def figure_png(fig: Figure, path: Path | None = None) -> bytes:
    """Render ``fig`` to PNG bytes (144 dpi) and, when ``path`` is given, write them there too."""
    buf = io.BytesIO()
    with matplotlib.rc_context(_STYLE):
        fig.savefig(buf, format="png", dpi=144, facecolor="white")
    data = buf.getvalue()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
    return data


def _finite(xs: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    pairs = [(x, y) for x, y in zip(xs, ys, strict=False) if math.isfinite(y)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _tick(v: float, _pos: object = None) -> str:
    """Log-axis labels as plain numbers, only at 1, 2 and 5 times a power of ten."""
    if v <= 0:
        return ""
    mant = v / 10 ** math.floor(math.log10(v) + 1e-9)
    return f"{v:g}" if min(abs(mant - m) for m in (1, 2, 5)) < 1e-6 else ""


def _log_if_wide(ax, values: Sequence[float]) -> None:
    vals = [v for v in values if math.isfinite(v)]
    if vals and min(vals) > 0 and max(vals) / min(vals) > 20:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(_tick))
        ax.yaxis.set_minor_formatter(FuncFormatter(_tick))


def _plot(ax, run: RunData, key: str, color: str, label: str, **kw) -> list[float]:
    xs, ys = _finite(*run.series(key))
    if xs:
        marker = "o" if len(xs) <= 40 else None
        ax.plot(xs, ys, color=color, label=label, marker=marker, markersize=3, **kw)
    return ys


def _stop_epoch(run: RunData) -> int | None:
    stop = run.summary.get("stopped_epoch")
    if isinstance(stop, int):
        return stop
    epochs = run.series(run.keys[0])[0] if run.history else []
    return max(epochs) if epochs else None


def _mark(ax, run: RunData, shade: bool = True) -> None:
    """Shade the phases and mark the sweet spot, the kept (best) epoch and the stop epoch."""
    a = run.analysis
    if a is not None and shade:
        for p in a.phases:
            ax.axvspan(p.start - 0.5, p.end + 0.5, color=PHASE_COLORS[p.name], alpha=0.10, lw=0,
                       label=PHASE_LABELS[p.name])  # fmt: skip
    if a is not None and a.sweet_spot is not None:
        ax.axvline(
            a.sweet_spot, color=SWEET_C, ls="--", lw=1.4, label=f"sweet spot (epoch {a.sweet_spot})"
        )
    stop = _stop_epoch(run)
    if stop is not None:
        ax.axvline(stop, color=STOP_C, ls=":", lw=1.6, label=f"stopped (epoch {stop})")
    staged = [(row.get("epoch"), row.get("stage")) for row in run.history if row.get("stage")]
    for (_, before), (epoch, name) in zip(
        staged, staged[1:]
    ):  # staged training: where each stage starts
        if name != before and isinstance(epoch, int):
            ax.axvline(
                epoch - 0.5,
                color="#64748b",
                ls="-.",
                lw=1.2,
                label=f"stage {name} from epoch {epoch}",
            )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def curve_figure(
    run: RunData, base: str, train_key: str | None, val_key: str | None, wide: bool = False
) -> Figure:
    """Train and val curves of one metric, with phases shaded and the sweet spot and stop marked."""
    fig = _figure(10.5, 4.1) if wide else _figure(6.4, 3.9)
    ax = fig.axes[0]
    vals: list[float] = []
    with matplotlib.rc_context(_STYLE):
        if train_key:
            vals += _plot(ax, run, train_key, TRAIN_C, "train")
        if val_key:
            vals += _plot(ax, run, val_key, VAL_C, "validation")
        _mark(ax, run)
        kept = run.summary.get("best_epoch")
        mon = run.monitor
        row = run.row_at(kept) if isinstance(kept, int) else None
        if (
            mon in (train_key, val_key)
            and row is not None
            and isinstance(row.get(mon), (int, float))
        ):
            ax.plot([kept], [row[mon]], marker="*", ms=13, color=SWEET_C, mec="white", ls="none",
                    label=f"kept weights (epoch {kept})", zorder=5)  # fmt: skip
        if base == "loss":
            _log_if_wide(ax, vals)
        title = "Loss" if base == "loss" else base.replace("_", " ").capitalize()
        ax.set_title(title)
        ax.set_xlabel("epoch")
        try:
            fig.legend(loc="outside lower center", ncols=4 if wide else 3)
        except ValueError:  # matplotlib < 3.7 has no "outside" legends
            ax.legend(loc="best", ncols=2)
    return fig


def _single(
    run: RunData, key: str, title: str, ylabel: str, color: str, log: bool
) -> Figure | None:
    xs, ys = _finite(*run.series(key))
    if not xs:
        return None
    fig = _figure(width=6.4, height=3.4)
    ax = fig.axes[0]
    with matplotlib.rc_context(_STYLE):
        ax.plot(xs, ys, color=color, marker="o" if len(xs) <= 40 else None, markersize=3)
        _mark(ax, run, shade=False)
        if log:
            _log_if_wide(ax, ys)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
    return fig


def lr_figure(run: RunData) -> Figure | None:
    """The learning rate as run: per step from lr.csv when present, else per epoch from the history."""
    if run.lr_steps is None:
        return _single(run, "lr", "Learning rate (end of each epoch)", "lr", "#7c3aed", log=False)
    steps, lrs = run.lr_steps
    fig = _figure(width=6.4, height=3.4)
    ax = fig.axes[0]
    with matplotlib.rc_context(_STYLE):
        ax.plot(steps, lrs, color="#7c3aed", lw=1.8)
        ax.set_title("Learning rate (per step)")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("lr")
    return fig


def gap_figure(run: RunData) -> Figure | None:
    """The generalization gap per epoch (positive: validation is worse than training)."""
    a = run.analysis
    if a is None or not a.generalization_gap:
        return None
    xs, ys = _finite(a.epochs, [math.nan if g is None else g for g in a.generalization_gap])
    if not xs:
        return None
    fig = _figure(width=6.4, height=3.4)
    ax = fig.axes[0]
    with matplotlib.rc_context(_STYLE):
        ax.axhline(0, color="#9ca3af", lw=1)
        pos = [y > 0 for y in ys]
        ax.fill_between(xs, ys, 0, where=pos, interpolate=True, color="#f87171", alpha=0.25, lw=0)
        neg = [not p for p in pos]
        ax.fill_between(xs, ys, 0, where=neg, interpolate=True, color="#34d399", alpha=0.25, lw=0)
        ax.plot(xs, ys, color="#dc2626", marker="o" if len(xs) <= 40 else None, markersize=3)
        _mark(ax, run, shade=False)
        ax.set_title(f"Generalization gap ({a.monitor} vs {a.train_monitor})")
        ax.set_xlabel("epoch")
        ax.set_ylabel("val worse than train by")
    return fig


def compare_figure(runs: Sequence[RunData], base: str) -> Figure | None:
    """One metric across runs: validation solid, train dashed, each run's sweet spot dotted."""
    fig = _figure(width=8.4, height=3.9)
    ax = fig.axes[0]
    drawn = False
    with matplotlib.rc_context(_STYLE):
        for i, run in enumerate(runs):
            color = RUN_COLORS[i % len(RUN_COLORS)]
            pairs = {b: (t, v) for b, t, v in metric_pairs(run.keys)}
            tk, vk = pairs.get(base, (None, None))
            if vk and run.has(vk):
                _plot(ax, run, vk, color, f"{run.name} (val)")
                drawn = True
            if tk and run.has(tk):
                _plot(ax, run, tk, color, f"{run.name} (train)", ls="--", alpha=0.55, lw=1.4)
                drawn = True
            a = run.analysis
            if a is not None and a.sweet_spot is not None and a.monitor in (tk, vk):
                ax.axvline(a.sweet_spot, color=color, ls=":", lw=1.2, alpha=0.8)
        if not drawn:
            return None
        ax.set_title("Loss" if base == "loss" else base.replace("_", " ").capitalize())
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig

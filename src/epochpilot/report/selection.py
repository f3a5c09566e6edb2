"""Self-contained pages for model selection: k-fold epoch choice (``write_cv_report``) and an Optuna study
(``write_tune_report``). Figures are matplotlib PNGs embedded as base64, like the run report."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from epochpilot._files import atomic_write_text
from epochpilot.report.page import esc, fmt, img, kv_table, page, table
from epochpilot.report.plots import _STYLE, RUN_COLORS, figure_png

__all__ = ["cv_figure", "tune_figures", "write_cv_report", "write_tune_report"]

MEAN_C, CHOSEN_C, BEST_C, PRUNED_C = "#1f2937", "#059669", "#ea580c", "#9ca3af"


def _figure(width: float = 8.0, height: float = 3.8) -> Figure:
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
        fig.add_subplot()
    return fig


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def cv_figure(selection: Any) -> Figure:
    """The k validation curves (thin), their mean +- std band, and the chosen and best-mean epochs."""
    fig = _figure()
    ax = fig.axes[0]
    with matplotlib.rc_context(_STYLE):
        for i, hist in enumerate(selection.fold_histories):
            pts = [(r["epoch"], r.get(selection.monitor)) for r in hist]
            pts = [(e, v) for e, v in pts if _finite(v)]
            if pts:
                ax.plot(*zip(*pts, strict=True), color=RUN_COLORS[i % len(RUN_COLORS)], lw=1.0,
                        alpha=0.55, label=f"fold {i + 1}")  # fmt: skip
        mean, std = selection.mean_curve, selection.std_curve
        pts = [(e, m, s) for e, (m, s) in enumerate(zip(mean, std, strict=True), 1) if _finite(m)]
        if pts:
            es, ms, ss = (list(c) for c in zip(*pts, strict=True))
            lo = [m - s for m, s in zip(ms, ss, strict=True)]
            hi = [m + s for m, s in zip(ms, ss, strict=True)]
            ax.fill_between(es, lo, hi, color=MEAN_C, alpha=0.12, lw=0, label="mean ± std")
            ax.plot(es, ms, color=MEAN_C, lw=2.2, label="mean")
        ax.axvline(selection.epochs, color=CHOSEN_C, ls="--", lw=1.6,
                   label=f"chosen: epoch {selection.epochs} ({selection.rule})")  # fmt: skip
        if selection.best_epoch != selection.epochs:
            ax.axvline(selection.best_epoch, color=BEST_C, ls=":", lw=1.4,
                       label=f"best mean: epoch {selection.best_epoch}")  # fmt: skip
        ax.set_title(f"{selection.monitor} per fold ({selection.mode} is better)")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def write_cv_report(
    selection: Any, out_path: str | Path, title: str = "k-fold epoch selection"
) -> Path:
    """Write one HTML page: the curves figure, the choice and a per-fold table."""
    png = figure_png(cv_figure(selection))
    chosen = selection.epochs
    value = selection.mean_curve[chosen - 1]
    std = selection.std_curve[chosen - 1]
    rows = []
    for i, hist in enumerate(selection.fold_histories):
        at = next((r.get(selection.monitor) for r in hist if r.get("epoch") == chosen), None)
        best = selection.per_fold_best[i]
        best_v = next((r.get(selection.monitor) for r in hist if r.get("epoch") == best), None)
        run_dir = selection.run_dirs[i]
        rows.append(
            (f"fold {i + 1}", len(hist), best, best_v, at, str(run_dir) if run_dir else None)
        )
    rule = (
        "the epoch with the best mean"
        if selection.rule == "min"
        else "the smallest epoch whose mean is within one standard error of the best mean"
    )
    facts = [
        ("chosen epochs", chosen),
        ("rule", f"{selection.rule}: {rule}"),
        (f"mean {selection.monitor} there", f"{fmt(value)} ± {fmt(std)}"),
        ("best mean at epoch", selection.best_epoch),
        ("folds", selection.k),
        ("per-fold best epochs", ", ".join(map(str, selection.per_fold_best))),
    ]
    body = (
        '<header class="top"><div><div class="brand">epochpilot cv</div>'
        f"<h1>Train for {chosen} epochs</h1>"
        f'<div class="sub">{esc(title)}</div></div></header>'
        f'<div class="grid"><section class="card"><h2>Choice</h2>{kv_table(facts)}'
        '<p class="note">Curves of different lengths are averaged per epoch over the folds that reached it; '
        "epochs reached by fewer than half the folds are not chosen.</p></section></div>"
        f'<div class="plots"><figure class="card wide">{img(png, "fold curves")}'
        "<figcaption>Each fold's validation curve, their mean ± one standard deviation, and the chosen "
        "epoch.</figcaption></figure></div>"
        '<div class="grid"><section class="card wide"><h2>Folds</h2>'
        + table(
            (
                "fold",
                "epochs run",
                "best epoch",
                "best value",
                f"value at {chosen}",
                "run directory",
            ),
            rows,
        )
        + "</section></div>"
    )
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, page("epochpilot cv", body))
    return out


# -- tune ------------------------------------------------------------------------------------------------


def tune_figures(study: Any) -> list[tuple[str, Figure, str]]:
    """(name, figure, caption): optimisation history, and every trial's reported curve."""
    import optuna

    TS = optuna.trial.TrialState
    trials = [t for t in study.trials if t.state in (TS.COMPLETE, TS.PRUNED)]
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    out = []
    fig = _figure()
    ax = fig.axes[0]
    with matplotlib.rc_context(_STYLE):
        done = [(t.number, t.value) for t in trials if t.state == TS.COMPLETE and _finite(t.value)]
        pruned = [
            (t.number, t.intermediate_values[max(t.intermediate_values)])
            for t in trials
            if t.state == TS.PRUNED and t.intermediate_values
        ]
        pruned = [(n, v) for n, v in pruned if _finite(v)]
        if done:
            ax.scatter(
                *zip(*done, strict=True), color=RUN_COLORS[0], s=22, zorder=3, label="completed"
            )
            best, line = None, []
            for n, v in sorted(done):
                best = v if best is None else (max(best, v) if maximize else min(best, v))
                line.append((n, best))
            ax.step(
                *zip(*line, strict=True), where="post", color=CHOSEN_C, lw=1.8, label="best so far"
            )
        if pruned:
            ax.scatter(*zip(*pruned, strict=True), marker="x", color=PRUNED_C, s=22, zorder=2,
                       label="pruned (last value)")  # fmt: skip
        ax.set_title("Optimisation history")
        ax.set_xlabel("trial")
        ax.set_ylabel("objective")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    out.append(
        ("history", fig, "Each finished trial's value; pruned trials at their last reported value.")
    )
    fig = _figure()
    ax = fig.axes[0]
    with matplotlib.rc_context(_STYLE):
        best_number = _best_number(study)
        for t in trials:
            pts = sorted((e, v) for e, v in t.intermediate_values.items() if _finite(v))
            if not pts:
                continue
            if t.number == best_number:
                style = {
                    "color": CHOSEN_C,
                    "lw": 2.2,
                    "zorder": 4,
                    "label": f"best (trial {t.number})",
                }
            elif t.state == TS.PRUNED:
                style = {"color": PRUNED_C, "lw": 0.9, "alpha": 0.7}
            else:
                style = {"color": RUN_COLORS[0], "lw": 1.0, "alpha": 0.6}
            ax.plot(*zip(*pts, strict=True), **style)
        ax.set_title("Reported values per epoch")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if best_number is not None:
            ax.legend(loc="best")
    out.append(
        ("curves", fig, "Every trial's per-epoch value: pruned grey, completed blue, best green.")
    )
    return out


def _best_number(study: Any) -> int | None:
    try:
        return study.best_trial.number
    except ValueError:  # no completed trial yet
        return None


def write_tune_report(study: Any, out_path: str | Path, title: str = "") -> Path:
    """Write one HTML page: best trial, counts, the two figures and a table of every trial."""
    import optuna

    TS = optuna.trial.TrialState
    best_number = _best_number(study)
    counts = {s.name.lower(): 0 for s in (TS.COMPLETE, TS.PRUNED, TS.FAIL, TS.RUNNING)}
    for t in study.trials:
        key = t.state.name.lower()
        counts[key] = counts.get(key, 0) + 1
    epochs = sum(len(t.intermediate_values) for t in study.trials)
    names = sorted({p for t in study.trials for p in t.params})
    rows, best_row = [], None
    for i, t in enumerate(study.trials):
        if t.number == best_number:
            best_row = i
        rows.append(
            (
                t.number,
                t.state.name.lower(),
                t.value,
                len(t.intermediate_values),
                *(_show(t.params.get(n)) for n in names),
                t.user_attrs.get("prune_reason") or t.user_attrs.get("stop_reason"),
            )
        )
    facts: list[tuple[str, Any]] = [("direction", study.direction.name.lower())]
    if best_number is not None:
        best = study.best_trial
        facts += [("best trial", best.number), ("best value", best.value)]
        facts += [(f"  {k}", _show(v)) for k, v in best.params.items()]
    facts += [("trials", ", ".join(f"{v} {k}" for k, v in counts.items() if v)),
              ("epochs trained (all trials)", epochs)]  # fmt: skip
    figs = "".join(
        f'<figure class="card wide">{img(figure_png(fig), name)}<figcaption>{esc(cap)}</figcaption></figure>'
        for name, fig, cap in tune_figures(study)
    )
    body = (
        '<header class="top"><div><div class="brand">epochpilot tune</div>'
        f'<h1>Study {esc(study.study_name)}</h1><div class="sub">{esc(title)}</div></div></header>'
        f'<div class="grid"><section class="card"><h2>Best trial</h2>{kv_table(facts)}</section></div>'
        f'<div class="plots">{figs}</div>'
        '<div class="grid"><section class="card wide"><h2>Trials</h2>'
        + table(("trial", "state", "value", "epochs", *names, "why it ended"), rows, best_row)
        + "</section></div>"
    )
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, page(f"epochpilot tune {study.study_name}", body))
    return out


def _show(value: Any) -> Any:
    return value if isinstance(value, (int, float)) or value is None else str(value)

"""``compare_runs(run_dirs, out_path)``: several runs' curves overlaid and their summaries side by side."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from epochpilot._files import atomic_write_text
from epochpilot.report.load import ReportError, RunData, load_run, metric_pairs
from epochpilot.report.page import Raw, duration, esc, img, page, table
from epochpilot.report.plots import RUN_COLORS, compare_figure, figure_png

__all__ = ["compare_runs"]


def _names(runs: Sequence[RunData]) -> None:
    """Make run names unique (parent/name when two directories share a name)."""
    seen: dict[str, int] = {}
    for r in runs:
        seen[r.name] = seen.get(r.name, 0) + 1
    for r in runs:
        if seen[r.name] > 1:
            r.label = f"{r.path.resolve().parent.name}/{r.name}"


def _best_index(runs: Sequence[RunData]) -> int | None:
    """The run with the best best-value, when all runs monitor the same metric in the same mode."""
    keys = {(r.monitor, r.mode) for r in runs}
    if len(keys) != 1 or None in next(iter(keys)):
        return None
    mode = runs[0].mode
    vals = [r.analysis.best_value if r.analysis else None for r in runs]
    ok = [(v, i) for i, v in enumerate(vals) if v is not None and math.isfinite(v)]
    if not ok:
        return None
    return (min(ok) if mode == "min" else max(ok))[1]


def compare_runs(run_dirs: Sequence[str | Path], out_path: str | Path) -> Path:
    """Write one self-contained HTML page overlaying the runs' train/val curves, with a summary table."""
    if isinstance(run_dirs, (str, Path)) or not run_dirs:
        raise ReportError("run_dirs must be a non-empty list of run directories: pass at least one")
    runs = []
    for i, run_dir in enumerate(run_dirs, 1):
        try:
            runs.append(load_run(run_dir))
        except ReportError as exc:  # say which of the runs given is wrong
            if len(run_dirs) == 1:
                raise
            raise ReportError(f"run {i} of {len(run_dirs)}: {exc}") from None
    _names(runs)
    bases: list[str] = []
    for r in runs:
        for base, _, _ in metric_pairs(r.keys):
            if base not in bases:
                bases.append(base)
    figs = []
    for base in bases:
        fig = compare_figure(runs, base)
        if fig is not None:
            figs.append(f'<figure class="card wide">{img(figure_png(fig), base)}'
                        f"<figcaption>{esc(base)}: validation solid, train dashed, each run's sweet spot "
                        f"dotted</figcaption></figure>")  # fmt: skip
    rows = []
    for i, r in enumerate(runs):
        s, a = r.summary, r.analysis
        color = RUN_COLORS[i % len(RUN_COLORS)]
        name = Raw(f'<span class="swatch" style="background:{color}"></span>{esc(r.name)}')
        ran = s.get("epochs_run", len(r.history))
        budget = f"{ran} / {s['max_epochs']}" if "max_epochs" in s else str(ran)
        rows.append(
            (
                name,
                r.monitor,
                s.get("best_epoch", a.best_epoch if a else None),
                a.best_value if a else None,
                a.sweet_spot if a else None,
                budget,
                s.get("stop_reason"),
                duration(s.get("elapsed_s")),
                a.diagnosis.replace("_", " ") if a else None,
            )
        )
    head = ("run", "monitor", "best epoch", "best value", "sweet spot", "epochs / budget", "stopped by",
            "wall time", "diagnosis")  # fmt: skip
    advice = "".join(
        f'<h3>{esc(r.name)}</h3><ul class="advice">'
        + "".join(f"<li>{esc(t)}</li>" for t in r.analysis.advice)
        + "</ul>"
        for r in runs
        if r.analysis
    )
    best = _best_index(runs)
    body = (
        '<header class="top"><div><div class="brand">epochpilot comparison</div>'
        f'<h1>{len(runs)} runs</h1><div class="sub">{esc(", ".join(r.name for r in runs))}</div></div>'
        "</header>"
        f'<div class="grid"><section class="card wide"><h2>Runs</h2>{table(head, rows, best)}'
        + ('<p class="note">Highlighted: the best monitored value.</p>' if best is not None else "")
        + "</section></div>"
        f'<div class="plots">{"".join(figs)}</div>'
        f'<div class="grid"><section class="card wide"><h2>Advice per run</h2>{advice}</section></div>'
    )
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, page("epochpilot comparison", body))
    return out

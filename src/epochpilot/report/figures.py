"""Every figure of one run's report, in the order the page shows them: the curves of plots.py and the cooldown
branches of branch_plots.py (which builds on plots.py, so this assembly lives apart from both)."""

from __future__ import annotations

from matplotlib.figure import Figure

from epochpilot.report.branch_plots import branch_curve_figure, branch_lr_figure
from epochpilot.report.load import RunData, metric_pairs
from epochpilot.report.plots import _single, curve_figure, gap_figure, lr_figure

__all__ = ["run_figures"]


def run_figures(run: RunData) -> list[tuple[str, str, Figure]]:
    """(file stem, caption, figure) for every plot the run's data allows, the loss first."""
    out: list[tuple[str, str, Figure]] = []
    for base, tk, vk in metric_pairs(run.keys):
        if (tk and run.has(tk)) or (vk and run.has(vk)):
            stem = "loss" if base == "loss" else f"metric_{base}"
            what = " and ".join(k for k in (tk, vk) if k and run.has(k))
            fig = curve_figure(run, base, tk, vk, wide=not out)
            out.append((stem, f"{what} per epoch", fig))
    fork = branch_curve_figure(run)
    if fork is not None:
        caption = f"{run.monitor} of the trunk and of each cooldown branch, drawn from its fork"
        out.insert(min(1, len(out)), ("branches", caption, fork))
    lr_fig = branch_lr_figure(run)
    lr_caption = "learning rate as run: the trunk and each cooldown branch"
    if lr_fig is None:
        lr_fig, lr_caption = lr_figure(run), "learning rate as run"
    extra = [
        ("lr", lr_caption, lr_fig),
        ("grad_norm", "mean gradient L2 norm per epoch (before clipping)",
         _single(run, "grad_norm", "Gradient norm", "mean L2 norm", "#0891b2", log=True)),
        ("gap", "how much worse validation is than training", gap_figure(run)),
    ]  # fmt: skip
    return out + [(s, c, f) for s, c, f in extra if f is not None]

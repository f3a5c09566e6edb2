"""Plain-text rendering of an :class:`~epochpilot.data.audit.report.AuditReport` with rich tables."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console
from rich.table import Table

#: an AuditReport, named in words only: ``AuditReport.render()`` calls this module, so importing the class here
#: (even for typing) would make the two modules import each other.
Report = Any

__all__ = ["render"]


def _pct(x: float) -> str:
    return f"{x:.1%}"


def _summary(report: Report) -> Table:
    table = Table(title="Data audit (train)", title_justify="left")
    table.add_column("check")
    table.add_column("value", justify="right")
    table.add_column("note")
    table.add_row("rows", str(report.n_rows), f"{report.n_features} feature columns")
    table.add_row(
        "exact duplicates",
        str(report.exact_duplicates),
        f"{report.duplicate_groups} inputs repeated, at most {report.max_repeats}x",
    )
    table.add_row("near duplicates", str(report.near_duplicates), "beyond exact copies")
    table.add_row(
        "effective samples",
        str(report.effective_samples),
        f"duplicate ratio {_pct(report.duplicate_ratio)}",
    )
    for o in report.overlaps:
        table.add_row(
            f"leakage train/{o.split}",
            str(o.exact + o.near),
            f"{_pct(o.fraction)} of {o.n_rows} {o.split} rows ({o.exact} exact, {o.near} near)",
        )
    if report.target is not None:
        table.add_row(
            "label conflicts",
            str(report.label_conflicts),
            f"{report.label_conflict_rows} rows share an input but not a label",
        )
    if report.task == "classification":
        ratio = f"{report.imbalance_ratio:.2f}:1" if report.imbalance_ratio else "-"
        entropy = f"{report.class_entropy:.3f} bits" if report.class_entropy is not None else "-"
        table.add_row(
            "classes", str(len(report.class_counts)), f"imbalance {ratio}, entropy {entropy}"
        )
    elif report.task == "regression":
        table.add_row("target", "continuous", "regression: no class balance")
    if report.text_lengths:
        c, w = report.text_lengths["chars"], report.text_lengths["words"]
        table.add_row(
            "text length (words)",
            f"{w['median']:g}",
            f"median; p5 {w['p5']:g}, p95 {w['p95']:g}, max {w['max']:g}; chars median {c['median']:g}",
        )
    table.add_row(
        "constant columns",
        str(len(report.constant_columns)),
        ", ".join(report.constant_columns[:6]),
    )
    worst = sorted(report.missing.items(), key=lambda kv: -kv[1])[:4]
    table.add_row(
        "columns with missing",
        str(len(report.missing)),
        ", ".join(f"{k} {_pct(v)}" for k, v in worst),
    )
    return table


def _classes(report: Report) -> Table:
    table = Table(title="Class balance", title_justify="left")
    table.add_column("label")
    table.add_column("rows", justify="right")
    table.add_column("share", justify="right")
    total = sum(report.class_counts.values()) or 1
    for label, count in list(report.class_counts.items())[:12]:
        table.add_row(label, str(count), _pct(count / total))
    if len(report.class_counts) > 12:
        table.add_row("...", f"{len(report.class_counts) - 12} more", "")
    return table


def _examples(report: Report) -> Table | None:
    rows = [(o.split, e) for o in report.overlaps for e in o.examples]
    if not rows:
        return None
    table = Table(title="Leaked rows (examples)", title_justify="left")
    for name in ("split", "row", "train row", "kind", "values"):
        table.add_column(name)
    for split, e in rows:
        values = {k: v for k, v in e.items() if k not in ("row", "train_row", "kind")}
        text = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in list(values.items())[:6]
        )
        table.add_row(split, str(e["row"]), str(e["train_row"]), e["kind"], text[:80])
    return table


def render(report: Report, width: int = 100) -> str:
    """The summary table, class balance, leaked-row examples and warnings as plain text."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=False, color_system=None)
    console.print(_summary(report))
    if report.task == "classification" and report.class_counts:
        console.print(_classes(report))
    examples = _examples(report)
    if examples is not None:
        console.print(examples)
    if report.warnings:
        console.print("Warnings:")
        for note in report.warnings:
            console.print(f"  - {note}", markup=False)
    else:
        console.print("No problems found.")
    return buffer.getvalue().rstrip() + "\n"

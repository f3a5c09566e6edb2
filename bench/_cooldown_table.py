"""The table of bench/cooldown.py: cells over seeds, paired differences, epoch ratios and issue 21's targets.

Everything here reads result rows (dicts with ``seed``, ``test_acc``, ``test_loss``, ``epochs``, ``seconds``,
``kept_from`` and, for best_cosine, ``chosen_length``) grouped as ``got[workload][runner] -> rows``.
"""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

import _cooldown_workloads as W

Rows = list[dict[str, Any]]
TARGETS = "targets: acc≈bc · loss≈bc · loss<default · epochs≤bc"


def _ms(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def cell(rows: Rows) -> str:
    """``acc% ± sd / loss ± sd @ epochs`` over seeds."""
    if not rows:
        return "-"
    acc, acc_sd = _ms([100 * r["test_acc"] for r in rows])
    loss, loss_sd = _ms([r["test_loss"] for r in rows])
    epochs = statistics.fmean(r["epochs"] for r in rows)
    return f"{acc:.1f}±{acc_sd:.1f} / {loss:.3f}±{loss_sd:.3f} @ {epochs:.0f}"


def paired(a: Rows, b: Rows) -> dict[str, Any] | None:
    """Per-seed differences a - b (accuracy in points, test loss), over the seeds both have."""
    by_seed = {r["seed"]: r for r in b}
    pairs = [(r, by_seed[r["seed"]]) for r in a if r["seed"] in by_seed]
    if not pairs:
        return None
    acc = _ms([100 * (x["test_acc"] - y["test_acc"]) for x, y in pairs])
    loss = _ms([x["test_loss"] - y["test_loss"] for x, y in pairs])
    return {"acc": acc, "loss": loss, "n": len(pairs)}


def _paired_text(d: dict[str, Any] | None) -> str:
    if d is None:
        return "-"
    (acc, acc_sd), (loss, loss_sd) = d["acc"], d["loss"]
    return f"{acc:+.1f}±{acc_sd:.1f} / {loss:+.3f}±{loss_sd:.3f} (n={d['n']})"


def targets(cand: Rows, best: Rows, default: Rows) -> dict[str, bool | None]:
    """The issue's per-workload targets for the candidate runner (None where a side has no rows): mean test
    accuracy / loss within one seed-sd of best_cosine's (or better), a lower mean test loss than default's,
    no more mean epochs than best_cosine's."""
    out: dict[str, bool | None] = {"acc": None, "loss": None, "default": None, "epochs": None}
    if cand and best:
        (ca, _), (ba, ba_sd) = (
            _ms([r["test_acc"] for r in cand]),
            _ms([r["test_acc"] for r in best]),
        )
        (cl, _), (bl, bl_sd) = (
            _ms([r["test_loss"] for r in cand]),
            _ms([r["test_loss"] for r in best]),
        )
        out["acc"], out["loss"] = ca >= ba - ba_sd, cl <= bl + bl_sd
        ce, be = (statistics.fmean(r["epochs"] for r in rs) for rs in (cand, best))
        out["epochs"] = ce <= be
    if cand and default:
        mean_loss = [_ms([r["test_loss"] for r in rs])[0] for rs in (cand, default)]
        out["default"] = mean_loss[0] < mean_loss[1]
    return out


def _pf(value: bool | None) -> str:
    return "-" if value is None else ("pass" if value else "fail")


def _runner_cells(by: dict[str, Rows], unavailable: set[str]) -> list[str]:
    cells = []
    for r, rows in by.items():
        text = "not available" if r in unavailable and not rows else cell(rows)
        if r == "best_cosine" and rows:
            length, n = Counter(x["chosen_length"] for x in rows).most_common(1)[0]
            text += f" (L={length} ×{n})"
        if r in ("on_stop", "sweep") and rows:  # seeds whose kept model came from a cooldown
            text += f" (cd {sum(x['kept_from'] != 'trunk' for x in rows)}/{len(rows)})"
        cells.append(text)
    return cells


def table(
    got: dict[str, dict[str, Rows]],
    cand: str,
    unavailable: set[str],
    notes: list[str],
    seeds: int,
    n_lengths: int,
) -> str:
    """The markdown table, then ``notes``, the mean epoch ratio and each workload's pass/fail."""
    runners = list(next(iter(got.values()), {}))
    head = ["W", "workload", "half", "batch", *runners, f"{cand} − default Δacc / Δloss"]
    head += [f"{cand} − best_cosine Δacc / Δloss", f"epochs {cand}/best_cosine", TARGETS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ratios: dict[str, float] = {}
    verdicts: dict[str, dict] = {}
    for wid, by in got.items():
        w = W.WORKLOADS[wid]
        c, bc, df = by.get(cand, []), by.get("best_cosine", []), by.get("default", [])
        ratio = "-"
        if c and bc:
            ratios[wid] = statistics.fmean(x["epochs"] for x in c) / statistics.fmean(
                x["epochs"] for x in bc
            )
            ratio = f"{ratios[wid]:.2f}"
        verdicts[wid] = targets(c, bc, df)
        row = [wid, w.label, "selection" if w.selection else "held out", str(w.batch_size)]
        row += _runner_cells(by, unavailable)
        row += [_paired_text(paired(c, df)), _paired_text(paired(c, bc)), ratio]
        row.append(" · ".join(_pf(v) for v in verdicts[wid].values()))
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", *notes]
    if ratios:
        mean = statistics.fmean(ratios.values())
        halves = {
            h: [v for k, v in ratios.items() if W.WORKLOADS[k].selection == (h == "selection")]
            for h in ("selection", "held out")
        }
        parts = ", ".join(f"{h} {statistics.fmean(v):.2f}" for h, v in halves.items() if v)
        lines.append(
            f"Mean over workloads of the epoch ratio {cand}/best_cosine: {mean:.2f} "
            f"({parts}); target <= 0.35: {_pf(mean <= 0.35)}"
        )
    for wid, v in verdicts.items():
        known = [x for x in v.values() if x is not None]
        if known:
            failed = [k for k, x in v.items() if x is False]
            verdict = "pass" if not failed else f"fail ({', '.join(failed)})"
            lines.append(
                f"{wid}: {verdict}" + ("" if len(known) == len(v) else " (runners missing)")
            )
    lines.append(
        f"{seeds} seed(s); cells: test accuracy % ± sd / test cross-entropy ± sd @ mean epochs trained "
        f"(best_cosine: the sum of its {n_lengths} runs; L: its most chosen length; cd k/n: k seeds kept "
        f"a model from a cooldown); settings chosen on the selection half (W1, W3, W5, W7), the rest "
        f"held out."
    )
    return "\n".join(lines)


def times_table(got: dict[str, dict[str, Rows]]) -> str:
    """Mean seconds per seed of each runner (to plan a full run)."""
    runners = list(next(iter(got.values()), {}))
    lines = [
        "| W | " + " | ".join(runners) + " | all runners |",
        "|---|" + "---|" * (len(runners) + 1),
    ]
    for wid, by in got.items():
        secs = [statistics.fmean(r["seconds"] for r in by[x]) if by[x] else None for x in runners]
        total = sum(s for s in secs if s is not None)
        shown = " | ".join("-" if s is None else f"{s:.1f}" for s in secs)
        lines.append(f"| {wid} | {shown} | {total:.1f} |")
    return "\n".join(lines)

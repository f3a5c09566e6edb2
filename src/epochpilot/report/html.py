"""``write_report(run_dir)``: one self-contained report.html (and plots/*.png) that explains a run."""

from __future__ import annotations

import json
import math
import webbrowser
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from epochpilot._files import atomic_write_text
from epochpilot.report.branches import BRANCH_KEYS, branches, kept, kept_sentence, uses_cooldown
from epochpilot.report.figures import run_figures
from epochpilot.report.load import RunData, load_run
from epochpilot.report.page import duration, esc, flatten, fmt, img, kv_table, page, table
from epochpilot.report.plots import PHASE_COLORS, PHASE_LABELS, figure_png

__all__ = ["DIAGNOSIS_TEXT", "write_report"]

DIAGNOSIS_TEXT = {
    "good_fit": "The validation curve flattened out at its best and stayed there: the budget fit the problem.",
    "overfitting": "Validation got worse while training kept improving: the best weights come from before "
    "the turn.",
    "underfitting": "The curve was still improving when training ended: more epochs, a higher learning rate "
    "or a bigger model would help.",
    "diverged": "The loss blew up or became NaN: training was unstable.",
    "too_noisy_to_tell": "The curve moves within its own epoch-to-epoch noise, or there are too few epochs, "
    "to call a trend.",
}
_LABEL = {
    "good_fit": "Good fit",
    "overfitting": "Overfitting",
    "underfitting": "Underfitting",
    "diverged": "Diverged",
    "too_noisy_to_tell": "Too noisy to tell",
}


def _card(title: str, body: str, cls: str = "") -> str:
    return f'<section class="card {cls}"><h2>{esc(title)}</h2>{body}</section>'


def _num(x: Any) -> float | None:
    return (
        float(x)
        if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
        else None
    )


def _stop_card(run: RunData) -> str:
    s = run.summary
    msg = s.get("stop_message") or ("no summary.json: the run may still be going" if not s else "—")
    reason = s.get("stop_reason")
    stopped = s.get("stopped_epoch") or len(run.history)
    chip = f' <span class="chip">{esc(reason)}</span>' if reason else ""
    return _card(
        "Why it stopped",
        f'<div class="kpi">epoch {esc(stopped)}{chip}</div><p>{esc(msg)}</p>',
    )


def _best_card(run: RunData) -> str:
    s, a = run.summary, run.analysis
    best = s.get("best_epoch") or (a.best_epoch if a else None)
    value = _num(s.get("best_value"))
    if value is None and a is not None:
        value = a.best_value
    mon = s.get("monitor") or run.monitor or "—"
    mode = s.get("mode") or run.mode
    body = f'<div class="kpi">epoch {esc(best if best is not None else "—")}</div>'
    body += f'<p><span class="chip">{esc(mon)}</span> = <b>{esc(fmt(value))}</b>'
    body += f' <span class="note">({esc(mode)} is better)</span></p>' if mode else "</p>"
    if a is not None and a.sweet_spot is not None:
        body += f'<p class="note">Curve analysis: sweet spot at epoch {a.sweet_spot}'
        if a.overfit_onset is not None:
            body += f", overfitting from epoch {a.overfit_onset}"
        body += ".</p>"
    return _card("Best epoch (weights kept)", body)


def _compute_card(run: RunData) -> str:
    s = run.summary
    ran = s.get("epochs_run") or len(run.history)
    cap = _num(s.get("max_epochs"))
    body = (
        f'<div class="kpi">{esc(ran)}<small> / {esc(fmt(s.get("max_epochs")))} epochs</small></div>'
    )
    if cap:
        pct = max(0.0, min(100.0, 100.0 * float(ran) / cap))
        body += f'<div class="bar"><span style="width:{pct:.1f}%"></span></div>'
        body += f'<p class="note">{pct:.0f}% of the epoch budget used</p>'
    steps = s.get("total_steps")
    if steps is None and run.history:
        steps = run.history[-1].get("step")
    spe = s.get("steps_per_epoch")
    rows = [("optimizer steps", steps)]
    if isinstance(spe, int) and cap:
        rows.append(("step budget", int(spe * cap)))
    trained = _num(s.get("epochs_trained"))
    if trained is not None and uses_cooldown(run):
        rows.append(("epochs trained (branches included)", f"{trained:.1f}"))
    rows.append(("wall time", duration(s.get("elapsed_s"))))
    times = [_num(r.get("epoch_time_s")) for r in run.history]
    times = [t for t in times if t is not None]
    if times:
        rows.append(("per epoch", duration(sum(times) / len(times))))
    names = {"n_train": "train samples", "n_val": "val samples", "batch_size": "batch size"}
    rows += [(label, s[k]) for k, label in names.items() if s.get(k) is not None]
    if isinstance(spe, int):
        rows.append(("steps per epoch", spe))
    rows += _batch_rows(s.get("batch"))
    return _card("Compute used vs budget", body + kv_table(rows))


def _batch_rows(batch: Any) -> list[tuple[str, Any]]:
    """The batching rows (summary.json's ``batch``): micro-batch x accumulation = effective batch, how it
    was chosen, and each out-of-memory shrink; none for a run without that record."""
    if not isinstance(batch, dict) or batch.get("micro_batch") is None:
        return []
    rows: list[tuple[str, Any]] = [
        (
            "micro-batch x accumulation",
            f"{batch['micro_batch']} x {batch.get('accumulation')} = effective batch "
            f"{batch.get('effective_batch')} ({batch.get('chosen')})",
        )
    ]
    if _num(batch.get("samples_per_s")):
        rows.append(("searched speed", f"{batch['samples_per_s']:,.0f} samples/s"))
    for shrink in batch.get("shrinks") or []:
        if isinstance(shrink, dict):
            rows.append(
                (
                    "out of memory",
                    f"epoch {shrink.get('epoch')}: micro-batch now {shrink.get('micro_batch')}",
                )
            )
    if _num(batch.get("lr_factor")) not in (None, 1.0):
        rows.append(("lr scaled by", f"{batch['lr_factor']:.4g}"))
    return rows


def _scale(run: RunData) -> dict[str, Any] | None:
    """A regression run's target scaler from summary.json (its losses are on the standardised target)."""
    scale = run.summary.get("target_scale")
    return scale if isinstance(scale, dict) and _num(scale.get("std")) else None


def _scores_table(run: RunData) -> str:
    """The kept model's scores on the validation and test rows (one column each), labelled with their
    units; "" when summary.json holds neither."""
    from epochpilot.core.scores import SCORE_ORDER, score_label, unit_note

    s = run.summary
    cols = [
        (name, s[key])
        for key, name in (("val_metrics", "validation"), ("test_metrics", "test"))
        if isinstance(s.get(key), dict) and s[key]
    ]
    if not cols:
        return ""
    keys = list(dict.fromkeys(k for _, metrics in cols for k in metrics))
    keys.sort(key=lambda k: SCORE_ORDER.index(k) if k in SCORE_ORDER else len(SCORE_ORDER))
    task = s.get("task")
    target = (_scale(run) or {}).get("target")
    rows = []
    for k in keys:
        unit = unit_note(k, task, target)
        label = f"{score_label(k)} ({unit})" if unit else score_label(k)
        rows.append((label, *(_num(metrics.get(k)) for _, metrics in cols)))
    kept = s.get("best_epoch")
    head = f"Scores of the kept model (epoch {kept})" if kept else "Scores of the kept model"
    return f"<h3>{esc(head)}</h3>" + table(("score", *(n for n, _ in cols)), rows)


def _metrics_card(run: RunData) -> str:
    from epochpilot.core.scores import loss_note

    s = run.summary
    fm = s.get("final_metrics")
    if not isinstance(fm, dict):
        best = s.get("best_epoch") or (run.analysis.sweet_spot if run.analysis else None)
        fm = run.row_at(best) or (run.history[-1] if run.history else {})
    skip = ("epoch", "step", *BRANCH_KEYS)
    scale = _scale(run)
    rows = [
        (f"{k} (standardised target)" if scale and k.endswith("loss") else k, v)
        for k, v in fm.items()
        if k not in skip and _num(v) is not None
    ]
    body = kv_table(rows) if rows else '<p class="note">no metrics recorded</p>'
    loss_key = next((k for k in ("val_loss", "loss", "train_loss") if _num(fm.get(k))), None)
    if scale and loss_key:
        body += (
            f'<p class="note">The losses are MSE on the standardised target (its mean subtracted, divided '
            f"by its standard deviation); for {esc(loss_key)}, "
            f"{esc(loss_note(fm[loss_key], scale).split('; ', 1)[-1])}. R², MAE "
            f"and RMSE below are in the target's own units.</p>"
        )
    return _card(f"Metrics at epoch {fm.get('epoch', '—')}", body + _scores_table(run))


def _span(epochs: list[int]) -> str | None:
    if not epochs:
        return None
    return str(epochs[0]) if epochs[0] == epochs[-1] else f"{epochs[0]}–{epochs[-1]}"


def _branches_card(run: RunData) -> str:
    """Where the kept model came from (one sentence) and a table of the cooldown branches; "" for a run
    without cooldown branches."""
    sentence = kept_sentence(run)
    if sentence is None:
        return ""
    body = f'<p class="diag">{esc(sentence)}</p>'
    brs = branches(run)
    if brs:
        where = kept(run)
        mon = run.summary.get("monitor") or run.monitor or "monitor"
        rows = [
            (
                f"{b.k} (ended the run)" if b.final else b.k,
                b.fork_epoch,
                _span(b.epochs),
                b.steps,
                b.best_value,
                b.best_epoch,
            )
            for b in brs
        ]
        best_row = next(
            (i for i, b in enumerate(brs) if where.source == "cooldown" and b.k == where.k), None
        )
        head = ("branch", "forked after epoch", "epochs", "updates", f"best {mon}", "at epoch")
        body += table(head, rows, best_row=best_row)
    return _card("Where the kept model came from", body, "wide")


def _advice_card(run: RunData) -> str:
    a = run.analysis
    if a is None:
        return _card(
            "Advice", '<p class="note">No loss or monitored metric to analyse.</p>', "wide"
        )
    items = "".join(f"<li>{esc(t)}</li>" for t in a.advice)
    phases = "".join(
        f'<tr><td><span class="swatch" style="background:{PHASE_COLORS[p.name]}"></span>'
        f"{esc(PHASE_LABELS[p.name])}</td><td>{p.start}–{p.end}</td><td>{p.length}</td></tr>"
        for p in a.phases
    )
    body = (
        f'<p class="diag"><b>{esc(_LABEL[a.diagnosis])}.</b> {esc(DIAGNOSIS_TEXT[a.diagnosis])}</p>'
    )
    body += f'<ul class="advice">{items}</ul>'
    if phases:
        body += (
            f"<h3>Phases of {esc(a.monitor)}</h3><table><thead><tr><th>phase</th><th>epochs</th>"
            f"<th>length</th></tr></thead><tbody>{phases}</tbody></table>"
        )
    return _card("Diagnosis and advice", body, "wide")


def _plan_card(run: RunData) -> str:
    plan = run.summary.get("plan")
    if not isinstance(plan, dict) or not plan:
        return ""
    s, a = run.summary, run.analysis
    lrs = [v for v in (_num(r.get("lr")) for r in run.history) if v is not None]
    waited = None
    if isinstance(s.get("stopped_epoch"), int) and isinstance(s.get("best_epoch"), int):
        waited = f"waited {s['stopped_epoch'] - s['best_epoch']} epochs after the best"
    outcome = {
        "max_epochs": f"ran {s.get('epochs_run', len(run.history))}, best at {s.get('best_epoch', '—')}"
        + (f", sweet spot {a.sweet_spot}" if a and a.sweet_spot else ""),
        "patience": waited,
        "total_steps": s.get("total_steps"),
        "steps_per_epoch": s.get("steps_per_epoch"),
        "batch_size": s.get("batch_size"),
        "lr": f"peak {fmt(max(lrs))}" if lrs else None,
        "n_samples": s.get("n_train"),
    }
    rows = [
        (k, v, outcome.get(k))
        for k, v in plan.items()
        if k != "rationale" and not isinstance(v, dict)
    ]
    body = table(("item", "planned", "outcome"), rows)
    why = plan.get("rationale")
    if isinstance(why, list) and why:
        body += "<h3>Why this plan</h3><ul>" + "".join(f"<li>{esc(w)}</li>" for w in why) + "</ul>"
    return _card("Plan vs outcome", body, "wide")


def _config_groups(config: dict[str, Any]) -> str:
    """Top-level keys as "run", then one small table per TOML table, laid out in a grid."""
    top = [(k, v) for k, v in config.items() if not isinstance(v, dict)]
    groups = ([("run", top)] if top else []) + [
        (k, flatten(v)) for k, v in config.items() if isinstance(v, dict)
    ]
    return (
        '<div class="cfg">'
        + "".join(
            f"<div><h3>[{esc(name)}]</h3>{kv_table(rows)}</div>"
            if name != "run"
            else f"<div><h3>{esc(name)}</h3>{kv_table(rows)}</div>"
            for name, rows in groups
        )
        + "</div>"
    )


def _config_card(run: RunData) -> str:
    if run.config is not None:
        body = (
            _config_groups(run.config) if run.config else '<p class="note">config.toml is empty</p>'
        )
        body += (
            f"<details><summary>config.toml</summary><pre>{esc(run.config_text)}</pre></details>"
        )
    elif run.config_text is not None:
        body = f"<pre>{esc(run.config_text)}</pre>"
    else:
        body = '<p class="note">No config.toml in this run directory (written by another adapter?).</p>'
    if run.summary:
        dump = json.dumps(run.summary, indent=2, default=str)
        body += f"<details><summary>summary.json</summary><pre>{esc(dump)}</pre></details>"
    return _card("Resolved config", body, "wide")


def _header(run: RunData) -> str:
    a = run.analysis
    pill = f'<span class="pill {a.diagnosis}">{esc(_LABEL[a.diagnosis])}</span>' if a else ""
    return (
        f'<header class="top"><div><div class="brand">epochpilot run report</div>'
        f'<h1>{esc(run.name)}</h1><div class="sub">{esc(run.path.resolve())}</div></div>{pill}</header>'
    )


def render(run: RunData, pngs: list[tuple[str, str, bytes]]) -> str:
    """The report page for ``run`` with its plots (stem, caption, PNG bytes)."""
    figs = []
    for i, (stem, caption, png) in enumerate(pngs):
        cls = "card wide" if i == 0 or stem == "branches" else "card"
        figs.append(
            f'<figure class="{cls}">{img(png, stem)}<figcaption>{esc(caption)}</figcaption></figure>'
        )
    notes = "".join(f"<li>{esc(n)}</li>" for n in run.notes)
    version = run.summary.get("epochpilot_version", "")
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        _header(run),
        f'<div class="grid">{_stop_card(run)}{_best_card(run)}{_compute_card(run)}'
        f"{_metrics_card(run)}</div>",
        f'<div class="grid">{_branches_card(run)}{_advice_card(run)}</div>',
        f'<div class="plots">{"".join(figs)}</div>' if figs else "",
        f'<div class="grid">{_plan_card(run)}{_config_card(run)}</div>',
        _card("Notes", f"<ul>{notes}</ul>", "wide") if notes else "",
        f"<footer>epochpilot {esc(version)} · generated {esc(when)} · plots also in plots/*.png</footer>",
    ]
    return page(f"{run.name} · epochpilot report", "".join(body))


def write_report(run_dir: str | Path, *, open_browser: bool = False) -> Path:
    """Write ``run_dir/report.html`` (self-contained) and ``run_dir/plots/*.png``; return the HTML's path.

    Reads config.toml, history.jsonl and summary.json; only history.jsonl is required. A missing run
    directory or history raises :class:`~epochpilot.report.ReportError` naming the file and the fix.
    """
    run = load_run(run_dir)
    plots_dir = run.path / "plots"
    pngs = []
    for stem, caption, fig in run_figures(run):
        pngs.append((stem, caption, figure_png(fig, plots_dir / f"{stem}.png")))
    out = run.path / "report.html"
    atomic_write_text(out, render(run, pngs))
    if open_browser:
        webbrowser.open(out.resolve().as_uri())
    return out

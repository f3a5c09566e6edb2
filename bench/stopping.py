"""Stopping benchmark: replay real learning curves through every stop policy; compute vs regret.

    .venv/bin/python bench/stopping.py                   # leave-one-corpus-out table + figure (the headline)
    .venv/bin/python bench/stopping.py --fit-prior       # the same, then write the weights fitted on all corpora
    .venv/bin/python bench/stopping.py --split report    # secondary view: per-corpus split tables + figures

Leave-one-corpus-out (bench/_loco_report.py): corpora are the generated MLP/CNN curves, the generated
"sched" and "conv" families (bench/make_curves.py --family), the shared TaskSet and AlgoPerf curves. Every
figure for a corpus comes from a prior and settings fitted and chosen without it, settings by the worst
held-out ratio. Scores are ../shared/stopbench/score.py's (tests/core/stopping/test_scorer_agreement.py).

Per policy: compute = mean(stop epoch / budget); regret = mean and p90 of the test metric lost against the
full run's best-validation epoch (loss: relative %, accuracy: points). The patience rules (2, 3, 5, 10, 20,
plus "full budget" = never stop, regret 0) trace a frontier; Forecast's target is at most half the
frontier's mean regret at its own compute, with p90 no worse.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _replay import (  # noqa: E402
    ALGOPERF,
    CONV,
    GENERATED,
    GRAD,
    SCHED,
    TASKSET,
    TRAIN,
    VAL,
    Curve,
    Result,
    evaluate,
    figure,
    load_algoperf,
    load_generated,
    load_taskset,
    metrics_at,
    replay,
    table,
)

from epochpilot.stopping.forecast import Forecast  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
#: the prior as shipped before leave-one-corpus-out (fitted on generated + TaskSet), for the comparison row
BEFORE = Path(__file__).resolve().parent / "data" / "forecast_prior_before_loco.json"
PATIENCES = (2, 3, 5, 10, 20)
SWEEP = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
ERR = "val_err"


def _err_metrics(c: Curve, i: int) -> dict[str, float]:
    """Prechelt's rules watch an error (>= 0, lower is better): the loss, or 1 - accuracy."""
    m = metrics_at(c, i)
    m[ERR] = m[VAL] if c.kind == "loss" else 1.0 - m[VAL]
    return m


def _replay_err(c: Curve, make) -> int:
    policy = make()
    for i in range(c.budget):
        if policy.update(i + 1, _err_metrics(c, i)).stop:
            return i + 1
    return c.budget


def baselines(curves: list[Curve], on: str) -> tuple[list[Result], list[Result]]:
    """The patience frontier (plus full budget) and the other baselines (Prechelt, half budget)."""
    from epochpilot.stopping import EarlyStopping, GeneralizationLoss, ProgressQuotient, UpStrips

    frontier = [
        evaluate(
            curves,
            f"patience {k}",
            lambda c, k=k: replay(c, EarlyStopping(VAL, c.mode, patience=k)),
            on,
        )
        for k in PATIENCES
    ]
    frontier.append(evaluate(curves, "full budget", lambda c: c.budget, on))
    others = [
        evaluate(
            curves,
            "Prechelt GL5",
            lambda c: _replay_err(c, lambda: GeneralizationLoss(5.0, ERR)),
            on,
        ),
        evaluate(
            curves,
            "Prechelt PQ0.5",
            lambda c: _replay_err(
                c, lambda: ProgressQuotient(0.5, 5, monitor=ERR, train_monitor=TRAIN)
            ),
            on,
        ),
        evaluate(
            curves,
            "Prechelt UP3",
            lambda c: _replay_err(c, lambda: UpStrips(3, 5, monitor=ERR)),
            on,
        ),
        evaluate(curves, "half budget", lambda c: max(1, c.budget // 2), on),
    ]
    return frontier, others


def forecast_trajectory(c: Curve, train: bool = True, **kwargs) -> list[float | None]:
    """P(improve) after every epoch (None while collecting; -1 at a non-finite value = stop at once;
    1 while the excursion guard holds)."""
    policy = Forecast(
        VAL,
        c.mode,
        budget=c.budget,
        train_monitor=TRAIN if train else None,
        grad_monitor=GRAD,
        **kwargs,
    )
    out: list[float | None] = []
    for i in range(c.budget):
        d = policy.update(i + 1, metrics_at(c, i))
        p = policy.last_p_improve
        if p is not None and policy.excursion() is not None:
            p = 1.0  # the excursion guard holds off a stop at any confidence
        out.append(-1.0 if d.reason.value == "not_finite" else p)
        if out[-1] == -1.0:
            break
    return out


def stop_from(traj: list[float | None], confidence: float, budget: int) -> int:
    """The epoch at which Forecast(confidence) stops, given its P(improve) trajectory."""
    for i, p in enumerate(traj):
        if p is not None and p < 1.0 - confidence:
            return i + 1
    return budget


def forecast_results(
    curves: list[Curve], on: str, default: float
) -> tuple[Result, list[Result], Result]:
    """Forecast at its default confidence, the confidence sweep (from one trajectory per curve), and the
    default without the train curve (validation only)."""
    trajs = {c.name: forecast_trajectory(c) for c in curves}
    bare = {c.name: forecast_trajectory(c, train=False) for c in curves}
    val_only = evaluate(
        curves,
        f"Forecast ({default:g}, no train curve)",
        lambda c: stop_from(bare[c.name], default, c.budget),
        on,
    )
    main = evaluate(
        curves,
        f"Forecast (default, {default:g})",
        lambda c: stop_from(trajs[c.name], default, c.budget),
        on,
    )
    sweep = [
        evaluate(
            curves, f"Forecast {q:g}", lambda c, q=q: stop_from(trajs[c.name], q, c.budget), on
        )
        for q in SWEEP
    ]
    # the trajectory shortcut must agree with the real policy: check a few curves
    for c in curves[:: max(1, len(curves) // 15)]:
        real = replay(
            c, Forecast(VAL, c.mode, budget=c.budget, train_monitor=TRAIN, grad_monitor=GRAD)
        )
        if real != stop_from(trajs[c.name], default, c.budget):
            raise RuntimeError(f"trajectory shortcut disagrees with Forecast on {c.name}")
    return main, sweep, val_only


def decision_ms() -> float:
    """Median time of one Forecast decision with 200 epochs of history (noisy power-law curve)."""
    rng = np.random.default_rng(0)
    policy = Forecast(VAL, "min", budget=400)
    for e in range(1, 200):
        policy.update(e, {VAL: e**-0.5 + 0.01 * rng.normal()})
    times = []
    for _ in range(50):
        fresh = Forecast(VAL, "min", budget=400)
        fresh.load_state_dict(policy.state_dict())
        t = time.perf_counter()
        fresh.update(200, {VAL: 200**-0.5})
        times.append(time.perf_counter() - t)
    return 1000.0 * statistics.median(times)


def corpora(args) -> list[tuple[str, str, list[Curve]]]:
    out = []
    if GENERATED.exists():
        out.append(("generated, val loss", "rel. %", load_generated(GENERATED, "loss")))
        out.append(("generated, val accuracy", "points", load_generated(GENERATED, "acc")))
    else:
        print(f"generated corpus missing ({GENERATED}): run bench/make_curves.py")
    if TASKSET.exists():
        out.append(("TaskSet IMDB RNNs, val loss", "rel. %", load_taskset(TASKSET, args.per_task)))
    else:
        print(f"TaskSet curves not found at {TASKSET.resolve()}: skipping that corpus")
    return out


def loco_rows(args) -> list:
    """Every visible corpus as LOCO rows (corpus x monitored metric), replayed once and cached."""
    import _loco

    specs = []
    for corpus, path in (("generated", GENERATED), ("sched", SCHED), ("conv", CONV)):
        if path.exists():
            for kind, metric in (("loss", "val loss"), ("acc", "val accuracy")):
                unit = "rel. %" if kind == "loss" else "points"
                specs.append(
                    (
                        f"{corpus}, {metric}",
                        corpus,
                        unit,
                        lambda p=path, k=kind, c=corpus: load_generated(p, k, c),
                    )
                )
        else:
            print(f"{path} missing: run bench/make_curves.py (see its docstring); corpus skipped")
    if TASKSET.exists():
        specs.append(
            ("taskset, val loss", "taskset", "rel. %", lambda: load_taskset(TASKSET, args.per_task))
        )
    else:
        print(f"TaskSet curves not found at {TASKSET.resolve()}: corpus skipped")
    if ALGOPERF.exists():
        specs.append(
            ("algoperf, target metric", "algoperf", "rel. %", lambda: load_algoperf(ALGOPERF))
        )
    else:
        print(f"AlgoPerf curves not found at {ALGOPERF.resolve()}: corpus skipped")
    rows = []
    for title, corpus, unit, load in specs:
        t0 = time.time()
        curves = load()
        rows.append(_loco.build_row(title, corpus, unit, curves))
        rows[-1].curves = curves  # kept for the shortcut check (not cached)
        print(
            f"  {title}: {len(rows[-1])} curves, {len(rows[-1].X)} forecast epochs ({time.time() - t0:.0f} s)",
            flush=True,
        )
    return rows


def loco(args) -> None:
    """The leave-one-corpus-out table, figure and (with --fit-prior) the shipped weights."""
    import _loco
    import _loco_report as lr

    t0 = time.time()
    print("replaying every corpus once (cached under", _loco.CACHE, ")", flush=True)
    rows = loco_rows(args)
    free = lr.run(rows)
    lo = free["loco"]
    res = lr.run(rows, lo=lo, capped=True)  # the candidate default: Forecast capped by patience
    for v in (free, res):  # the cached shortcut must agree with the real policy and its weights
        for r in rows:
            s, _, _ = v["held_out"][r.title]
            w = lo.weights(frozenset({r.corpus}), s.features, s.label_rel)
            _loco.check_shortcut(r, r.curves, w, s)
    print("shortcut agrees with the real Forecast on every corpus", flush=True)
    extra = lr.patience_rows(lo)
    before = json.loads(BEFORE.read_text())["WEIGHTS"]
    extra["Forecast as shipped before (0.95; prior fitted on generated+TaskSet)"] = {
        r.title: lo.cell(r, _loco.forecast_stops(r, _loco.p_improve(r, before), 0.95)) for r in rows
    }
    extra[f"Forecast free, shipped setting, LOCO prior ({free['ship']})"] = free["ship_cells"]
    extra[f"Forecast capped, shipped setting, LOCO prior ({res['ship']})"] = res["ship_cells"]
    ms = decision_ms()
    head = (
        f"Leave-one-corpus-out: `.venv/bin/python bench/stopping.py` ({time.time() - t0:.0f} s; "
        f"Forecast decision {ms:.2f} ms median at 200 epochs of history)"
    )
    text = (
        "#### Forecast, every setting chosen held out (patience cap free: 0 = none, 10, 15, 20)\n\n"
        + lr.table(free, {})
        + "\n\n#### Forecast capped by patience (cap 10/15/20 chosen held out; the cap itself fixed by design)"
        "\n\n" + lr.table(res, extra)
    )
    print("\n" + head + "\n\n" + text, flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stopping-loco.md").write_text(head + "\n\n" + text + "\n")
    if not args.no_plots:
        lr.figure(res, RESULTS / "stopping-loco.png")
    if args.fit_prior:
        ship = res["ship"]
        fitted = {
            "WEIGHTS": _loco.fit(
                rows, lr.FEATURE_SETS[ship.features], ship.label_rel, lo.l2, per_row=lo.per_row
            ),
            "WEIGHTS_NO_TRAIN": _loco.fit(
                rows,
                lr.FEATURE_SETS[ship.features],
                ship.label_rel,
                lo.l2,
                per_row=lo.per_row,
                blank_train=True,
            ),
        }
        for k in fitted:
            fitted[k]["setting"] = {
                "confidence": ship.confidence,
                "patience_floor": ship.floor,
                "min_fraction": ship.min_fraction,
                "patience_cap": ship.cap,
            }
        from epochpilot.stopping import _prior_weights

        path = Path(_prior_weights.__file__)
        body = "\n\n".join(f"{k} = {json.dumps(v, indent=4)}" for k, v in fitted.items())
        path.write_text(
            '"""Weights of the empirical prior (generated by ``bench/stopping.py --fit-prior``; do not edit by '
            "hand).\n\nFitted on every corpus of the leave-one-corpus-out benchmark. ``WEIGHTS`` for runs with a "
            'train curve (``train_monitor``), ``WEIGHTS_NO_TRAIN`` for runs without one.\n"""\n\n'
            f"{body}\n"
        )
        print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--split",
        choices=("report", "tune", "all"),
        default=None,
        help="secondary view: per-corpus split tables (default: leave-one-corpus-out)",
    )
    ap.add_argument("--on", choices=("test", "valid"), default="test", help="regret measured on")
    ap.add_argument(
        "--per-task", type=int, default=0, help="TaskSet configs per task file (0 = all 1000)"
    )
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument(
        "--fit-prior", action="store_true", help="LOCO, then write the prior fitted on all corpora"
    )
    args = ap.parse_args()
    args.per_task = args.per_task or None
    if args.split is None:
        loco(args)
        return
    default = Forecast(VAL, "min", budget=1).confidence
    ms = decision_ms()
    print(f"Forecast decision time, 200 epochs of history: {ms:.2f} ms (median)\n")
    RESULTS.mkdir(exist_ok=True)
    report = [f"Forecast decision time, 200 epochs of history: {ms:.2f} ms (median)"]
    for title, unit, curves in corpora(args):
        if args.split != "all":
            curves = [c for c in curves if c.split() == args.split]
        t0 = time.time()
        frontier, others = baselines(curves, args.on)
        main_r, sweep, val_only = forecast_results(curves, args.on, default)
        rows = frontier + others + [main_r, val_only] + sweep
        head = f"{title} ({len(curves)} curves, {args.split} split, regret on {args.on})"
        text = table(head, unit, rows, main_r, frontier, also=(val_only,))
        print(text)
        print(f"({time.time() - t0:.0f} s)\n")
        report.append(text)
        if not args.no_plots:
            slug = title.split(",")[0].split()[0].lower() + ("-acc" if "accuracy" in title else "")
            figure(
                RESULTS / f"stopping-{slug}-{args.split}-{args.on}.png",
                head,
                unit,
                frontier,
                others,
                sweep,
                main_r,
            )
    out = RESULTS / f"stopping-{args.split}-{args.on}.md"
    out.write_text("\n\n".join(report) + "\n")
    print(f"tables written to {out}")


if __name__ == "__main__":
    main()

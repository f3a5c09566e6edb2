"""Stopping benchmark: replay real learning curves through every stop policy; compute vs regret.

    .venv/bin/python bench/stopping.py                   # report split of every corpus, tables + figures
    .venv/bin/python bench/stopping.py --split tune --on valid   # what Forecast's defaults were tuned on

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
    GENERATED,
    GRAD,
    TASKSET,
    TRAIN,
    VAL,
    Curve,
    Result,
    evaluate,
    figure,
    frontier_at,
    load_generated,
    load_taskset,
    metrics_at,
    noise_sd,
    replay,
    table,
)

from epochpilot.stopping.forecast import Forecast  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
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


def tune(args) -> None:
    """Grid over Forecast's ensemble settings on the tuning split, regret on *validation* (never test)."""
    import itertools

    from epochpilot.stopping import forecast as fmod

    grid = json.loads(args.grid)
    keys = sorted(grid)
    data = [(t, [c for c in cs if c.split() == "tune"]) for t, _, cs in corpora(args)]
    fronts = {t: baselines(cs, "valid")[0] for t, cs in data}
    saved = dict(fmod.FIT_OPTIONS)
    for combo in itertools.product(*(grid[k] for k in keys)):
        fmod.FIT_OPTIONS.update(saved)
        fmod.FIT_OPTIONS.update(dict(zip(keys, combo)))
        line = []
        for t, cs in data:
            trajs = {c.name: forecast_trajectory(c) for c in cs}
            cells = []
            for q in SWEEP:
                r = evaluate(
                    cs, "", lambda c, q=q, tj=trajs: stop_from(tj[c.name], q, c.budget), "valid"
                )
                at = frontier_at(fronts[t], r.compute)
                ratio = f"{r.mean / at[0]:.2f}" if at and at[0] > 0 else "-"
                cells.append(f"{q:g}:{r.compute:.2f}/{ratio}")
            line.append(t.split(",")[0][:4] + t.split(",")[-1][-4:] + " " + " ".join(cells))
        print(dict(zip(keys, combo)))
        print("  " + "\n  ".join(line), flush=True)
    fmod.FIT_OPTIONS.update(saved)


def prior_samples(c: Curve) -> tuple[np.ndarray, np.ndarray]:
    """(features, gain in label units) at every forecast epoch of one curve, from its *validation* future.

    The label unit is max(noise sd, LABEL_REL * |best| / LABEL_NOISE): label = gain > LABEL_NOISE units.
    """
    from epochpilot.stopping._prior import LABEL_NOISE, LABEL_REL

    y = c.valid if c.mode == "min" else -c.valid
    sigma = noise_sd(y)
    policy = Forecast(VAL, c.mode, budget=c.budget, train_monitor=TRAIN, grad_monitor=GRAD)
    xs, ys = [], []
    for i in range(c.budget - policy.lookahead):
        if not np.isfinite(y[i]):
            break
        policy.update(i + 1, metrics_at(c, i))
        if policy.last_features is None:
            continue
        future = y[i + 1 : i + 1 + policy.lookahead]
        future = future[np.isfinite(future)]
        best = float(np.nanmin(y[: i + 1]))
        gain = best - float(future.min()) if len(future) else 0.0
        xs.append(policy.last_features)
        ys.append(gain / max(sigma, LABEL_REL * abs(best) / LABEL_NOISE, 1e-12))
    return np.array(xs).reshape(-1, len(policy.last_features) if xs else 0), np.array(ys)


def _logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float) -> dict:
    """Weighted L2 logistic regression on standardised features (Newton / IRLS)."""
    mean, scale = x.mean(0), x.std(0)
    scale = np.where(scale < 1e-6, 1.0, scale)
    z = np.column_stack([(x - mean) / scale, np.ones(len(x))])
    theta = np.zeros(z.shape[1])
    lam = l2 * np.eye(z.shape[1])
    lam[-1, -1] = 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ theta, -30, 30)))
        grad = z.T @ (w * (p - y)) + lam @ theta
        hess = (z * (w * p * (1 - p))[:, None]).T @ z + lam + 1e-9 * np.eye(len(theta))
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return {
        "mean": [round(float(v), 6) for v in mean],
        "scale": [round(float(v), 6) for v in scale],
        "coef": [round(float(v), 6) for v in theta[:-1]],
        "bias": round(float(theta[-1]), 6),
    }


def fit_prior(args) -> None:
    """Fit the empirical prior (logistic, L2) on the tuning split's validation curves; write its weights.

    Two weight sets from the same samples: one for runs that log a train curve (``train_monitor``), one
    for runs that do not (the train features blanked, as Forecast sees them then).
    """
    from epochpilot.stopping import _prior_weights
    from epochpilot.stopping._prior import FEATURES, LABEL_NOISE, LABEL_REL, TRAIN_FEATURES

    _prior_weights.WEIGHTS = _prior_weights.WEIGHTS_NO_TRAIN = None
    xs, ys, ws = [], [], []
    for title, _, curves in corpora(args):
        tune_curves = [c for c in curves if c.split() == "tune"]
        parts = [prior_samples(c) for c in tune_curves]
        x = np.concatenate([p[0] for p in parts if len(p[1])])
        gain_z = np.concatenate([p[1] for p in parts if len(p[1])])
        y = (gain_z > LABEL_NOISE).astype(float)
        print(
            f"{title}: {len(tune_curves)} tuning curves, {len(y)} samples, {y.mean():.2f} positive"
        )
        xs.append(x)
        ys.append(y)
        # each corpus weighs the same; a positive weighs more the larger the gain it would forfeit
        ws.append((1.0 + args.gain_weight * y * np.log1p(np.maximum(gain_z, 0.0))) / len(y))
    x, y, w = np.concatenate(xs), np.concatenate(ys), np.concatenate(ws)
    w = w / w.mean()
    blank = x.copy()
    blank[:, [FEATURES.index(f) for f in TRAIN_FEATURES]] = 0.0
    meta = {
        "l2": args.l2,
        "gain_weight": args.gain_weight,
        "label_noise": LABEL_NOISE,
        "label_rel": LABEL_REL,
    }
    fitted = {}
    for key, data in (("WEIGHTS", x), ("WEIGHTS_NO_TRAIN", blank)):
        fitted[key] = {"features": list(FEATURES), **_logistic(data, y, w, args.l2), **meta}
        print(key)
        for name, coef in zip(FEATURES, fitted[key]["coef"]):
            print(f"  {name:18s} {coef:+.3f}")
    _prior_weights.WEIGHTS = fitted["WEIGHTS"]
    _prior_weights.WEIGHTS_NO_TRAIN = fitted["WEIGHTS_NO_TRAIN"]
    if args.dry_run:
        return
    path = Path(_prior_weights.__file__)
    body = "\n\n".join(f"{k} = {json.dumps(v, indent=4)}" for k, v in fitted.items())
    path.write_text(
        '"""Weights of the empirical prior (generated by ``bench/stopping.py --fit-prior``; do not edit by '
        "hand).\n\n``WEIGHTS`` for runs with a train curve (``train_monitor``), ``WEIGHTS_NO_TRAIN`` for runs "
        'without one.\n"""\n\n'
        f"{body}\n"
    )
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=("report", "tune", "all"), default="report")
    ap.add_argument("--on", choices=("test", "valid"), default="test", help="regret measured on")
    ap.add_argument(
        "--per-task", type=int, default=0, help="TaskSet configs per task file (0 = all 1000)"
    )
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument(
        "--fit-prior", action="store_true", help="fit Forecast's prior on the tuning split"
    )
    ap.add_argument(
        "--gain-weight", type=float, default=1.0, help="extra weight of large future gains"
    )
    ap.add_argument(
        "--dry-run", action="store_true", help="--fit-prior without writing the weights"
    )
    ap.add_argument("--l2", type=float, default=1.0, help="L2 penalty of the prior's logistic fit")
    ap.add_argument(
        "--tune", action="store_true", help="grid over Forecast settings (tuning split, valid)"
    )
    ap.add_argument("--grid", default='{"noise_factor": [0, 0.5, 1], "start_frac": [0, 0.3]}')
    args = ap.parse_args()
    args.per_task = args.per_task or None
    if args.tune:
        tune(args)
        return
    if args.fit_prior:
        fit_prior(args)
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

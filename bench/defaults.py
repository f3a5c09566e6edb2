"""Do `epochpilot train`'s defaults hold up on a CSV they have never seen?

Each built-in data set is written out as a CSV; `epochpilot train --data FILE --target target` runs with no other
options; a plain scikit-learn baseline (logistic regression, or ridge for a regression target, on standardised
features) is fit on the same training rows (train + validation split). Both are scored on the same held-out 20%.
Prints a markdown table with the ratio epochpilot / baseline.

    python bench/defaults.py            # all data sets, 3 seeds
    python bench/defaults.py --seeds 1  # quicker
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from epochpilot.data import Preprocessor, Table, read_csv, write_builtin_csv
from epochpilot.job import DataSpec, JobSpec, RunSpec, TrainSpec
from epochpilot.pipeline import run_job, split

SETS = [
    ("digits", {}),
    ("breast_cancer", {}),
    ("wine", {}),
    ("mnist1d", {"n_samples": 4000}),
    ("diabetes", {}),
]


def baseline(table: Table, spec: JobSpec, task: str) -> float:
    """Held-out accuracy (or R²) of logistic / ridge regression on standardised features."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.metrics import accuracy_score, r2_score

    train, val, test = split(table, spec, task)
    fit_rows = Table(pd.concat([train, val]), table.target)
    pre = Preprocessor.fit(fit_rows, task=task)
    X, y = pre.transform(fit_rows.frame)
    Xt, yt = pre.transform(test)
    if task == "classification":
        model = LogisticRegression(max_iter=5000).fit(X, y)
        return float(accuracy_score(yt, model.predict(Xt)))
    model = Ridge(alpha=1.0).fit(X, y)
    return float(r2_score(yt, model.predict(Xt)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--sets", nargs="*", default=[name for name, _ in SETS], help="data sets to run"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, kwargs in [(n, kw) for n, kw in SETS if n in args.sets]:
            path = write_builtin_csv(name, Path(tmp) / f"{name}.csv", **kwargs)
            ours, base, epochs, secs = [], [], [], []
            for seed in range(args.seeds):
                # what `epochpilot train --data FILE --target target` does, plus a held-out test split
                spec = JobSpec(
                    data=DataSpec(csv=str(path), target="target", test_fraction=0.2, seed=seed),
                    train=TrainSpec(seed=seed, tensorboard=False, progress=False),
                    run=RunSpec(dir=f"{tmp}/{name}-{seed}"),
                )
                start = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()):
                    result = run_job(
                        spec, run_dir=Path(spec.run.dir), echo=lambda *_: None, write_report=False
                    )
                secs.append(time.perf_counter() - start)
                task = Preprocessor.from_json(result.run_dir / "preprocessor.json").task
                score = result.test_metrics["accuracy" if task == "classification" else "r2"]
                ours.append(score)
                epochs.append(result.fit.stopped_epoch)
                base.append(baseline(read_csv(path, "target"), spec, task))
            metric = "accuracy" if task == "classification" else "R²"
            rows.append(
                (
                    name,
                    metric,
                    np.mean(ours),
                    np.mean(base),
                    statistics.median(epochs),
                    np.mean(secs),
                )
            )
    print(
        f"\n{args.seeds} seed(s), held-out 20%, `epochpilot train` defaults vs scikit-learn baseline\n"
    )
    print(
        "| data set | metric | epochpilot train | sklearn baseline | ratio | epochs run (median) | s/run |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, metric, ours, base, epochs, secs in rows:
        print(
            f"| {name} | {metric} | {ours:.3f} | {base:.3f} | {ours / base:.3f} | {epochs:g} | {secs:.1f} |"
        )


if __name__ == "__main__":
    main()

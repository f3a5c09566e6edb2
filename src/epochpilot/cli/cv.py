"""``epochpilot cv CONFIG --folds 5``: choose the epoch count by k-fold cross-validation (and refit)."""

from __future__ import annotations

import argparse
import functools
import json
import logging
from pathlib import Path
from typing import Any

EXAMPLES = """examples:
  epochpilot cv examples/digits.toml --folds 5
  epochpilot cv --builtin wine --folds 3 --max-epochs 40 --workers 2
  epochpilot cv --data train.csv --target label --folds 5 --rule one_se --refit

Each fold trains the job's model with the job's settings and a generous patience (at least
max(10, max_epochs // 3) epochs) so its curve runs past its best; the folds' validation curves are
averaged per epoch and the epoch with the best mean (--rule min) or the smallest epoch within one
standard error of it (--rule one_se) is chosen. Writes RUN_DIR/fold-1 ... fold-K, selection.json and
report.html; --refit then trains on every row for that many epochs into RUN_DIR/refit (a predictor
that 'epochpilot predict' reads). The job's test share (if any) is left out; feature scaling is fitted
once on the remaining rows, shared by all folds.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the subcommand."""
    from epochpilot.cli.train import add_job_arguments

    p = subparsers.add_parser(
        "cv",
        help="choose the number of epochs by k-fold cross-validation",
        description="Run k folds of the job, align their validation curves by epoch, choose the epoch count "
        "and write a page with the k curves, the mean ± std band and the choice.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_job_arguments(p)
    c = p.add_argument_group("cross-validation")
    c.add_argument("--folds", type=int, default=5, help="number of folds k (default 5)")
    c.add_argument("--workers", type=int, default=1, help="folds trained in parallel processes")
    c.add_argument(
        "--rule", choices=["min", "one_se"], default="min", help="how the epoch is chosen"
    )
    c.add_argument(
        "--no-stratify", action="store_true", help="plain folds (stratified by class by default)"
    )
    c.add_argument(
        "--refit", action="store_true", help="then train on all rows for the chosen epochs"
    )


def cv_run_dir(spec: Any, given: Path | None, suffix: str) -> Path:
    """--run-dir when given, else runs/<data name>-<suffix> (or the job's run.dir + suffix)."""
    from epochpilot.cli.train import default_run_dir

    if given is not None:
        return Path(given)
    base = default_run_dir(spec)
    return base.with_name(f"{base.name}-{suffix}")


def _refuse_resume(args: argparse.Namespace) -> None:
    if args.resume:
        raise ValueError("epochpilot cv cannot resume: re-run with --overwrite")


def precheck(args: argparse.Namespace) -> None:
    """``epochpilot cv``'s flags, job file and data file checked before torch is imported."""
    from epochpilot.cli.train import check_job, spec_from_args

    spec = spec_from_args(args)
    _refuse_resume(args)
    check_job(spec, cv_run_dir(spec, args.run_dir, "cv"), resume=False)


def _search_once(spec: Any, pre: Any, X: Any, y: Any) -> Any:
    """``batch_size = "auto"``: the micro-batch searched once on all rows, then used by every fold and the
    refit (the folds' accumulation makes up the same effective batch); other jobs unchanged."""
    import dataclasses

    from epochpilot.cli.plan import find_job_batch

    if spec.train.batch_size != "auto":
        return spec
    choice = find_job_batch(spec, pre, X, y)
    print(
        f"batch: micro-batch {choice.batch_size} x accumulation {choice.accumulation} = effective "
        f"batch {choice.effective_batch} (searched once on {choice.device}, used by every fold)"
    )
    return dataclasses.replace(
        spec, train=dataclasses.replace(spec.train, batch_size=choice.batch_size)
    )


def run(args: argparse.Namespace) -> int:
    """Cross-validate the job and print the choice."""
    import pandas as pd

    from epochpilot._files import atomic_write_text
    from epochpilot.cli.train import spec_from_args
    from epochpilot.core.stopping import EarlyStopping
    from epochpilot.data.table import Preprocessor, Table
    from epochpilot.jobs.pipeline import (
        as_targets,
        check_batch_size,
        check_run_dir,
        claimed_run_dir,
        job_model,
        load_table,
        plan_train,
        save_predictor,
        split,
        trainer_kwargs,
    )
    from epochpilot.report.selection import write_cv_report
    from epochpilot.select.kfold import kfold_epochs, refit

    spec = spec_from_args(args)
    run_dir = cv_run_dir(spec, args.run_dir, "cv")
    logging.getLogger("epochpilot").setLevel(logging.WARNING)  # no per-epoch lines from k runs
    _refuse_resume(args)
    check_run_dir(run_dir, overwrite=spec.run.overwrite, resume=False)  # before any work

    table = load_table(spec)
    task = Preprocessor.fit(table, task=spec.data.task, impute=spec.data.impute).task
    train_df, val_df, _test = split(table, spec, task)  # the test share (if any) stays out
    frame = pd.concat([train_df, val_df])
    pre = Preprocessor.fit(Table(frame, table.target), task=task, impute=spec.data.impute)
    X, y = pre.transform(frame)
    y = as_targets(y, task)
    check_batch_size(spec, len(X) - len(X) // max(args.folds, 2))
    spec = _search_once(spec, pre, X, y)
    spec, _ = plan_train(spec, len(X))
    t = spec.train
    config = trainer_kwargs(spec, len(X), task == "classification")
    schedule = config.pop("schedule")  # a JobSchedule: picklable, sized per fold and for the refit
    if t.stopper == "none":
        config["stopper"] = False
    else:
        patience = max(t.patience, 10, t.max_epochs // 3)
        config["stopper"] = EarlyStopping(t.monitor, t.mode, patience=patience)
    config.update(checkpoint_every=None, tensorboard=False, progress=False)
    factory = functools.partial(job_model, spec, pre)
    # the run directory is written from here on: an old run is kept aside until the first fold is done
    with claimed_run_dir(run_dir, overwrite=spec.run.overwrite, resume=False):
        selection = kfold_epochs(
            factory,
            (X, y),
            k=args.folds,
            stratify=task == "classification" and not args.no_stratify,
            config=config,
            schedule=schedule,
            workers=args.workers,
            rule=args.rule,
            seed=spec.data.seed,
            run_dir=run_dir,
        )
        atomic_write_text(run_dir / "selection.json", json.dumps(selection.to_dict(), indent=2))
        report = write_cv_report(
            selection, run_dir / "report.html", title=f"{spec.source}: {run_dir}"
        )
    mean = selection.mean_curve[selection.epochs - 1]
    std = selection.std_curve[selection.epochs - 1]
    print(
        f"folds: {selection.k}; best epoch per fold: {', '.join(map(str, selection.per_fold_best))}"
    )
    print(
        f"chosen: {selection.epochs} epochs (rule {selection.rule}; mean {selection.monitor} "
        f"{mean:.4g} ± {std:.4g}; best mean at epoch {selection.best_epoch})"
    )
    if args.refit:
        refit_dir = run_dir / "refit"  # new: the cv run directory was fresh (or moved aside) above
        config.pop("stopper")
        result = refit(
            factory, (X, y), selection, config=config, schedule=schedule, run_dir=refit_dir
        )
        save_predictor(refit_dir, spec, pre, result.model)
        print(f"refit: {len(result.history)} epochs on all {len(X)} rows -> {refit_dir}")
    print(f"report: {report}")
    return 0

"""``epochpilot train CONFIG.toml`` or ``epochpilot train --data FILE.csv --target COLUMN``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

EXAMPLES = """examples:
  epochpilot train --data train.csv --target label
  epochpilot train --builtin wine --max-epochs 80 --run-dir runs/wine
  epochpilot train --builtin wine --stopper auto --max-time 10min
  epochpilot train --builtin digits --batch-size auto --effective-batch 64
  epochpilot train job.toml --effective-batch 256 --lr-scaling sqrt --reference-batch 32
  epochpilot train examples/digits.toml --lr 3e-3 --overwrite
  epochpilot train --data houses.csv --target price --task regression --impute median
"""


def add_job_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that trains (train, cv, tune): data, budget, run directory."""
    from epochpilot.cli._flags import batch_size_arg

    p.add_argument(
        "config", nargs="?", type=Path, help="job TOML file (see docs/cli.md: 'The job file')"
    )
    d = p.add_argument_group("data")
    d.add_argument("--data", type=Path, help="training CSV with a header row")
    d.add_argument(
        "--builtin",
        choices=["digits", "breast_cancer", "wine", "mnist1d", "diabetes"],
        help="a built-in data set",
    )
    d.add_argument("--target", help="the target column of --data")
    d.add_argument("--task", choices=["classification", "regression"], help="inferred when absent")
    d.add_argument(
        "--impute", choices=["mean", "median", "zero"], help="fill missing feature values"
    )
    d.add_argument("--val-fraction", type=float, help="validation share (default 0.2)")
    d.add_argument(
        "--test-fraction", type=float, help="held-out test share scored at the end (default 0)"
    )
    t = p.add_argument_group("training")
    t.add_argument("--max-epochs", type=int)
    t.add_argument(
        "--max-steps", type=int, help="budget in optimizer updates (replaces --max-epochs)"
    )
    t.add_argument(
        "--max-time",
        help="wall-time budget, e.g. 90s, 10min, 2h (the first epoch's time sets the epochs)",
    )
    t.add_argument(
        "--batch-size",
        type=batch_size_arg,
        metavar="N|auto",
        help="micro-batch per step; auto (with --effective-batch): the largest that fits the device",
    )
    t.add_argument(
        "--effective-batch",
        type=int,
        metavar="N",
        help="samples per optimizer update: accumulation = N / batch size (kept exact)",
    )
    t.add_argument(
        "--on-oom",
        choices=["shrink", "raise"],
        help="out of memory while training: shrink (default) halves the micro-batch and doubles the "
        "accumulation, the effective batch kept; raise stops the run",
    )
    t.add_argument(
        "--lr-scaling",
        choices=["linear", "sqrt", "none"],
        help="scale --lr from --reference-batch to the effective batch (linear: SGD, sqrt: Adam)",
    )
    t.add_argument(
        "--reference-batch", type=int, metavar="N", help="the batch size --lr was chosen for"
    )
    t.add_argument("--lr", type=float)
    t.add_argument("--schedule", help="e.g. 'warmup(cosine)', onecycle, constant, wsd")
    t.add_argument(
        "--cooldown",
        choices=["none", "on_stop", "sweep"],
        help="sweep: cooldown branches off a constant lr, the best kept; on_stop: when the stopper "
        "fires, cool the lr down first (both need --schedule wsd)",
    )
    t.add_argument(
        "--cooldown-fraction",
        type=float,
        help="the cooldown's length as a share of the updates so far (default 0.2)",
    )
    t.add_argument(
        "--extend",
        type=float,
        help="share of the epoch budget a stopper may add when it still expects gains "
        "(default 0: --max-epochs is a hard cap)",
    )
    t.add_argument("--patience", type=int)
    t.add_argument(
        "--stopper",
        choices=["early", "auto", "forecast", "none"],
        help="auto (default): EarlyStopping(patience=10); early: EarlyStopping with --patience; "
        "forecast: Forecast + NaN/blow-up guards; none",
    )
    t.add_argument("--seed", type=int)
    t.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard logs")
    r = p.add_argument_group("run directory")
    r.add_argument(
        "--run-dir", type=Path, help="where the run is written (default runs/<data name>)"
    )
    r.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    r.add_argument(
        "--resume", action="store_true", help="continue the run in an existing run directory"
    )


def spec_from_args(args: argparse.Namespace) -> Any:
    """The job spec: the TOML file (if any), then the command-line overrides."""
    from epochpilot.errors import ConfigError
    from epochpilot.jobs.spec import JobSpec, load_spec, override

    # the training flags: given with the job file, checked with it (a flag may complete the file)
    train = dict(
        max_epochs=args.max_epochs,
        max_steps=args.max_steps,
        max_time=args.max_time,
        batch_size=args.batch_size,
        effective_batch=args.effective_batch,
        on_oom=args.on_oom,
        lr_scaling=args.lr_scaling,
        reference_batch=args.reference_batch,
        lr=args.lr,
        schedule=args.schedule,
        cooldown=args.cooldown,
        cooldown_fraction=args.cooldown_fraction,
        extend=args.extend,
        patience=args.patience,
        stopper=args.stopper,
        seed=args.seed,
        tensorboard=False if args.no_tensorboard else None,
    )
    spec = load_spec(args.config, {"train": train}) if args.config else JobSpec()
    if args.data and args.builtin:
        raise ConfigError("--data and --builtin are both given: keep one")
    if args.data is not None:
        if not args.target:
            raise ConfigError("--data needs --target COLUMN: name the column to predict")
        spec = override(spec, "data", csv=str(args.data), builtin=None)
    if args.builtin is not None:
        spec = override(spec, "data", builtin=args.builtin, csv=None)
    if not args.config and args.data is None and args.builtin is None:
        raise ConfigError(
            "no data: give a CONFIG.toml, --data FILE.csv --target COLUMN, or --builtin NAME"
        )
    spec = override(
        spec,
        "data",
        target=args.target,
        task=args.task,
        impute=args.impute,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
    )
    spec = override(spec, "train", **train)
    return override(
        spec,
        "run",
        dir=str(args.run_dir) if args.run_dir else None,
        overwrite=args.overwrite or None,
        resume=args.resume or None,
    )


def default_run_dir(spec: Any) -> Path:
    """runs/<data name> unless the job names a directory."""
    if spec.run.dir:
        return Path(spec.run.dir)
    name = Path(spec.data.csv).stem if spec.data.csv else (spec.data.builtin or "digits")
    return Path("runs") / name


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the subcommand."""
    p = subparsers.add_parser(
        "train",
        help="train on a CSV, a built-in data set or a job TOML",
        description="Train a model with warmup + decay, early stopping and restore-best; write a run directory "
        "with checkpoints, history, TensorBoard logs, a predictor and report.html.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_job_arguments(p)


def train_and_print(spec: Any, run_dir: Path) -> int:
    """Run the job, print the summary table and where the report is. The run directory is checked first
    and written only once the data and settings are validated; Ctrl-C/SIGTERM end with a checkpoint and
    one line on how to resume (logged by ``fit``), exit code 130/143."""
    from epochpilot.cli.summary import print_summary
    from epochpilot.jobs.pipeline import check_run_dir, run_job
    from epochpilot.train.signals import TrainingTerminated, exit_code

    check_run_dir(run_dir, overwrite=spec.run.overwrite, resume=spec.run.resume)
    try:
        result = run_job(spec, run_dir=run_dir)
    except (KeyboardInterrupt, TrainingTerminated) as exc:  # stopped by a signal
        code = exit_code(exc)
        if code is None:
            raise
        return code
    print_summary(result)
    return 0


def check_job(spec: Any, run_dir: Path, *, resume: bool | None = None) -> None:
    """The job's data file refused as reading it would refuse it (missing, not CSV, no such target
    column, ...), without pandas or torch; only when the run directory would pass its own check (the
    command checks that first). ``resume`` overrides the job's own ``run.resume`` (cv and tune)."""
    from epochpilot.cli._precheck import check_csv, fresh_run_dir

    resume = spec.run.resume if resume is None else resume
    if spec.data.csv and fresh_run_dir(run_dir, overwrite=spec.run.overwrite, resume=resume):
        check_csv(spec.data.csv, spec.data.target)


def precheck(args: argparse.Namespace) -> None:
    """``epochpilot train``'s flags, job file and data file checked before torch is imported."""
    spec = spec_from_args(args)
    check_job(spec, default_run_dir(spec))


def run(args: argparse.Namespace) -> int:
    """Train the job from the config and/or the flags."""
    spec = spec_from_args(args)
    return train_and_print(spec, default_run_dir(spec))

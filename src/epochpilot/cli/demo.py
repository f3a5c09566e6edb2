"""``epochpilot demo``: the whole idea on real data (scikit-learn's digits) in under a minute."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """examples:
  epochpilot demo
  epochpilot demo --run-dir /tmp/demo --max-epochs 30
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the subcommand."""
    p = subparsers.add_parser(
        "demo",
        help="train an MLP on scikit-learn's digits with the full pipeline",
        description="Budget arithmetic, linear warmup + cosine decay, early stopping with restore-best, "
        "checkpoints, TensorBoard and the HTML report, on the digits data that ships with scikit-learn.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--run-dir",
        type=Path,
        default=Path("runs/demo"),
        help="default runs/demo (an earlier demo run there is replaced; a folder of other files is refused)",
    )
    p.add_argument("--max-epochs", type=int, default=60, help="epoch budget (default 60)")


def worked_example(n_train: int, batch_size: int, max_epochs: int, lr: float) -> None:
    """Print the budget, the schedule's key points and what the stopper will do, before training."""
    from epochpilot.core import budget
    from epochpilot.core.schedules import parse, simulate

    steps = budget.total_steps(n_train, batch_size, max_epochs)
    warmup = max(1, round(0.05 * steps))
    print("1. budget:   " + budget.describe(n_train, batch_size, epochs=max_epochs))
    lrs = simulate(parse("warmup(cosine)", lr=lr, total_steps=steps, warmup_steps=warmup), steps)
    print(
        f"2. schedule: warmup(cosine): lr {lrs[0]:.2g} at step 0 -> {max(lrs):.2g} at step {warmup} "
        f"(linear warmup) -> {lrs[steps // 2]:.2g} half-way -> {lrs[-1]:.2g} at step {steps - 1} (cosine decay)"
    )
    print(
        "3. stopping: auto = EarlyStopping(val_loss, patience 10): stop once the validation loss has not "
        "improved for 10 epochs (a NaN or infinite value stops it too), or at the budget; the best epoch's "
        "weights are restored either way"
    )


def run(args: argparse.Namespace) -> int:
    """Print the worked example, train, print the summary."""
    from epochpilot.cli.summary import print_summary
    from epochpilot.jobs.pipeline import check_run_dir, load_table, run_job, split
    from epochpilot.jobs.spec import DataSpec, JobSpec, RunSpec, TrainSpec
    from epochpilot.train.signals import TrainingTerminated, exit_code

    # the demo replaces its own earlier run, never a folder of other files (refused before any work)
    check_run_dir(args.run_dir, overwrite=True, resume=False)

    spec = JobSpec(
        data=DataSpec(builtin="digits", val_fraction=0.2, test_fraction=0.2, seed=0),
        train=TrainSpec(
            max_epochs=args.max_epochs,
            batch_size=32,
            lr=2e-3,
            patience=5,
            warmup=0.05,
            min_delta=0.0,
            progress=False,
        ),
        run=RunSpec(dir=str(args.run_dir), overwrite=True),
        source="demo",
    )
    n_train = len(split(load_table(spec), spec, "classification")[0])
    worked_example(n_train, spec.train.batch_size, spec.train.max_epochs, spec.train.lr)
    try:
        result = run_job(spec, run_dir=args.run_dir)
    except (KeyboardInterrupt, TrainingTerminated) as exc:  # stopped by a signal
        code = exit_code(exc)
        if code is None:
            raise
        return code
    print_summary(result)
    return 0

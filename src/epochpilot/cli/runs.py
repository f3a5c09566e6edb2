"""Commands on an existing run directory: predict, evaluate, resume, report, compare."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from epochpilot.errors import ConfigError


def _command(
    subparsers: argparse._SubParsersAction, name: str, help: str, examples: str
) -> argparse.ArgumentParser:
    return subparsers.add_parser(
        name,
        help=help,
        description=help[0].upper() + help[1:] + ".",
        epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _run_dir(path: Path) -> Path:
    if not path.is_dir():
        raise ConfigError(
            f"{path} is not a run directory: give the directory 'epochpilot train' wrote"
        )
    return path


def add_predict(subparsers: argparse._SubParsersAction) -> None:
    """``epochpilot predict RUN_DIR --data NEW.csv [--out predictions.csv]``."""
    p = _command(
        subparsers,
        "predict",
        "score new rows with a trained run (no training data needed)",
        "  epochpilot predict runs/wine --data new.csv --out predictions.csv\n",
    )
    p.add_argument("run_dir", type=Path)
    p.add_argument("--data", type=Path, required=True, help="CSV with the training feature columns")
    p.add_argument("--out", type=Path, help="write predictions here (default: print to stdout)")


def run_predict(args: argparse.Namespace) -> int:
    """Print or write predictions."""
    from epochpilot.predictor import load

    predictions = load(_run_dir(args.run_dir)).predict(args.data)
    if args.out:
        predictions.to_csv(args.out, index=False)
        print(f"{len(predictions)} predictions written to {args.out}")
    else:
        predictions.to_csv(sys.stdout, index=False)
    return 0


def add_evaluate(subparsers: argparse._SubParsersAction) -> None:
    """``epochpilot evaluate RUN_DIR --data TEST.csv``."""
    p = _command(
        subparsers,
        "evaluate",
        "score a trained run on labelled rows",
        "  epochpilot evaluate runs/wine --data test.csv\n  epochpilot evaluate runs/wine --data test.csv --json\n",
    )
    p.add_argument("run_dir", type=Path)
    p.add_argument(
        "--data", type=Path, required=True, help="CSV with the feature columns and the target"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run_evaluate(args: argparse.Namespace) -> int:
    """Print the metrics."""
    from epochpilot.predictor import load

    metrics = load(_run_dir(args.run_dir)).evaluate(args.data)
    if args.json:
        print(json.dumps(metrics))
    else:
        for key, value in metrics.items():
            print(f"{key:>10}: {value:.4g}")
    return 0


def add_resume(subparsers: argparse._SubParsersAction) -> None:
    """``epochpilot resume RUN_DIR``."""
    p = _command(
        subparsers,
        "resume",
        "continue an interrupted run from its last checkpoint, exactly where it stopped",
        "  epochpilot resume runs/wine\n",
    )
    p.add_argument("run_dir", type=Path)


def run_resume(args: argparse.Namespace) -> int:
    """Re-run the saved job with resume on."""
    import dataclasses

    from epochpilot.cli.train import train_and_print
    from epochpilot.job import load_spec

    run_dir = _run_dir(args.run_dir)
    job = run_dir / "job.toml"
    if not job.exists():
        raise ConfigError(
            f"{run_dir} has no job.toml: only runs started by 'epochpilot train' can be resumed here"
        )
    spec = load_spec(job)
    spec = dataclasses.replace(
        spec, run=dataclasses.replace(spec.run, resume=True, overwrite=False)
    )
    return train_and_print(spec, run_dir)


def add_report(subparsers: argparse._SubParsersAction) -> None:
    """``epochpilot report RUN_DIR``."""
    p = _command(
        subparsers,
        "report",
        "(re)write report.html and plots/ for a run directory (from any adapter)",
        "  epochpilot report runs/wine\n",
    )
    p.add_argument("run_dir", type=Path)


def run_report(args: argparse.Namespace) -> int:
    """Write the report and print its path."""
    from epochpilot.report import write_report

    print(write_report(_run_dir(args.run_dir)))
    return 0


def add_compare(subparsers: argparse._SubParsersAction) -> None:
    """``epochpilot compare RUN_DIR... [--out compare.html]``."""
    p = _command(
        subparsers,
        "compare",
        "overlay several runs' curves in one HTML page",
        "  epochpilot compare runs/a runs/b --out compare.html\n",
    )
    p.add_argument("run_dirs", type=Path, nargs="+")
    p.add_argument("--out", type=Path, default=Path("compare.html"))


def run_compare(args: argparse.Namespace) -> int:
    """Write the comparison page and print its path."""
    from epochpilot.report import compare_runs

    print(compare_runs([_run_dir(p) for p in args.run_dirs], args.out))
    return 0

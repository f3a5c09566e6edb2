"""Commands on an existing run directory: predict, evaluate, resume, report, compare."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from epochpilot._files import atomic_open, check_output_path
from epochpilot.errors import ConfigError

__all__ = [
    "add_compare",
    "add_evaluate",
    "add_predict",
    "add_report",
    "add_resume",
    "precheck_compare",
    "precheck_predict",
    "precheck_run_dir",
    "run_compare",
    "run_evaluate",
    "run_predict",
    "run_report",
    "run_resume",
]

TRUST_HELP = (
    "import the model factory that the run's files name even when it is not built into epochpilot "
    "(it runs that code): only for run directories whose source you trust"
)


def check_out(path: Path) -> Path:
    """``--out`` checked before any work (see :func:`epochpilot._files.check_output_path`), as one line."""
    from epochpilot._files import path_error

    try:
        return check_output_path(path, "--out")
    except (
        OSError
    ) as exc:  # e.g. a name too long for the file system, met while looking at the path
        raise path_error(exc, path, "--out") from None


def add_trust_flag(p: argparse.ArgumentParser) -> None:
    """``--trust-factory``: allow a run directory's own model factory (see :func:`epochpilot.jobs.models.check_factory`)."""
    p.add_argument("--trust-factory", action="store_true", help=TRUST_HELP)


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


def run_dir_arg(text: str) -> Path:
    """A RUN_DIR argument: an empty one would silently mean the current folder, so it is refused."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "RUN_DIR is empty: give the run directory 'epochpilot train' wrote"
        )
    return Path(text)


def _run_dir(path: Path) -> Path:
    """``path`` as a run directory to read, once what a killed ``--overwrite`` left beside it is settled
    (the old run comes back, or the old copy goes: see :func:`epochpilot.train.replace.recover`)."""
    from epochpilot.train.replace import recover

    recover(path, "RUN_DIR")
    if not path.is_dir():
        raise ConfigError(
            f"{path} is not a run directory: give the directory 'epochpilot train' wrote"
        )
    return path


def precheck_run_dir(args: argparse.Namespace) -> None:
    """``RUN_DIR`` that is not a folder, refused before torch is imported (predict, evaluate, resume, report)."""
    from epochpilot.cli._precheck import check_run_dir_arg

    check_run_dir_arg(args.run_dir)


def precheck_predict(args: argparse.Namespace) -> None:
    """``--out`` (checked first), then ``RUN_DIR``, before torch is imported."""
    if args.out:
        check_out(args.out)
    precheck_run_dir(args)


def precheck_compare(args: argparse.Namespace) -> None:
    """``--out``, then each ``RUN_DIR`` in order, before matplotlib and torch are imported."""
    from epochpilot.cli._precheck import check_run_dir_arg

    check_out(args.out)
    for path in args.run_dirs:
        check_run_dir_arg(path)


def add_predict(subparsers: argparse._SubParsersAction) -> None:
    """``epochpilot predict RUN_DIR --data NEW.csv [--out predictions.csv]``."""
    p = _command(
        subparsers,
        "predict",
        "score new rows with a trained run (no training data needed)",
        "  epochpilot predict runs/wine --data new.csv --out predictions.csv\n",
    )
    p.add_argument("run_dir", type=run_dir_arg)
    p.add_argument("--data", type=Path, required=True, help="CSV with the training feature columns")
    p.add_argument("--out", type=Path, help="write predictions here (default: print to stdout)")
    add_trust_flag(p)


def run_predict(args: argparse.Namespace) -> int:
    """Print or write predictions (``--out`` is checked before anything is loaded, and replaced atomically)."""
    from epochpilot.jobs.predictor import load

    if args.out:
        check_out(args.out)
    predictor = load(_run_dir(args.run_dir), trust_factory=args.trust_factory)
    predictions = predictor.predict(args.data)
    if args.out:
        with atomic_open(args.out, "w", field="--out", encoding="utf-8", newline="") as fh:
            predictions.to_csv(fh, index=False)
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
    p.add_argument("run_dir", type=run_dir_arg)
    p.add_argument(
        "--data", type=Path, required=True, help="CSV with the feature columns and the target"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_trust_flag(p)


def run_evaluate(args: argparse.Namespace) -> int:
    """Print the scores (R², MAE, RMSE and MSE in the target's units for regression; loss, accuracy and
    ROC AUC for a binary target), as the run summary words them; undefined ones are null in ``--json``."""
    from epochpilot.core.scores import json_safe, score_rows
    from epochpilot.jobs.predictor import load

    predictor = load(_run_dir(args.run_dir), trust_factory=args.trust_factory)
    metrics = predictor.evaluate(args.data)
    if args.json:
        print(json.dumps(json_safe(metrics)))
    else:
        pre = predictor.preprocessor
        for key, text in score_rows(metrics, task=pre.task, target=pre.target, skip=()):
            print(f"{key:>10}: {text}")
    return 0


def add_resume(subparsers: argparse._SubParsersAction) -> None:
    """``epochpilot resume RUN_DIR``."""
    p = _command(
        subparsers,
        "resume",
        "continue an interrupted run from its last checkpoint, exactly where it stopped",
        "  epochpilot resume runs/wine\n",
    )
    p.add_argument("run_dir", type=run_dir_arg)
    add_trust_flag(p)


def check_saved_config(run_dir: Path) -> None:
    """A run's ``config.toml`` that resume cannot compare with (not TOML, cut short, unreadable) is one line
    naming it, before anything is written."""
    from epochpilot.train.rundir import saved_config

    _, damaged = saved_config(run_dir)
    if damaged is not None:
        raise ConfigError(
            f"{run_dir / 'config.toml'} {damaged}: the run's saved settings are damaged; restore the file, "
            f"or start the run again with 'epochpilot train ... --run-dir {run_dir} --overwrite'"
        )


def run_resume(args: argparse.Namespace) -> int:
    """Re-run the saved job with resume on (a job naming a model factory of its own needs --trust-factory)."""
    import dataclasses

    from epochpilot.cli.train import train_and_print
    from epochpilot.errors import short_list
    from epochpilot.jobs.models import check_factory
    from epochpilot.jobs.spec import load_spec
    from epochpilot.train.rundir import LITTER, is_run_dir

    run_dir = _run_dir(args.run_dir)
    if not is_run_dir(run_dir):  # resume writes into it: only a folder epochpilot wrote a run in
        names = sorted(p.name for p in run_dir.iterdir() if p.name not in LITTER)
        held = f"it holds {short_list(names, 3)}" if names else "it is empty"
        raise ConfigError(
            f"RUN_DIR {str(run_dir)!r} is not an epochpilot run directory ({held}): give the folder "
            f"'epochpilot train' wrote the run in"
        )
    job = run_dir / "job.toml"
    if not job.exists():
        raise ConfigError(
            f"{run_dir} has no job.toml: only runs started by 'epochpilot train' can be resumed here"
        )
    spec = load_spec(job)
    check_factory(spec.model.factory, job, args.trust_factory)  # before anything is imported
    check_saved_config(run_dir)
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
    p.add_argument("run_dir", type=run_dir_arg)


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
    p.add_argument("run_dirs", type=run_dir_arg, nargs="+")
    p.add_argument("--out", type=Path, default=Path("compare.html"))


def run_compare(args: argparse.Namespace) -> int:
    """Write the comparison page and print its path (``--out`` is checked first and replaced atomically)."""
    import contextlib
    import os
    import tempfile

    from epochpilot._files import path_error
    from epochpilot.report import compare_runs

    out = check_out(args.out)
    run_dirs = [_run_dir(p) for p in args.run_dirs]
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name[:200]}.", suffix=".tmp", dir=out.parent)
    except OSError as exc:
        raise path_error(exc, out, "--out") from None
    os.close(fd)
    try:
        compare_runs(run_dirs, tmp)
        with contextlib.suppress(OSError):  # the page keeps the old file's permissions
            os.chmod(tmp, out.stat().st_mode & 0o7777 if out.exists() else 0o644)
        os.replace(tmp, out)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise path_error(exc, out, "--out") from None
        raise
    print(out)
    return 0

"""``epochpilot tune CONFIG --trials 30``: tune the job's settings with Optuna, pruning per epoch."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

EXAMPLES = """examples:
  epochpilot tune examples/digits.toml --trials 30
  epochpilot tune --builtin wine --trials 20 --max-epochs 30 --workers 2
  epochpilot tune job.toml --trials 50 --space "lr=log:1e-4:1e-1" --space "batch_size=choice:16,32,64"
  epochpilot tune job.toml --space "model.hidden=choice:[[64],[128,64]]" --space "warmup=float:0:0.2"
  epochpilot tune job.toml --space-file space.toml --pruner median
  epochpilot tune --builtin breast_cancer --trials 20 --cv 5
  epochpilot tune job.toml --trials 100 --storage postgresql://user:pw@db-host/optuna --study-name digits

Each trial trains the job with the trial's settings and reports its validation value every epoch; the
pruner stops trials that cannot win. The study lives in RUN_DIR/study.db (or --storage). Running into a
study that holds trials is refused unless --resume (continue it until --trials trials have finished; only
with the same settings: another --pruner, --sampler, --seed, space or job setting is refused, naming it)
or --overwrite (start it over). Any number of machines running the same command with --resume and a
shared --storage work on one study; a worker process that dies (out of memory) costs one trial, retried
once. Open the study in optuna-dashboard with the printed URL. With --cv K each trial trains K folds of
the training + validation rows (epoch by epoch, the fold-mean reported for pruning); its value is the mean
of the folds' best values and best.json's cv_epoch is the epoch count to refit for.

--space NAME=KIND:LOW:HIGH (KIND float, log or int) or NAME=choice:A,B,C (or a JSON list after
'choice:'); NAME is a [train] setting (lr, batch_size, warmup, weight_decay, schedule, max_epochs,
optimizer, patience, ...) or model.NAME for a model argument. A --space-file holds lines such as
lr = ["log", 1e-4, 1e-1]. Default space: lr, batch_size, weight_decay and warmup.
"""

DEFAULT_SPACE: dict[str, Any] = {
    "lr": ("log", 1e-4, 1e-1),
    "batch_size": ("choice", [16, 32, 64]),
    "weight_decay": ("log", 1e-6, 1e-2),
    "warmup": ("float", 0.0, 0.2),
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the subcommand."""
    from epochpilot.cli.train import add_job_arguments

    p = subparsers.add_parser(
        "tune",
        help="tune the job's settings with Optuna (pruning, resumable, multi-worker)",
        description="Search the job's training settings with Optuna; prune trials per epoch; print the best "
        "trial and write a report with the trials table and the optimisation history.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_job_arguments(p)
    o = p.add_argument_group("tuning")
    o.add_argument("--trials", type=int, default=30, help="finished trials to reach (default 30)")
    o.add_argument(
        "--workers", type=int, default=1, help="processes sharing the study on this machine"
    )
    o.add_argument("--storage", help="database URL (default sqlite:///RUN_DIR/study.db)")
    o.add_argument("--study-name", default="epochpilot", help="study name in the storage")
    o.add_argument(
        "--pruner", choices=["epochpilot", "median", "hyperband", "none"], default="epochpilot"
    )
    o.add_argument("--sampler", choices=["tpe", "random"], default="tpe")
    o.add_argument(
        "--space", action="append", default=[], metavar="NAME=KIND:...", help="a parameter"
    )
    o.add_argument("--space-file", type=Path, help="TOML file of NAME = [KIND, ...] lines")
    o.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    o.add_argument(
        "--cv",
        type=int,
        metavar="K",
        help="score each trial by K-fold cross-validation (mean of the folds' best values; for small data)",
    )


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_space_arg(text: str) -> tuple[str, tuple[Any, ...]]:
    """``"lr=log:1e-4:1e-1"`` -> ``("lr", ("log", 0.0001, 0.1))``; choices split on commas or read as JSON."""
    name, sep, rest = text.partition("=")
    kind, sep2, values = rest.partition(":")
    if not sep or not sep2 or not name.strip():
        raise ValueError(
            f"--space {text!r}: write NAME=KIND:LOW:HIGH (e.g. lr=log:1e-4:1e-1) or NAME=choice:A,B"
        )
    name, kind = name.strip(), kind.strip()
    if kind == "choice":
        options = _value(values) if values.strip().startswith("[") else None
        if not isinstance(options, list):
            options = [_value(v.strip()) for v in values.split(",") if v.strip()]
        return name, ("choice", options)
    parts = values.split(":")
    if len(parts) != 2:
        raise ValueError(f"--space {text!r}: a {kind!r} range is written {name}={kind}:LOW:HIGH")
    low, high = (_value(v.strip()) for v in parts)
    return name, (kind, low, high)


def read_space_file(path: Path) -> dict[str, Any]:
    """The entries of a --space file, read as TOML (not yet checked against the job's settings)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    if not path.exists():
        raise FileNotFoundError(f"--space-file {path}: no such space file; check the path")
    try:
        space = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"--space-file {path}: TOML syntax error: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"--space-file {path}: cannot read it as UTF-8 TOML text ({exc})"
        ) from None
    return {k: tuple(v) if isinstance(v, list) else v for k, v in space.items()}


def space_from_args(args: argparse.Namespace, spec: Any = None) -> dict[str, Any]:
    """The search space: --space-file, then --space flags; the default space when neither is given (less
    batch_size when ``spec`` fixes the effective batch: see :func:`check_batch_space`)."""
    from epochpilot.select.tune.space import job_parameters, parse_space

    space: dict[str, Any] = {}
    if args.space_file is not None:
        path = Path(args.space_file)
        space.update(read_space_file(path))
        if space:  # each entry checked here, so that its error names the file
            parse_space(space, job_parameters(), where=str(path))
    for text in args.space:
        name, decl = parse_space_arg(text)
        space[name] = decl
    if not space:
        space = dict(DEFAULT_SPACE)
        if spec is not None and spec.train.effective_batch is not None:
            del space["batch_size"]  # the micro-batch would not change the updates
    return check_batch_space(spec, space)


def check_batch_space(spec: Any, space: dict[str, Any]) -> dict[str, Any]:
    """Refuse a batch_size dimension when the job fixes the effective batch (``effective_batch``, with
    ``batch_size = "auto"`` or a number): a trial's batch would only change the micro-batch, or not divide
    the effective batch; tuning ``effective_batch`` changes the updates."""
    if spec is None or spec.train.effective_batch is None or "batch_size" not in space:
        return space
    raise ValueError(
        f"batch_size in the search space: the job sets effective_batch = {spec.train.effective_batch}, "
        "so a trial's batch_size would only change the micro-batch: tune effective_batch instead (e.g. --space "
        '"effective_batch=choice:32,64,128") or drop effective_batch'
    )


def check_cv_flag(cv: int | None) -> None:
    """Refuse ``--cv`` below 2 in one line naming the flag."""
    if cv is not None and cv < 2:
        raise ValueError(
            f"--cv {cv}: k-fold tuning needs K >= 2 folds (e.g. --cv 5); leave --cv out for the validation split"
        )


def precheck(args: argparse.Namespace) -> None:
    """``epochpilot tune``'s flags, job file, space and data file checked before optuna and torch are
    imported (a space file's entries need optuna: with one, the data are left to ``run``)."""
    from epochpilot.cli.cv import cv_run_dir
    from epochpilot.cli.train import check_job, spec_from_args

    spec = spec_from_args(args)
    check_cv_flag(args.cv)
    if args.space_file is not None and read_space_file(Path(args.space_file)):
        return
    check_batch_space(spec, dict(parse_space_arg(text) for text in args.space))
    overwrite = bool(spec.run.overwrite)
    check_job(spec, cv_run_dir(spec, args.run_dir, "tune"), resume=not overwrite)


def run(args: argparse.Namespace) -> int:
    """Run (or resume) the study and print the best trial."""
    import optuna

    from epochpilot.cli.cv import cv_run_dir
    from epochpilot.cli.train import spec_from_args
    from epochpilot.jobs.pipeline import check_run_dir, claimed_run_dir, prepare
    from epochpilot.report.selection import write_tune_report
    from epochpilot.select.tune.run import tune

    spec = spec_from_args(args)
    space = space_from_args(args, spec)
    logging.getLogger("epochpilot").setLevel(logging.WARNING)  # no per-epoch lines from k runs
    run_dir = cv_run_dir(spec, args.run_dir, "tune")
    overwrite = bool(spec.run.overwrite)
    # the run directory may hold the study: tune() decides (--resume continues it, --overwrite starts over)
    kind = check_run_dir(run_dir, overwrite=overwrite, resume=not overwrite)
    if kind == "run" and not overwrite and not _is_study(run_dir):
        raise FileExistsError(
            f"run directory {run_dir} holds a run that is not a study: choose another --run-dir "
            "or pass --overwrite"
        )
    prepare(spec)  # the data is read and checked before the run directory is touched
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # the run directory is written from here on: an old one is kept aside until the first trial is done
    with claimed_run_dir(run_dir, overwrite=overwrite, resume=not overwrite):
        study = tune(
            spec,
            space,
            n_trials=args.trials,
            storage=args.storage,
            pruner=args.pruner,
            sampler=args.sampler,
            workers=args.workers,
            study_name=args.study_name,
            run_dir=run_dir,
            seed=spec.train.seed,
            timeout=args.timeout,
            resume="auto" if spec.run.resume else False,
            overwrite=overwrite,
            cv=args.cv,
        )
        report = write_tune_report(
            study, run_dir / "report.html", title=f"{spec.source}: {run_dir}"
        )
        _write_best(study, run_dir)
    print_study(study)
    storage = args.storage or f"sqlite:///{(run_dir / 'study.db').resolve()}"
    print(f"report: {report}")
    print(f"dashboard: optuna-dashboard {_hide(storage)}")
    return 0


def _hide(url: str) -> str:
    from epochpilot.select.tune.storage import safe_url as _safe_url

    return _safe_url(url)


def print_study(study: Any) -> None:
    """Counts, epochs trained and the best trial's value and settings."""
    import optuna

    TS = optuna.trial.TrialState
    states = [t.state for t in study.trials]
    counts = {s: states.count(s) for s in (TS.COMPLETE, TS.PRUNED, TS.FAIL) if states.count(s)}
    epochs = sum(len(t.intermediate_values) for t in study.trials)
    print(
        f"study {study.study_name}: {len(study.trials)} trials ("
        + ", ".join(f"{n} {s.name.lower()}" for s, n in counts.items())
        + f"), {epochs} epochs trained"
    )
    try:
        best = study.best_trial
    except ValueError:
        print("no trial completed yet")
        return
    value = f"{best.value:.6g}" if best.value is not None and math.isfinite(best.value) else "—"
    if "cv_epoch" in best.user_attrs:
        where = f"mean of {best.user_attrs.get('cv_k')} folds; refit for {best.user_attrs['cv_epoch']} epochs"
    else:
        where = f"best epoch {best.user_attrs.get('best_epoch')}"
    print(f"best trial: #{best.number}  value {value}  ({where})")
    for name, v in best.params.items():
        print(f"  {name} = {v}")


def _write_best(study: Any, run_dir: Path) -> None:
    from epochpilot._files import atomic_write_text

    try:
        best = study.best_trial
    except ValueError:
        return
    info = {
        "number": best.number,
        "value": best.value,
        "params": best.params,
        "user_attrs": best.user_attrs,
    }
    if "cv_epoch" in best.user_attrs:  # the epoch count to refit the best settings for
        info["cv_epoch"] = best.user_attrs["cv_epoch"]
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "best.json", json.dumps(info, indent=2, default=str))


def _is_study(run_dir: Path) -> bool:
    """False for a run directory of another command (a training run, a cross-validation)."""
    others = ("job.toml", "config.toml", "history.jsonl", "checkpoints", "selection.json", "fold-1")
    return not any((run_dir / name).exists() for name in others)

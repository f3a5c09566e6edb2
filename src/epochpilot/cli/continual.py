"""``epochpilot continue RUN_DIR --data NEW.csv``: continual learning on a finished tabular run.

Starts from the run's best checkpoint, trains on the new rows while replaying a share of the old training rows
(through ``MixedSampler``), guards the old validation score with ``Retention`` (so the new model may not forget
more than ``--max-drop`` of it) and plans a short budget. The new run goes to its own directory (default
``RUN_DIR-continued``); the old run is not touched. ``continue_run`` is the same from Python.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from epochpilot.errors import CheckpointError, ConfigError

if TYPE_CHECKING:  # imported where used: ``epochpilot --help`` does not wait for torch
    import numpy as np
    import torch

    from epochpilot.train.wording import Words

__all__ = ["add_parser", "continue_run", "plan_budget", "precheck", "run"]

log = logging.getLogger("epochpilot")


def python_out() -> Words:
    """How refusals about ``continue_run(out=...)`` read in Python (the CLI's name is ``--out``)."""
    from epochpilot.train.wording import Words

    return Words("out", None, None, "pass overwrite=True to replace it", "pass another out")


EXAMPLES = """examples:
  epochpilot continue runs/wine --data new_rows.csv
  epochpilot continue runs/wine --data new_rows.csv --replay 0.5 --max-drop 0.05 --out runs/wine-v2
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``epochpilot continue``."""
    p = subparsers.add_parser(
        "continue",
        help="continue a finished run on new data without forgetting the old (replay + retention guard)",
        description="Continual learning on a finished run: new rows, old rows replayed, old ability guarded.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", type=Path, help="a run directory written by 'epochpilot train'")
    p.add_argument(
        "--data", type=Path, required=True, help="CSV of new rows (same columns and target)"
    )
    p.add_argument(
        "--out", type=Path, help="directory for the continued run (default: RUN_DIR-continued)"
    )
    p.add_argument(
        "--replay", type=float, default=0.3, help="share of old rows in each epoch (default 0.3)"
    )
    p.add_argument(
        "--max-drop",
        type=float,
        default=None,
        help="largest allowed drop of the old validation score (default: 0.02 accuracy, or 10%% of the loss)",
    )
    p.add_argument("--epochs", type=int, help="epoch budget (default: planned from the old run)")
    p.add_argument(
        "--lr-scale", type=float, default=0.3, help="new lr = old lr x this (default 0.3)"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out if it already holds a run"
    )
    from epochpilot.cli.runs import add_trust_flag

    add_trust_flag(p)


def plan_budget(summary: dict[str, Any], n_old: int, n_new: int) -> tuple[int, str]:
    """A short budget: the old run's epochs to its best, scaled by how much new data there is, 3 to 20 epochs."""
    best = summary.get("best_epoch") or summary.get("epochs_run") or 10
    scaled = math.ceil(best * min(1.0, n_new / max(n_old, 1)) * 2)
    epochs = int(min(20, max(3, scaled)))
    why = (
        f"{epochs} epochs: the old run peaked at epoch {best} on {n_old} rows; {n_new} new rows "
        f"-> 2 x {best} x {min(1.0, n_new / max(n_old, 1)):.2f}, kept within 3..20"
    )
    return epochs, why


def _trunk_weights(run_dir: Path, model: Any) -> tuple[dict[str, Any], Path] | None:
    """The trunk's last constant-lr weights of a ``cooldown="sweep"`` run (its newest checkpoint: the trunk
    copy it holds inside a branch, else its own weights, which are the trunk's), or None when the run has
    no usable one. Continuing from there needs no new warmup and has no decay to undo."""
    from epochpilot.train.checkpoint import list_checkpoints, load_checkpoint
    from epochpilot.train.checkpoint_check import state_dict_misfit

    for path in reversed(list_checkpoints(run_dir / "checkpoints")):
        try:
            parts = load_checkpoint(path)
        except (CheckpointError, OSError, RuntimeError, ValueError):
            continue
        trunk = (parts.get("state") or {}).get("trunk")
        weights = trunk["model"] if isinstance(trunk, dict) else parts.get("model")
        if isinstance(weights, dict) and state_dict_misfit(weights, model.state_dict()) is None:
            return weights, path
    return None


def _best_weights(run_dir: Path, model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], Path]:
    """The run's best weights: as of its newest checkpoint (which knows the best epoch and where its weights
    are, even for a run killed before ``best/`` was brought up to date), else ``best/``. When those files are
    damaged or belong to another model, the finished run's ``model.pt`` (the same best weights) stands in,
    with one warning line; when it cannot either, one CheckpointError line."""
    from epochpilot.train.checkpoint import scan_checkpoints
    from epochpilot.train.checkpoint_check import load_weights, newest_best, state_dict_misfit

    root = run_dir / "checkpoints"
    good, bad = scan_checkpoints(root)
    if not good and not bad and not (root / "best").is_dir():
        raise ConfigError(
            f"{run_dir} has no checkpoint to continue from (no {root}/best or epoch-*): "
            f"train it with checkpoints on (checkpoint_every >= 1)"
        )
    expected = model.state_dict()

    def fits(weights: dict[str, Any]) -> str | None:
        return state_dict_misfit(weights, expected)

    try:
        return newest_best(root, fits)
    except CheckpointError as exc:
        problem = str(exc).removesuffix("; delete that checkpoint")
    file = run_dir / "model.pt"
    try:
        state = load_weights(file)
        why = fits(state)
    except CheckpointError as exc:
        why = str(exc).removesuffix("; delete that checkpoint")
    else:
        if why is None:
            log.warning(
                "%s: continuing from %s (the finished run's best weights) instead", problem, file
            )
            return state, file
        why = f"{file} {why}"
    raise CheckpointError(
        f"{problem}; {why}: no usable weights to continue from; restore the files or train the run again"
    )


def _loader_batch(spec: Any, old_summary: dict[str, Any], kwargs: dict[str, Any]) -> int:
    """The replay loader's batch. A ``batch_size = "auto"`` run goes on with the micro-batch it found
    (summary.json's ``batch``; the effective batch whole without that record), its accumulation kept."""
    if spec.train.batch_size != "auto":
        return int(spec.train.batch_size)
    effective = int(spec.train.effective_batch)
    found = old_summary.get("batch")
    micro = found.get("micro_batch") if isinstance(found, dict) else None
    if not isinstance(micro, int) or isinstance(micro, bool) or micro < 1 or effective % micro:
        micro = effective
    kwargs["batch_size"] = micro  # the loader batches; accumulation = effective_batch / micro
    return micro


def _old_summary(run_dir: Path, epochs: int | None) -> dict[str, Any]:
    """The old run's ``summary.json`` (it sizes the budget); damaged: one line naming it, or with ``--epochs``
    (which makes it unnecessary) a warning."""
    path = run_dir / "summary.json"
    if not path.is_file():
        return {}
    problem = None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        problem = "is not UTF-8 JSON text"
    except json.JSONDecodeError as exc:
        problem = f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror or exc})"
    else:
        if not isinstance(summary, dict):
            problem = f"holds a JSON {type(summary).__name__}, not an object"
        else:
            for key in ("best_epoch", "epochs_run"):
                value = summary.get(key)
                if value is not None and (
                    not isinstance(value, int) or isinstance(value, bool) or value < 0
                ):
                    problem = f"has {key}={value!r}, not an epoch number"
    if problem is None:
        return summary
    if epochs is not None:
        log.warning("%s %s: ignored (--epochs is given)", path, problem)
        return {}
    raise ConfigError(
        f"{path} {problem}: it sizes the budget; restore the file, or give --epochs N"
    )


def continue_run(
    run_dir: str | Path,
    data: str | Path,
    *,
    out: str | Path | None = None,
    replay: float = 0.3,
    max_drop: float | None = None,
    epochs: int | None = None,
    lr_scale: float = 0.3,
    overwrite: bool = False,
    echo: Any = print,
    trust_factory: bool = False,
) -> Any:
    """Continue ``run_dir`` on the rows of ``data``; returns the ``pipeline.JobResult`` of the new run.

    A model factory that the run's ``job.toml`` names and that is not built into epochpilot is imported only
    with ``trust_factory=True`` (CLI ``--trust-factory``): only for run directories whose source you trust.
    """
    check_arguments(run_dir, replay, lr_scale, epochs)
    import torch

    from epochpilot.core.stopping import AnyOf, EarlyStopping, Retention
    from epochpilot.data.table import Preprocessor, Table, read_csv
    from epochpilot.finetune.mixed import MixedSampler
    from epochpilot.finetune.probe import Probed
    from epochpilot.jobs import pipeline
    from epochpilot.jobs.models import check_factory
    from epochpilot.jobs.spec import load_spec
    from epochpilot.train import Trainer
    from epochpilot.train.wording import speaking, words

    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir.with_name(run_dir.name + "-continued")
    wording = python_out() if words().python else words()  # refusals name `out` / `--out`
    # the new run's folder is checked before any work: nothing is written until everything is validated
    with speaking(wording):
        pipeline.check_run_dir(out, overwrite=overwrite, resume=False)
    job = run_dir / "job.toml"
    spec = load_spec(job)
    check_factory(spec.model.factory, job, trust_factory)  # before anything is imported
    pre = Preprocessor.from_json(run_dir / "preprocessor.json")
    model = pipeline.job_model(spec, pre)
    state, source = _best_weights(run_dir, model)
    old_summary = _old_summary(run_dir, epochs)
    sweep = spec.train.cooldown == "sweep"
    trunk = _trunk_weights(run_dir, model) if sweep else None

    old_train_df, old_val_df, _ = pipeline.split(pipeline.load_table(spec), spec, pre.task)
    new_table = read_csv(data, pre.target)
    new_train_df, new_val_df, _ = pipeline.split(
        Table(new_table.frame, pre.target),
        dataclasses.replace(spec, data=dataclasses.replace(spec.data, test_fraction=0.0)),
        pre.task,
    )

    def arrays(frame: Any) -> tuple[np.ndarray, np.ndarray]:
        X, y = pre.transform(frame)
        return X, pipeline.as_targets(y, pre.task)

    old_tr, old_va = arrays(old_train_df), arrays(old_val_df)
    new_tr, new_va = arrays(new_train_df), arrays(new_val_df)
    classification = pre.task == "classification"

    model.load_state_dict(state)
    old_X, old_y = torch.from_numpy(old_va[0]), torch.from_numpy(old_va[1])

    @torch.no_grad()
    def old_score() -> float:
        was = model.training
        model.eval()
        out = model(old_X)
        model.train(was)
        if classification:
            return float((out.argmax(1) == old_y).float().mean())
        return float(torch.nn.functional.mse_loss(out, old_y))

    key = "old_val_accuracy" if classification else "old_val_loss"
    reference = old_score()
    if max_drop is None:
        guard = (
            Retention(key, reference, 0.02)
            if classification
            else Retention(key, reference, 0.1, "min", True)
        )
    else:
        guard = Retention(
            key, reference, max_drop, "max" if classification else "min", not classification
        )

    n_old, n_new = len(old_tr[0]), len(new_tr[0])
    weights = {"old": replay * n_new / ((1 - replay) * n_old) if replay > 0 else 0.0, "new": 1.0}
    sampler = MixedSampler(
        {"old": old_tr, "new": new_tr},
        weights,
        num_samples=math.ceil(n_new / (1 - replay)),
        seed=spec.train.seed,
    )
    planned, why = plan_budget(old_summary, n_old, n_new)
    epochs = planned if epochs is None else epochs
    start = source.name
    if (
        trunk is not None
    ):  # train on from the trunk at its constant lr; the guard still judges the kept model
        model.load_state_dict(trunk[0])
        start = f"the trunk's last constant-lr state ({trunk[1].name}; kept model {source.name})"
    echo(
        f"continuing {run_dir} from {start}: {n_new} new rows, {n_old} old rows replayed at {replay:.0%}"
    )
    echo(f"budget: {why if epochs == planned else f'{epochs} epochs (given)'}")
    echo(
        f"guard: {key} {reference:.4g} on the old validation rows may drop by at most {guard.max_drop:g}"
    )

    # a sweep run goes on from its trunk with new cooldown branches (no re-warmup); others decay anew
    schedule, cooldown = ("wsd", "sweep") if trunk is not None else ("cosine", "none")
    train_spec = dataclasses.replace(
        spec.train,
        max_epochs=epochs,
        lr=spec.train.lr * lr_scale,
        schedule=schedule,
        warmup=0.0,
        cooldown=cooldown,
    )
    cont_spec = dataclasses.replace(spec, train=train_spec)
    kwargs = pipeline.trainer_kwargs(cont_spec, len(sampler), classification)
    task = EarlyStopping(spec.train.monitor, spec.train.mode, patience=max(2, epochs // 3))
    kwargs["stopper"] = Probed(AnyOf(task, guard), {key: old_score})
    loader = sampler.loader(_loader_batch(spec, old_summary, kwargs))
    # an old run in --out is kept aside until the new one is safe, and comes back if this fails before that
    with speaking(wording), pipeline.claimed_run_dir(out, overwrite=overwrite, resume=False):
        pipeline._write_job(out, spec)
        result = Trainer(**kwargs, run_dir=out, overwrite=overwrite, report=False).fit(
            model, loader, new_va
        )
        pipeline.save_predictor(out, spec, pre, result.model)
    final_old = old_score()
    extra = {
        "task": pre.task,
        "continued_from": str(run_dir),
        "checkpoint": str(source),
        "replay": replay,
        "old_reference": reference,
        "old_final": final_old,
        "budget": why,
    }
    pipeline._update_summary(out, extra)
    from epochpilot.report import write_report

    report = write_report(out)
    echo(f"{key}: {reference:.4g} before, {final_old:.4g} after; stop: {result.stop_message}")
    echo(f"report: {report}")
    return pipeline.JobResult(result, out, {}, report, why)


def check_arguments(
    run_dir: str | Path, replay: float, lr_scale: float, epochs: int | None
) -> None:
    """Refuse a RUN_DIR that is no training run and out-of-range settings (no torch needed)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not (run_dir / "job.toml").is_file():
        raise ConfigError(
            f"{run_dir} is not a run directory written by 'epochpilot train' (no job.toml)"
        )
    if not 0.0 <= replay < 1.0:
        raise ConfigError(
            f"--replay must be in [0, 1), got {replay}: the share of old rows in each epoch"
        )
    if lr_scale <= 0:
        raise ConfigError(f"--lr-scale must be > 0, got {lr_scale}")
    if epochs is not None and (
        isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1
    ):
        raise ConfigError(
            f"--epochs must be an integer >= 1, got {epochs!r}: leave it out to use the planned budget"
        )


def precheck(args: argparse.Namespace) -> None:
    """The argument checks of ``epochpilot continue``, before torch is imported."""
    check_arguments(args.run_dir, args.replay, args.lr_scale, args.epochs)


def run(args: argparse.Namespace) -> int:
    """Run ``epochpilot continue``."""
    continue_run(
        args.run_dir,
        args.data,
        out=args.out,
        replay=args.replay,
        max_drop=args.max_drop,
        epochs=args.epochs,
        lr_scale=args.lr_scale,
        overwrite=args.overwrite,
        trust_factory=args.trust_factory,
    )
    return 0

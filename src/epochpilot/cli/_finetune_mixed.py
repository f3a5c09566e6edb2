"""``epochpilot finetune`` with general data: general + task texts in one classification head, the task texts
drawn at ``--task-weight`` times their natural share (``MixedSampler``), optionally after ``--general-epochs``
epochs on the general texts alone (``Stages``).

Why: fine-tuning on task data alone forgets general ability; replaying general data, weighting the task above
its share and staged training are the usual cures, and the CLI runs them like ``Stages`` does from Python: one
run directory, one history with a ``stage`` column. Each row holds the task's ``val_loss``/``val_accuracy``
(task validation texts, scored over the whole head) and ``general_accuracy`` (held-out general texts).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from epochpilot.errors import ConfigError

__all__ = ["add_arguments", "join_classes", "mixed_requested", "run_mixed"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The mixed-data and staged-training options of ``epochpilot finetune``."""
    g = p.add_argument_group("mixed data and staged training (general + task texts in one head)")
    g.add_argument(
        "--general-fortunes",
        nargs="+",
        metavar="CATEGORY",
        help="general data: Debian fortune categories, added to the head as extra classes",
    )
    g.add_argument(
        "--general-data",
        type=Path,
        metavar="FILE.csv",
        help="general data: a CSV with the same --text-column and --target columns",
    )
    g.add_argument(
        "--n-general",
        type=int,
        metavar="N",
        default=None,
        help="general training texts (default: 9x the task's, a 90/10 mix, at most what there is)",
    )
    g.add_argument(
        "--task-weight",
        type=float,
        metavar="W",
        default=1.0,
        help="draw task texts at this many times their natural share (default 1; 2 = twice)",
    )
    g.add_argument(
        "--general-epochs",
        type=int,
        default=0,
        metavar="N",
        help="staged training: N epochs on general texts only, then up to --max-epochs mixed "
        "(default 0: mixed from the start)",
    )


def mixed_requested(args: argparse.Namespace) -> bool:
    """True when general data was given (its options checked); mixing options without it are an error."""
    if args.general_fortunes is not None or args.general_data is not None:
        if args.general_fortunes is not None and args.general_data is not None:
            raise ConfigError(
                "give one of --general-fortunes CATEGORY... or --general-data FILE.csv, not both"
            )
        _check(args)
        return True
    for flag, value, default in (
        ("--task-weight", args.task_weight, 1.0),
        ("--general-epochs", args.general_epochs, 0),
        ("--n-general", args.n_general, None),
    ):
        if value != default:
            raise ConfigError(
                f"{flag} needs general data: add --general-fortunes CATEGORY... or --general-data FILE.csv"
            )
    return False


def _check(args: argparse.Namespace) -> None:
    w = args.task_weight
    if not math.isfinite(w) or w <= 0:
        raise ConfigError(
            f"--task-weight must be a number > 0, got {w}: the general texts have weight 1, so the "
            f"weights must sum to a positive number with task texts in the mix (1 = their natural share)"
        )
    if args.general_epochs < 0:
        raise ConfigError(
            f"--general-epochs must be >= 0, got {args.general_epochs} (0 = mixed from the start)"
        )
    if args.max_epochs < 1:
        raise ConfigError(
            f"--max-epochs must be >= 1, got {args.max_epochs}: the mixed stage needs epochs"
        )
    if args.n_general is not None and args.n_general < 1:
        raise ConfigError(f"--n-general must be >= 1, got {args.n_general}")
    general = args.general_data
    if general is not None and not Path(general).is_file():  # before any text or model is loaded
        what = (
            " is a directory; give a CSV file"
            if Path(general).is_dir()
            else ": no such file; check the path"
        )
        raise ConfigError(f"--general-data {general}{what}")
    overlap = sorted(set(args.general_fortunes or ()) & set(args.fortunes or ()))
    if overlap:
        raise ConfigError(
            f"fortune categories {overlap} are both task classes (--fortunes) and general data "
            f"(--general-fortunes): general data must be other categories"
        )


def join_classes(general: Any, task: Any) -> tuple[Any, Any]:
    """``general`` and ``task`` TextSets relabelled into one head: the general classes, then the task classes
    not among them (a class name in both is one class)."""
    import numpy as np

    from epochpilot.data.text import TextSet

    classes = list(general.classes) + [c for c in task.classes if c not in general.classes]
    index = {c: i for i, c in enumerate(classes)}

    def relabel(data: Any) -> Any:
        mapping = np.asarray([index[c] for c in data.classes], dtype=np.int64)
        return TextSet(data.texts, mapping[data.labels], classes)

    return relabel(general), relabel(task)


def _general_texts(args: argparse.Namespace) -> Any:
    from epochpilot.cli._finetune_data import csv_texts
    from epochpilot.data.text import load_fortunes

    if args.general_fortunes is not None:
        return load_fortunes(args.general_fortunes)
    return csv_texts(args.general_data, args.text_column, args.target, "--general-data")


def run_mixed(args: argparse.Namespace, data: Any) -> tuple[Any, dict[str, Any], str]:
    """Train general + task data in one head through ``Stages``; returns (FitResult, info, budget text)."""
    import torch

    from epochpilot.core.stopping import AnyOf, EarlyStopping, Retention
    from epochpilot.finetune.encoder import build_model, optimizer_factory
    from epochpilot.finetune.mixed import MixedSampler, Stage, Stages
    from epochpilot.finetune.probe import SimilarityProbe
    from epochpilot.jobs.pipeline import claimed_run_dir

    general, task = join_classes(_general_texts(args), data)
    n_val = max(len(data.classes), int(len(task) * args.val_fraction))
    n_train = args.n_train or int(len(task) * 0.6)
    if n_train < len(data.classes) or n_train + n_val > len(task):
        raise ConfigError(
            f"--n-train {n_train} with {n_val} validation texts needs {n_train + n_val} task texts; "
            f"the data has {len(task)}"
        )
    g_val_n = max(len(general.classes) - len(data.classes), int(len(general) * args.val_fraction))
    g_val_n = max(g_val_n, 3 if args.retention is not None else 1)
    room = len(general) - g_val_n
    n_general = args.n_general if args.n_general is not None else min(9 * n_train, room)
    if n_general < 1 or n_general > room:
        raise ConfigError(
            f"--n-general {n_general} with {g_val_n} general validation texts needs "
            f"{n_general + g_val_n} general texts; the general data has {len(general)}"
        )
    train, val = task.split(n_train, n_val, seed=args.seed)
    g_train, g_val = general.split(n_general, g_val_n, seed=args.seed)

    torch.manual_seed(args.seed)  # the new head's initial weights
    model = build_model(
        None,
        mode=args.mode,
        n_classes=len(task.classes),
        lora_r=args.lora_r,
        max_length=args.max_length,
    )

    def tensors(part: Any) -> tuple[torch.Tensor, ...]:
        return (*model.tokenize(part.texts), torch.as_tensor(part.labels))

    def general_accuracy() -> float:
        return float((model.predict(g_val.texts) == g_val.labels).mean())

    probes: dict[str, Any] = {"general_accuracy": general_accuracy}
    stopper: Any = EarlyStopping("val_accuracy", mode="max", patience=args.patience)
    if args.retention is not None:  # held-out general texts are the similarity probe's sentences
        probes["retention"] = SimilarityProbe(lambda: model.encode(g_val.texts[:200]).numpy())
        stopper = AnyOf(stopper, Retention("retention", 1.0, args.retention))
    general_data = tensors(g_train)
    mix = MixedSampler(
        {"general": general_data, "task": tensors(train)},
        {"task": args.task_weight},
        seed=args.seed,
    )
    stages = []
    if args.general_epochs:  # staged: general texts alone first
        stages.append(Stage(general_data, epochs=args.general_epochs, name="general"))
    stages.append(Stage(mix, epochs=args.max_epochs, stopper=stopper, name="mixed"))
    lr = args.lr if args.lr is not None else (5e-4 if args.mode == "lora" else 3e-5)
    # the run directory is written from here on (an old run kept aside until the new one is safe)
    with claimed_run_dir(args.run_dir, overwrite=args.overwrite, resume=False):
        result = Stages(stages).fit(
            model,
            tensors(val),
            probes=probes,
            optimizer=optimizer_factory(model, lr, args.head_lr),
            lr=lr,
            loss_fn="cross_entropy",
            metrics=["accuracy"],
            batch_size=args.batch_size,
            seed=args.seed,
            run_dir=args.run_dir,
            overwrite=args.overwrite,
            progress=False,
        )
    share = mix.shares["task"]
    info = {
        "classes": task.classes,
        "task_classes": data.classes,
        "mode": args.mode,
        "n_train": len(train),
        "n_val": len(val),
        "n_general": len(g_train),
        "n_general_val": len(g_val),
        "task_weight": args.task_weight,
        "task_share": share,
        "general_epochs": args.general_epochs,
    }
    staged = f"{args.general_epochs} general-only epochs, then " if args.general_epochs else ""
    budget = (
        f"{len(g_train)} general + {len(train)} task training texts, task drawn at "
        f"{args.task_weight:g}x its share ({share:.1%} of draws); {staged}mixed; {args.mode} fine-tuning"
    )
    return result, info, budget

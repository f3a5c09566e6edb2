"""Is a checkpoint usable? Verify that its files load safely (``weights_only=True``) and hold what a resume
needs, find its best weights, and pick the newest usable checkpoint of a run, so a damaged newest checkpoint
(the usual state after a crash or a full disk) costs one warning line instead of the run.

Everything here raises or reports :class:`CheckpointError` messages that name the file and say why; nothing
here unpickles arbitrary objects.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from epochpilot.errors import CheckpointError
from epochpilot.train.checkpoint import (
    _give_handoff,
    _load,
    load_checkpoint,
    read_meta,
    scan_checkpoints,
)

__all__ = [
    "best_weights",
    "latest_checkpoint",
    "find_best",
    "load_weights",
    "newest_best",
    "newest_loadable",
    "one_line",
    "state_dict_diff",
    "state_dict_misfit",
    "verify_checkpoint",
]

log = logging.getLogger("epochpilot")

#: ``fits(weights) -> None`` when the weights fit the model, else a short reason (shape or key mismatch).
Fits = Callable[[dict[str, Any]], "str | None"]


def one_line(items: list[str], limit: int = 3) -> str:
    """Problems joined into one line, the first ``limit`` of them ("... and N more")."""
    flat = [" ".join(str(item).split()).removesuffix("; delete that checkpoint") for item in items]
    text = "; ".join(flat[:limit])
    return text + (f"; ... and {len(flat) - limit:,} more" if len(flat) > limit else "")


def _names(items: list[str], limit: int = 3) -> str:
    more = f" and {len(items) - limit:,} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_meta(meta: dict[str, Any], file: Path, training: bool) -> None:
    counters = meta.get("counters")
    if not isinstance(counters, dict):
        raise CheckpointError(f"{file} has no counters: it is not valid checkpoint metadata")
    needed = ("epochs_done", "batch", "step") if training else ("epochs_done",)
    for key in needed:
        if not _is_count(counters.get(key)):
            raise CheckpointError(
                f"{file} has an invalid counter {key}={counters.get(key)!r} (expected an int >= 0)"
            )
    best = counters.get("best_epoch")
    if best is not None and not _is_count(best):
        raise CheckpointError(f"{file} has an invalid counter best_epoch={best!r}")
    if training:
        for key in ("history", "checks"):
            rows = meta.get(key, [])
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise CheckpointError(f"{file} has an invalid {key} (expected a list of rows)")


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def load_weights(file: Path) -> dict[str, torch.Tensor]:
    """A weights file (``model.pt``) loaded with ``weights_only=True`` onto the CPU; a missing, damaged,
    unsafe or foreign file is one CheckpointError naming it and why."""
    weights = _load(Path(file), "cpu")
    if not _is_tensor_dict(weights):
        raise CheckpointError(f"{file} is not a state dict of named tensors")
    return weights


def verify_checkpoint(path: Path, *, training: bool = True) -> dict[str, Any]:
    """Load checkpoint ``path`` (``weights_only=True``) and check that it holds what a resume needs (with
    ``training``: optimizer and loop state too); returns the loaded parts, or a CheckpointError naming the
    file and why."""
    path = Path(path)
    parts = load_checkpoint(path)
    _check_meta(parts["meta"], path / "meta.json", training)
    if not _is_tensor_dict(parts["model"]):
        raise CheckpointError(f"{path / 'model.pt'} is not a state dict of named tensors")
    if not training:
        return parts
    if parts["optimizer"] is None or parts["state"] is None:
        raise CheckpointError(
            f"{path} holds weights only: resume from an epoch- or step- checkpoint"
        )
    opt = parts["optimizer"]
    if (
        not isinstance(opt, dict)
        or not isinstance(opt.get("state"), dict)
        or not isinstance(opt.get("param_groups"), list)
        or not all(
            isinstance(g, dict) and isinstance(g.get("params"), list) for g in opt["param_groups"]
        )
    ):
        raise CheckpointError(f"{path / 'optimizer.pt'} is not an optimizer state dict")
    state = parts["state"]
    if not isinstance(state, dict) or not isinstance(state.get("acc"), dict):
        raise CheckpointError(f"{path / 'state.pt'} is not an epochpilot loop state")
    for key in ("callbacks", "data"):
        if not isinstance(state.get(key, {}), dict):
            raise CheckpointError(f"{path / 'state.pt'} has an invalid {key!r} entry")
    return parts


def newest_loadable(root: Path) -> tuple[Path | None, dict[str, Any] | None]:
    """The newest checkpoint under ``root`` that :func:`verify_checkpoint` accepts, with its parts; damaged
    ones are skipped with one warning line. ``(None, None)`` when there are no checkpoints; a CheckpointError
    when there are some but none is usable."""
    good, bad = scan_checkpoints(root)
    problems = [why for _, why in bad]
    for path in reversed(good):
        try:
            parts = verify_checkpoint(path)
        except CheckpointError as exc:
            problems.append(str(exc))
            continue
        if problems:
            log.warning(
                "unusable checkpoint: %s; resuming from %s, the newest usable checkpoint",
                one_line(problems),
                path.name,
            )
        return path, parts
    if problems:
        raise CheckpointError(
            f"no usable checkpoint in {root}: {one_line(problems)}; restore the damaged files, or start "
            f"the run again ({start_again(root)})"
        )
    return None, None


def latest_checkpoint(root: Path) -> Path | None:
    """The most advanced checkpoint under ``root`` whose files all load safely and whose meta is valid, or None
    when there is none at all. Damaged newer ones are skipped with one warning line naming the file and why;
    a CheckpointError when checkpoints exist but none is usable."""
    path, parts = newest_loadable(Path(root))
    if path is not None:
        _give_handoff(path, parts)
    return path


def best_weights(
    path: Path, parts: dict[str, Any]
) -> tuple[dict[str, torch.Tensor] | None, Path | None]:
    """The best weights as of checkpoint ``path`` (loaded as ``parts``) and where they came from: its own
    weights when its epoch was the best, else the best epoch's sibling checkpoint while it exists (it holds
    them until it is rotated out), else ``best/`` when it holds that same best; ``(None, None)`` when nothing
    improved yet or the best weights cannot be read (see :func:`find_best` for why)."""
    weights, source, _ = find_best(Path(path), parts)
    return weights, source


def _same_best(meta: dict[str, Any], counters: dict[str, Any]) -> bool:
    theirs = meta.get("counters") if isinstance(meta.get("counters"), dict) else {}
    return theirs.get("best_epoch") == counters.get("best_epoch") and theirs.get(
        "best_value"
    ) == counters.get("best_value")


def find_best(
    path: Path, parts: dict[str, Any], fits: Fits | None = None
) -> tuple[dict[str, torch.Tensor] | None, Path | None, str | None]:
    """The best weights as of checkpoint ``path`` (loaded as ``parts``), where they came from, and why they
    could not be found: ``(weights, source, None)``, ``(None, None, None)`` when nothing improved yet, or
    ``(None, None, why)`` when every place that should hold them is damaged, stale or (``fits``) does not fit.

    The places, in order: the checkpoint itself when its epoch was the best, the best epoch's sibling
    checkpoint while it exists, then ``best/`` when its metadata names the same best epoch and value.
    """
    path = Path(path)
    counters = parts["meta"].get("counters", {})
    best_epoch = counters.get("best_epoch")
    if best_epoch is None:
        return None, None, None
    at_end = not counters.get("best_mid", False)
    problems: list[str] = []
    if at_end and counters.get("batch", 0) == 0 and best_epoch == counters.get("epochs_done"):
        problem = fits(parts["model"]) if fits is not None else None
        if problem is None:
            return {k: v.clone() for k, v in parts["model"].items()}, path, None
        problems.append(f"{path / 'model.pt'} {problem}")
    held = path.parent / f"epoch-{int(best_epoch):04d}"
    best_dir = path.parent / "best"
    for source in (held, best_dir):
        if not source.is_dir() or source == path or (source == held and not at_end):
            continue
        try:
            meta = read_meta(source)
            if source == held:
                pos = meta.get("counters", {})
                if (pos.get("epochs_done"), pos.get("batch", 0)) != (int(best_epoch), 0):
                    continue
            elif not _same_best(meta, counters):
                problems.append(f"{source} holds another best (not epoch {best_epoch})")
                continue
            weights = load_weights(source / "model.pt")
        except CheckpointError as exc:
            problems.append(str(exc))
            continue
        problem = fits(weights) if fits is not None else None
        if problem is not None:
            problems.append(f"{source / 'model.pt'} {problem}")
            continue
        return weights, source, None
    why = one_line(problems) if problems else "no checkpoint holds them any more"
    return None, None, f"the best weights (epoch {best_epoch}) cannot be read: {why}"


def newest_best(root: Path, fits: Fits | None = None) -> tuple[dict[str, torch.Tensor], Path]:
    """A run's best weights as of its newest readable checkpoint (its own weights when nothing improved yet;
    ``best/`` when only that is left) and the folder they came from; CheckpointError naming the file and why
    when they cannot be read."""
    root = Path(root)
    good, bad = scan_checkpoints(root)
    if bad:
        log.warning("ignored damaged checkpoint(s): %s", one_line([why for _, why in bad]))
    if not good:
        best_dir = root / "best"
        if not best_dir.is_dir():
            raise CheckpointError(f"{root} holds no readable checkpoint")
        weights = verify_checkpoint(best_dir, training=False)["model"]
        problem = fits(weights) if fits is not None else None
        if problem is not None:
            raise CheckpointError(f"{best_dir / 'model.pt'} {problem}")
        return weights, best_dir
    path = good[-1]
    parts = verify_checkpoint(path, training=False)
    weights, source, why = find_best(path, parts, fits)
    if weights is not None and source is not None:
        return weights, source
    if why is not None:
        raise CheckpointError(why)
    problem = fits(parts["model"]) if fits is not None else None
    if problem is not None:
        raise CheckpointError(f"{path / 'model.pt'} {problem}")
    return parts["model"], path


def state_dict_diff(weights: Any, expected: dict[str, torch.Tensor]) -> str | None:
    """None when ``weights`` has exactly the keys and shapes of ``expected`` (a model's state dict), else the
    first differences in a few words."""
    if not isinstance(weights, dict):
        return f"it holds a {type(weights).__name__}, not a state dict"
    missing = [k for k in expected if k not in weights]
    extra = [k for k in weights if k not in expected]
    shapes = [
        f"{k} is {list(getattr(weights[k], 'shape', ()))} there, {list(v.shape)} in the model"
        for k, v in expected.items()
        if k in weights
        and (not isinstance(weights[k], torch.Tensor) or tuple(weights[k].shape) != tuple(v.shape))
    ]
    parts = []
    if missing:
        parts.append(f"missing {_names(missing)}")
    if extra:
        parts.append(f"unexpected {_names(extra)}")
    if shapes:
        parts.append(_names(shapes, 2))
    return "; ".join(parts) if parts else None


def state_dict_misfit(weights: Any, expected: dict[str, torch.Tensor]) -> str | None:
    """None when ``weights`` fits ``expected`` (see :func:`state_dict_diff`), else "does not match the model
    (...)" for a message that starts with the file's name."""
    diff = state_dict_diff(weights, expected)
    return None if diff is None else f"does not match the model ({diff})"


def start_again(checkpoints: Path) -> str:
    """How to start a run over, in the words of the place the refusal is read (CLI flag or Python argument)."""
    from epochpilot.train.wording import words

    w = words()
    return w.ways(Path(checkpoints).parent, w.overwrite) or "with a new run directory"

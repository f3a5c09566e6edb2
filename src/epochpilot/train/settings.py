"""Every ``fit`` / ``Trainer`` setting with its default and a one-line meaning, generated from
:class:`~epochpilot.train.config.TrainConfig`'s fields so ``help(epochpilot.fit)`` cannot drift from them (a
test checks that every field has a meaning and every meaning a field)."""

from __future__ import annotations

import dataclasses

from epochpilot.train.config import LOSSES, TrainConfig

__all__ = ["MEANINGS", "fit_doc", "settings_help"]

#: field -> one line saying what it does (units and the choices included)
MEANINGS: dict[str, str] = {
    "loss_fn": f"the loss: a callable (output, target) -> scalar, a name ({', '.join(LOSSES)}), or None: "
    "cross-entropy for integer targets, mean squared error for float ones",
    "optimizer": "'adam', 'adamw', 'sgd' (built with lr and weight_decay), a torch optimizer, or a factory "
    "params -> optimizer (then lr and weight_decay are its own)",
    "lr": "the learning rate of a named optimizer, and the peak of a schedule given by name",
    "weight_decay": "the weight decay of a named optimizer",
    "schedule": "lr per update: a name ('cosine', 'warmup(cosine)', 'wsd', ...), an epochpilot schedule, or "
    "a factory total_steps -> schedule; None keeps the optimizer's lr",
    "stopper": "when to stop: None or 'auto' (EarlyStopping, patience 10, on val_loss, else train_loss), "
    "'early' (patience 5), 'forecast', a stop policy, or False (train every epoch)",
    "max_epochs": "the most epochs to train",
    "max_steps": "the most optimizer updates to train (None: no cap)",
    "max_time": "the most wall time to train: seconds or a string such as '10min' (None: no cap)",
    "batch_size": "samples per batch per process for (X, y) data and Datasets (a DataLoader keeps its "
    "own), or 'auto': the fastest micro-batch that fits, found by real steps, with effective_batch kept",
    "accumulation": "batches whose gradients are summed into one optimizer update",
    "effective_batch": "samples per optimizer update over all processes; sets the accumulation (None: "
    "batch_size x accumulation x processes)",
    "on_oom": "out of memory in a training step: 'shrink' (halve the micro-batch, double the accumulation, "
    "redo the update; the effective batch is kept) or 'raise'",
    "lr_scaling": "scale lr (through the schedule) from reference_batch to the effective batch: 'linear' "
    "(SGD with warmup), 'sqrt' (Adam) or None",
    "reference_batch": "the effective batch the lr was chosen for (with lr_scaling)",
    "clip_grad_norm": "clip the gradient's total norm to this before each update (None: no clipping)",
    "precision": "'32', 'bf16-mixed' (CPU or GPU) or '16-mixed' (CUDA, with a grad scaler)",
    "device": "'auto' (CUDA when available, else CPU), 'cpu', 'cuda', 'cuda:N' or 'mps'",
    "metrics": "extra metrics per epoch: names such as ['accuracy'] or a dict name -> fn(output, target)",
    "seed": "seeds Python's, numpy's and torch's RNGs and the shuffling (None: a random seed)",
    "deterministic": "use torch's deterministic algorithms during the fit (bitwise reruns, slower)",
    "shuffle": "shuffle the training data every epoch",
    "drop_last": "drop the last training batch when it is smaller than batch_size",
    "num_workers": "DataLoader worker processes (0 loads in this process)",
    "run_dir": "folder for config.toml, history, checkpoints, summary.json and report.html (None: none)",
    "checkpoint_every": "save a checkpoint every N epochs, or a string such as '500 steps' (None/0: never)",
    "keep_last": "how many newest checkpoints to keep (plus best/)",
    "checkpoint_fsync": "fsync every checkpoint file before the rename (survives a power loss; slower)",
    "resume": "False: start fresh; 'auto': continue the run in run_dir if its config is unchanged; True: "
    "continue it even if the config changed; or a checkpoint path",
    "overwrite": "replace a run already in run_dir (the old one is kept until the new one has a checkpoint)",
    "progress": "show a progress bar (None: when the output is a terminal)",
    "tensorboard": "also write TensorBoard scalars to run_dir/tb",
    "report": "write run_dir/report.html (and plots/) when the fit ends",
    "callbacks": "your callbacks (epochpilot.train.Callback subclasses), run after the schedule and stopper",
    "on_nan": "when the loss is not finite: 'stop' (keep the best weights) or 'rollback' (reload the last "
    "good epoch, halve the lr, up to 3 times)",
    "grad_norm_every": "measure the gradient norm every N updates for the grad_norm column (0: never)",
    "val_every_steps": "validate every N updates instead of once per epoch (None: once per epoch)",
    "cooldown": "with schedule='wsd': 'on_stop' (cool the lr down when the stopper fires, then stop), "
    "'sweep' (cooldown branches off a constant lr, keep the best) or None",
    "cooldown_fraction": "a cooldown's length, as a share of the updates trained before it",
    "sweep_start": "cooldown='sweep': epochs of the trunk before the first branch (then doubling)",
    "sweep_patience": "cooldown='sweep': branches in a row without improvement before the trunk stops",
    "compile": "train through torch.compile(model) (validation and checkpoints use the model itself; "
    "the first updates pay the compile time)",
    "extend": "the share of max_epochs a stopper may add when it still expects gains (None: max_epochs "
    "is a hard cap; the records keep the asked budget and the extension apart)",
}


def _default(f: dataclasses.Field) -> object:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None  # pragma: no cover - every TrainConfig field has a default


def settings_help(indent: str = "    ") -> str:
    """One line per ``TrainConfig`` field: ``name=default  meaning`` (fields without a meaning say so)."""
    fields = dataclasses.fields(TrainConfig)
    heads = [f"{f.name}={_default(f)!r}" for f in fields]
    width = max(map(len, heads)) + 2
    return "\n".join(
        f"{indent}{head:<{width}}{MEANINGS.get(f.name, '(no description yet)')}"
        for head, f in zip(heads, fields)
    )


_FIT_DOC = """Train ``model`` on ``train_data``, validating on ``val_data``; returns a :class:`FitResult`
    (the model holding the best weights, the history, why training stopped).

    Shortcut for ``Trainer(**settings).fit(model, train_data, val_data)``. ``train_data`` and ``val_data``
    are ``(X, y)`` arrays or tensors, a torch ``Dataset`` or a ``DataLoader``.

    Settings (keywords, all optional; each with its default):

{settings}

    With ``run_dir``, the run directory records what ran: ``config.toml`` (every setting, the optimizer as
    built, the stopper and the schedule resolved), ``history.jsonl``, checkpoints, ``summary.json`` and
    ``report.html``.

    >>> import torch
    >>> from epochpilot import fit
    >>> X, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> result = fit(torch.nn.Linear(4, 2), (X, y), max_epochs=2, seed=0)
    >>> len(result.history)
    2
    """


def fit_doc() -> str:
    """The docstring of :func:`epochpilot.fit`, its settings generated from ``TrainConfig``."""
    return _FIT_DOC.format(settings=settings_help("        "))

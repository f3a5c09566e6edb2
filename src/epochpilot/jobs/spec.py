"""A training job as the CLI sees it: data + model + training settings, read from TOML with CLI overrides.

The TOML schema (every key optional; unknown keys are refused with the nearest valid name)::

    [data]                      # one of builtin / csv
    builtin = "digits"          # digits | breast_cancer | wine | mnist1d
    csv = "train.csv"
    target = "target"
    task = "classification"     # or "regression"; inferred when absent
    val_fraction = 0.2          # stratified for classification
    test_fraction = 0.0         # a held-out split scored once at the end
    impute = "median"           # mean | median | zero, for missing feature values
    n_samples = 1000            # subsample (mnist1d: how many to generate)
    seed = 0

    [model]
    factory = "epochpilot.models:mlp"   # any "package.module:function" returning a torch.nn.Module;
    hidden = [128, 64]                  # it receives n_features and n_outputs when it accepts them
    dropout = 0.1                       # keys other than factory are passed as keyword arguments

    [train]
    max_epochs = 60             # max_epochs, patience and warmup left out are planned from the data
    max_steps = 2000            # optional: a budget in updates instead (the schedule follows it)
    max_time = "10min"          # optional: a wall-time budget ("90s", "2h", seconds); with max_steps, first wins
    batch_size = 32             # or "auto" with effective_batch: the largest micro-batch that fits is searched
    effective_batch = 128       # optional: samples per optimizer update (sets accumulation = effective / batch)
    on_oom = "shrink"           # out of memory while training: halve the micro-batch, double accumulation | raise
    lr_scaling = "sqrt"         # optional: linear | sqrt, the lr scaled from reference_batch to the effective batch
    reference_batch = 32        # the batch the lr was chosen for (with lr_scaling)
    optimizer = "adamw"
    lr = 0.001
    weight_decay = 0.0001
    schedule = "warmup(cosine)"
    warmup = 0.05               # fraction of all steps (< 1) or a number of steps (>= 1)
    cooldown = "none"           # sweep | on_stop (with schedule = "wsd"): anneal at branch points / when the stopper fires
    cooldown_fraction = 0.2     # the cooldown's length as a share of the updates so far
    extend = 0.0                # share of max_epochs a stopper may add when it still expects gains (0: a hard cap)
    stopper = "auto"            # auto (patience 10, the default) | early (patience) | forecast | none
    monitor = "val_loss"
    mode = "min"
    patience = 5
    min_delta = 0.0
    seed = 0
    ...                         # and the remaining Trainer settings (see TRAIN_KEYS)

    [run]
    dir = "runs/digits"
    overwrite = false

Every value is checked when a section is built (types from the annotations, then ranges and choices: see
``epochpilot.jobs.check``); a bad one is a :class:`~epochpilot.errors.FieldError` named as the user wrote it:
``[train] max_epochs in job.toml must be an integer, got 'ten'`` for a file, ``--max-epochs must be >= 1, got
0`` for a flag applied by :func:`override`.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from epochpilot.errors import ConfigError, FieldError, short_list
from epochpilot.jobs.check import check_device, check_section

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "DataSpec",
    "JobSpec",
    "ModelSpec",
    "RunSpec",
    "TrainSpec",
    "check_runnable",
    "load_spec",
    "override",
    "spec_from_tables",
]


@dataclass
class DataSpec:
    """Where the rows come from and how they are split."""

    builtin: str | None = None
    csv: str | None = None
    target: str = "target"
    task: str | None = None
    val_fraction: float = 0.2
    test_fraction: float = 0.0
    impute: str | None = None
    n_samples: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check_section(self, "data")


@dataclass
class ModelSpec:
    """The model factory and its keyword arguments."""

    factory: str = "epochpilot.models:mlp"
    kwargs: dict[str, Any] = field(default_factory=lambda: {"hidden": [128, 64], "dropout": 0.1})

    def __post_init__(self) -> None:
        check_section(self, "model")


@dataclass
class TrainSpec:
    """Trainer settings with CLI-level conveniences (schedule by name, warmup as a fraction, patience).

    ``max_epochs``, ``patience`` and ``warmup`` left out (None) are planned from the data by
    :func:`epochpilot.core.plan.plan` (effective training rows, batch size, lr) when the job runs.
    """

    max_epochs: int | None = None
    max_steps: int | None = None
    max_time: str | float | None = None
    batch_size: int | str = 32  # or "auto" (with effective_batch): the micro-batch is searched
    effective_batch: int | None = None
    on_oom: str = "shrink"
    lr_scaling: str | None = None
    reference_batch: int | None = None
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "warmup(cosine)"
    warmup: float | None = None
    stopper: str = "auto"
    monitor: str = "val_loss"
    mode: str = "min"
    patience: int | None = None
    min_delta: float | None = None  # None: 0.5% relative when planned (as calibrated), else 0
    min_delta_mode: str = "abs"
    seed: int = 0
    deterministic: bool = True
    accumulation: int = 1
    clip_grad_norm: float | None = None
    precision: str = "32"
    device: str = "auto"
    checkpoint_every: int | str = 1
    keep_last: int = 2
    tensorboard: bool = True
    progress: bool | None = None
    on_nan: str = "stop"
    cooldown: str = "none"
    cooldown_fraction: float = 0.2
    extend: float = 0.0

    def __post_init__(self) -> None:
        check_section(self, "train")

    def update_batch(self) -> tuple[int, int]:
        """``(batch, accumulation)`` whose product is the samples per optimizer update, for counting updates
        before the run: with ``batch_size = "auto"`` the micro-batch is not known yet, but the effective
        batch, and with it every step count, is."""
        from epochpilot.train.batching import update_batch

        return update_batch(self.batch_size, self.accumulation, self.effective_batch)

    def batch_settings(self) -> dict[str, Any]:
        """The effective batch, out-of-memory and lr-scaling settings, as ``fit`` takes them."""
        return {
            "effective_batch": self.effective_batch,
            "on_oom": self.on_oom,
            "lr_scaling": None if self.lr_scaling == "none" else self.lr_scaling,
            "reference_batch": self.reference_batch,
        }

    def scaled_lr(self) -> float:
        """The lr in effect: ``lr`` scaled from ``reference_batch`` to the effective batch by ``lr_scaling``
        (linear: x ratio, sqrt: x sqrt(ratio)), else ``lr`` unchanged."""
        if self.lr_scaling in (None, "none") or not self.reference_batch:
            return float(self.lr)
        batch, accumulation = self.update_batch()
        ratio = batch * accumulation / self.reference_batch
        return float(self.lr) * (ratio if self.lr_scaling == "linear" else ratio**0.5)


@dataclass
class RunSpec:
    """Where the run directory goes and what to do when it exists."""

    dir: str | None = None
    overwrite: bool = False
    resume: bool = False

    def __post_init__(self) -> None:
        check_section(self, "run")


@dataclass
class JobSpec:
    """A whole job; ``source`` is the TOML it came from (for messages)."""

    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    run: RunSpec = field(default_factory=RunSpec)
    source: str = "defaults"

    def to_tables(self) -> dict[str, dict[str, Any]]:
        """The resolved job as TOML tables (what is saved in the run directory)."""
        model = {"factory": self.model.factory, **self.model.kwargs}
        return {
            "data": _drop_none(dataclasses.asdict(self.data)),
            "model": model,
            "train": _drop_none(dataclasses.asdict(self.train)),
            "run": _drop_none(dataclasses.asdict(self.run)),
        }


SECTIONS = {"data": DataSpec, "model": ModelSpec, "train": TrainSpec, "run": RunSpec}


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _unknown(key: str, valid: list[str], where: str) -> ConfigError:
    near = difflib.get_close_matches(key, valid, n=1)
    hint = f"did you mean {near[0]!r}?" if near else f"valid keys: {short_list(valid, 8)}"
    return ConfigError(f"unknown key {key!r} in {where}: {hint}")


def toml_name(key: str, source: str) -> str:
    """How a setting is named in a job file: ``[train] max_epochs in job.toml``."""
    section, _, name = key.partition(".")
    where = "" if source in ("config", "defaults") else f" in {source}"
    return f"[{section}] {name}{where}"


#: CLI flags whose name is not ``--`` + the key with dashes (``max_epochs`` -> ``--max-epochs``).
FLAG_NAMES = {"data.csv": "--data", "run.dir": "--run-dir", "train.tensorboard": "--no-tensorboard"}


def flag_name(key: str) -> str:
    """The CLI flag that sets ``key`` (``train.max_epochs`` -> ``--max-epochs``)."""
    return FLAG_NAMES.get(key) or "--" + key.partition(".")[2].replace("_", "-")


def _section(
    cls: type, values: dict[str, Any], where: str, source: str, flags: Mapping[str, Any]
) -> Any:
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in names:
            raise _unknown(key, names, where)
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        return cls(**{**values, **given})
    except FieldError as exc:
        by_flag = exc.key.partition(".")[2] in given
        raise exc.named(flag_name(exc.key) if by_flag else toml_name(exc.key, source)) from None
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def spec_from_tables(
    tables: dict[str, Any],
    source: str = "config",
    flags: Mapping[str, Mapping[str, Any]] | None = None,
) -> JobSpec:
    """Build a JobSpec from parsed TOML tables; unknown sections and keys name the nearest valid one, bad
    values name the key as written (``[train] max_epochs in job.toml must be an integer, got 'ten'``).
    ``flags`` (section -> key -> value, None: not given) override the tables before the checks, so that
    settings checked together may come from both (``batch_size = "auto"`` in the file, ``--effective-batch``
    on the command line); a bad one is named by its flag."""
    flags = flags or {}
    tables = dict(tables)
    if isinstance(tables.get("model"), str):  # model = "package.module:factory"
        tables["model"] = {"factory": tables["model"]}
    for key in tables:
        if key not in SECTIONS:
            raise _unknown(key, list(SECTIONS), f"{source} (top level)")
        if not isinstance(tables[key], dict):
            raise ConfigError(f"{source}: [{key}] must be a table")
    model = dict(tables.get("model", {}))
    factory = model.pop("factory", ModelSpec.factory)
    # The default MLP keeps its default sizes unless the file gives any; a user's factory gets only what is given.
    try:
        model_spec = (
            ModelSpec(factory, model) if model or factory != ModelSpec.factory else ModelSpec()
        )
    except FieldError as exc:
        raise exc.named(toml_name(exc.key, source)) from None
    return JobSpec(
        data=_section(DataSpec, tables.get("data", {}), f"{source} [data]", source, {}),
        model=model_spec,
        train=_section(
            TrainSpec, tables.get("train", {}), f"{source} [train]", source, flags.get("train", {})
        ),
        run=_section(RunSpec, tables.get("run", {}), f"{source} [run]", source, {}),
        source=source,
    )


def load_spec(path: str | Path, flags: Mapping[str, Mapping[str, Any]] | None = None) -> JobSpec:
    """Read a job TOML file; syntax errors give the file and line, bad values the key as written, and a device
    this machine lacks is refused here (before any run directory is touched). ``flags``: see
    :func:`spec_from_tables`."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such config file; check the path")
    if path.is_dir():
        raise ConfigError(f"{path} is a folder: give the job's TOML file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text: save the job file as UTF-8 TOML") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the job file ({exc.strerror})") from None
    try:
        tables = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: TOML syntax error: {exc}") from None
    spec = spec_from_tables(tables, str(path), flags)
    check_runnable(spec)
    return spec


def check_runnable(spec: JobSpec) -> None:
    """What only this machine can answer (is the job's device here?), as a one-line error naming the key."""
    try:
        check_device(spec.train.device)
    except FieldError as exc:
        raise exc.named(toml_name(exc.key, spec.source)) from None


def override(
    spec: JobSpec, section: str, *, flags: dict[str, str] | None = None, **values: Any
) -> JobSpec:
    """Apply CLI overrides (None means "not given") to one section, re-validating it. A bad value is named by
    its flag (``--max-epochs``; ``flags`` maps keys to other flag names), a bad value the overrides did not
    give by its key in the job file."""
    given = {k: v for k, v in values.items() if v is not None}
    if not given:
        return spec
    current = getattr(spec, section)
    try:
        return dataclasses.replace(spec, **{section: dataclasses.replace(current, **given)})
    except FieldError as exc:
        name = exc.key.partition(".")[2]
        if exc.key.partition(".")[0] == section and name in given:
            raise exc.named((flags or {}).get(name) or flag_name(exc.key)) from None
        raise exc.named(toml_name(exc.key, spec.source)) from None

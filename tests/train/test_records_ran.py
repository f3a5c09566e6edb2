"""The records say what ran: config.toml, summary.json and the config hash hold the optimizer as built, the
stop policy and the schedule resolved, and the loss chosen, whatever kind of setting built them (a name, an
object, a factory, a lambda); runs written before these records resume as they did."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest
import tomllib
import torch

from epochpilot.core.schedules import Cosine, OneCycle, Warmup
from epochpilot.core.schedules.presets import simulate
from epochpilot.core.stopping import EarlyStopping
from epochpilot.errors import ConfigError
from epochpilot.train import fit
from epochpilot.train import trainer as trainer_module
from epochpilot.train.config import TrainConfig

IMPLEMENTATION = {"params", "foreach", "fused", "capturable", "differentiable"}


@pytest.fixture
def data():
    torch.manual_seed(0)
    X, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    return (X[:48], y[:48]), (X[48:], y[48:])


def model(seed: int = 1) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Linear(4, 2)


@pytest.fixture
def ran(monkeypatch):
    """What the trainer built in the last fit: the optimizer, the stop policy and the schedule."""
    built: dict = {}
    for name in ("build_optimizer", "build_stopper", "build_schedule_checked"):
        original = getattr(trainer_module, name)

        def spy(*args, _original=original, _name=name, **kwargs):
            out = _original(*args, **kwargs)
            built[_name] = out
            return out

        monkeypatch.setattr(trainer_module, name, spy)
    return built


def run(tmp_path: Path, data, name: str, **settings):
    train, val = data
    kw = dict(max_epochs=3, seed=0, progress=False, report=False)
    kw.update(settings)
    result = fit(model(), train, val, run_dir=tmp_path / name, **kw)
    config = tomllib.loads((tmp_path / name / "config.toml").read_text())
    summary = json.loads((tmp_path / name / "summary.json").read_text())
    return result, config, summary


def toml_like(value):
    """A value as config.toml holds it (None is "none", tuples are lists)."""
    return tomllib.loads(f"v = {json.dumps(value)}")["v"] if value is not None else "none"


# -- optimizer: a name, an object, a factory, a lambda -----------------------------------------------------
def rmsprop(params):
    return torch.optim.RMSprop(params, lr=0.004, alpha=0.9, momentum=0.1)


OPTIMIZERS = {
    "name": ("sgd", "torch.optim.SGD"),
    "object": ("object", "torch.optim.SGD"),
    "factory": (rmsprop, "torch.optim.RMSprop"),
    "lambda": (lambda p: torch.optim.Adadelta(p, lr=1.0), "torch.optim.Adadelta"),
}


@pytest.mark.parametrize("kind", OPTIMIZERS)
def test_the_optimizer_as_built_is_recorded(tmp_path, data, ran, kind):
    spec, cls = OPTIMIZERS[kind]
    m = model()
    if spec == "object":
        spec = torch.optim.SGD(m.parameters(), lr=0.2, momentum=0.5, weight_decay=1e-4)
    train, val = data
    fit(
        m, train, val, optimizer=spec, lr=0.05, max_epochs=2, seed=0, progress=False,
        report=False, run_dir=tmp_path / "r",
    )  # fmt: skip
    config = tomllib.loads((tmp_path / "r" / "config.toml").read_text())
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    group = ran["build_optimizer"].param_groups[0]
    record = config["optimizer"]
    assert record["class"] == cls and summary["optimizer"] == json.loads(json.dumps(record))
    for key, value in group.items():  # every hyperparameter of the group, as it ran
        if key in IMPLEMENTATION or value is None:
            continue
        if key == "lr":  # the schedule-free lr at the start: the optimizer's own
            continue
        assert record[key] == toml_like(value), key
    assert record["parameters"] == 10
    # [train] names the class for an object or a factory, and lr/weight_decay are what ran, not the defaults
    expected_lr = {"name": 0.05, "object": 0.2, "factory": 0.004, "lambda": 1.0}[kind]
    assert config["train"]["lr"] == record["lr"] == pytest.approx(expected_lr)
    assert config["train"]["optimizer"] == ("sgd" if kind == "name" else cls)
    assert config["train"]["weight_decay"] == record["weight_decay"]
    assert "<lambda>" not in config["train"]["optimizer"]
    assert summary["settings"]["lr"] == config["train"]["lr"]


def test_param_groups_are_recorded_each(tmp_path, data):
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))

    def groups(_params):
        return torch.optim.SGD(
            [
                {"params": m[0].parameters(), "lr": 0.1},
                {"params": m[1].parameters(), "lr": 0.01, "momentum": 0.9},
            ],
            lr=0.5,
        )

    train, val = data
    fit(m, train, val, optimizer=groups, max_epochs=1, seed=0, run_dir=tmp_path / "r",
        progress=False, report=False)  # fmt: skip
    record = tomllib.loads((tmp_path / "r" / "config.toml").read_text())["optimizer"]
    assert [g["lr"] for g in record["param_groups"]] == [0.1, 0.01]
    assert [g["momentum"] for g in record["param_groups"]] == [0, 0.9]
    assert [g["parameters"] for g in record["param_groups"]] == [15, 8]
    assert record["parameters"] == 23 and "lr" not in record and record["dampening"] == 0


# -- stopper: the default, a name, an object, none ---------------------------------------------------------
STOPPERS = {
    "default": None,
    "auto": "auto",
    "early": "early",
    "forecast": "forecast",
    "object": EarlyStopping("val_loss", "min", patience=2, min_delta=0.001),
    "none": False,
}


def params_of(policy) -> dict:
    """A policy's constructor parameters read back from its attributes (nested policies as dicts)."""
    import inspect

    out = {"class": type(policy).__name__}
    for p in inspect.signature(type(policy).__init__).parameters.values():
        if p.name == "self" or not hasattr(policy, p.name):
            continue
        value = getattr(policy, p.name)
        out[p.name] = params_of(value) if hasattr(value, "update") else toml_like(value)
    return out


@pytest.mark.parametrize("kind", STOPPERS)
def test_the_stop_policy_that_ran_is_recorded(tmp_path, data, ran, kind):
    result, config, summary = run(tmp_path, data, "r", stopper=STOPPERS[kind])
    policy = ran["build_stopper"]
    record = config["stopper"]
    if kind == "none":
        assert record == {"given": "False", "class": "none"} and config["train"]["stopper"] is False
        return
    assert {k: v for k, v in record.items() if k != "given"} == params_of(policy)
    assert record["given"] == {"default": "default", "object": "object"}.get(kind, kind)
    assert config["train"]["stopper"] == repr(policy) != "none"
    assert record["class"] == {"forecast": "AutoStopper"}.get(kind, "EarlyStopping")
    if kind in ("default", "auto"):
        assert record["patience"] == 10 and record["monitor"] == "val_loss"
    if kind == "early":
        assert record["patience"] == 5
    assert summary["stopper"]["class"] == record["class"]
    assert summary["settings"]["stopper"] == config["train"]["stopper"]


# -- schedule: a name, an object, a factory, a lambda factory, a plain function ----------------------------
def cosine_factory(total_steps: int):
    return Cosine(0.05, total_steps)


SCHEDULES = {
    "name": ("warmup(cosine)", "Warmup"),
    "object": (Warmup(Cosine(0.01, 100), 2), "Warmup"),
    "factory": (cosine_factory, "Cosine"),
    "lambda": (lambda n: OneCycle(0.1, n), "OneCycle"),
    "function": (lambda step: 0.02 * 0.9**step, "function"),
}


def fields_of(schedule) -> dict:
    out = {"class": type(schedule).__name__}
    for f in dataclasses.fields(schedule):
        value = getattr(schedule, f.name)
        out[f.name] = fields_of(value) if dataclasses.is_dataclass(value) else toml_like(value)
    return out


@pytest.mark.parametrize("kind", SCHEDULES)
def test_the_schedule_that_ran_is_recorded(tmp_path, data, ran, kind):
    spec, cls = SCHEDULES[kind]
    result, config, summary = run(tmp_path, data, "r", schedule=spec, lr=0.003)
    schedule, _factory = ran["build_schedule_checked"]
    record = config["schedule"]
    total = result.total_steps
    assert record["class"] == cls and record["run_updates"] == total == 6
    assert record["follows_budget"] == (kind in ("name", "factory", "lambda"))
    peak = max(simulate(schedule, total))
    assert record["peak_lr"] == pytest.approx(peak) and config["train"]["lr"] == pytest.approx(peak)
    assert max(r["lr"] for r in result.history) <= peak + 1e-12
    if cls != "function":
        params = {
            k: v for k, v in record.items() if k in {f.name for f in dataclasses.fields(schedule)}
        }
        assert {"class": record["class"], **params} == fields_of(schedule)
        assert config["train"]["schedule"] == (spec if kind == "name" else repr(schedule))
    else:
        assert record["lr_at_0"] == pytest.approx(0.02)
    assert "<lambda>" not in str(config["train"]["schedule"]) or kind == "function"
    if kind == "name":
        assert record["warmup"] == record["steps"] >= 1 and record["schedule"]["lr"] == 0.003
    assert (
        summary["schedule"]["class"] == cls and summary["schedule"]["peak_lr"] == record["peak_lr"]
    )


def test_no_schedule_and_the_cooldown_settings(tmp_path, data):
    _, config, summary = run(tmp_path, data, "a")
    assert config["schedule"] == {"class": "none"} and config["train"]["schedule"] == "none"
    _, config, summary = run(
        tmp_path, data, "b", schedule="wsd", cooldown="sweep", sweep_start=1.0, sweep_patience=1,
        cooldown_fraction=0.5, max_epochs=4,
    )  # fmt: skip
    for key, value in [("cooldown", "sweep"), ("sweep_start", 1.0), ("sweep_patience", 1),
                       ("cooldown_fraction", 0.5)]:  # fmt: skip
        assert config["train"][key] == summary["settings"][key] == value
    assert config["schedule"]["class"] == "WSD" and summary["cooldown"] == "sweep"


# -- the loss ------------------------------------------------------------------------------------------------
def test_the_loss_chosen_is_recorded(tmp_path, data):
    (X, y), (Xv, yv) = data
    _, config, _ = run(tmp_path, data, "classes")
    assert config["train"]["loss_fn"] == "cross_entropy"
    targets = ((X, y.float()[:, None]), (Xv, yv.float()[:, None]))
    train, val = targets
    fit(torch.nn.Linear(4, 1), train, val, max_epochs=1, run_dir=tmp_path / "reg", progress=False,
        report=False)  # fmt: skip
    assert (
        tomllib.loads((tmp_path / "reg" / "config.toml").read_text())["train"]["loss_fn"] == "mse"
    )
    _, config, _ = run(
        tmp_path, data, "smooth", loss_fn=torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    )
    assert (
        "label_smoothing" in config["train"]["loss_fn"]
        or "CrossEntropyLoss" in config["train"]["loss_fn"]
    )


def test_a_dataset_records_the_loss_chosen_on_its_first_batch(tmp_path, data):
    (X, y), _ = data
    dataset = torch.utils.data.TensorDataset(X, y)
    fit(model(), dataset, max_epochs=1, run_dir=tmp_path / "r", progress=False, report=False)
    config = tomllib.loads((tmp_path / "r" / "config.toml").read_text())
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert (
        config["train"]["loss_fn"] == "auto" and summary["settings"]["loss_fn"] == "cross_entropy"
    )


def test_settings_a_given_optimizer_does_not_use_are_warned_about(tmp_path, data, caplog):
    train, val = data
    with caplog.at_level(logging.WARNING, logger="epochpilot"):
        fit(model(), train, val, optimizer=lambda p: torch.optim.SGD(p, lr=0.1), lr=0.5,
            weight_decay=0.1, max_epochs=1, progress=False)  # fmt: skip
    text = caplog.text
    assert "lr=0.5 is not used" in text and "weight_decay=0.1 is not used" in text
    assert "optimizer='adam', 'adamw' or 'sgd'" in text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="epochpilot"):  # the hint: name the optimizer
        result = fit(model(), train, val, optimizer="sgd", lr=0.5, weight_decay=0.1, max_epochs=1,
                     progress=False)  # fmt: skip
    assert "is not used" not in caplog.text
    assert (
        result.summary["optimizer"]["lr"] == 0.5
        and result.summary["optimizer"]["weight_decay"] == 0.1
    )
    caplog.clear()
    with caplog.at_level(
        logging.WARNING, logger="epochpilot"
    ):  # a named schedule takes lr as its peak
        fit(model(), train, val, optimizer=lambda p: torch.optim.SGD(p, lr=0.1), lr=0.5,
            schedule="cosine", max_epochs=1, progress=False)  # fmt: skip
    assert "is not used" not in caplog.text


# -- the config hash -----------------------------------------------------------------------------------------
def hash_of(tmp_path, data, name, **settings) -> str:
    return run(tmp_path, data, name, **settings)[1]["run"]["config_hash"]


def test_the_hash_follows_what_ran(tmp_path, data):
    base = hash_of(tmp_path, data, "a")
    assert hash_of(tmp_path, data, "b") == base  # same settings, same hash
    assert hash_of(tmp_path, data, "c", stopper="auto") == base  # the same policy as the default
    assert hash_of(tmp_path, data, "d", optimizer="adam") == base
    assert hash_of(tmp_path, data, "e", optimizer=lambda p: torch.optim.Adam(p, lr=0.001)) == base
    one = hash_of(tmp_path, data, "f", optimizer=lambda p: torch.optim.Adadelta(p, lr=1.0))
    two = hash_of(tmp_path, data, "g", optimizer=lambda p: torch.optim.Adadelta(p, lr=0.5))
    assert len({base, one, two}) == 3  # lambdas of the same name that build other optimizers
    assert hash_of(tmp_path, data, "h", stopper="early") != base
    assert (
        hash_of(tmp_path, data, "i", max_epochs=9, report=True) == base
    )  # neither changes what trains


def test_two_lambdas_are_told_apart_on_resume(tmp_path, data):
    train, val = data
    kw = dict(run_dir=tmp_path / "r", seed=0, progress=False, report=False)
    fit(
        model(), train, val, optimizer=lambda p: torch.optim.Adadelta(p, lr=1.0), max_epochs=2, **kw
    )
    with pytest.raises(ConfigError, match=r"different config \(differs in lr\).*resume=True"):
        fit(model(), train, val, optimizer=lambda p: torch.optim.Adadelta(p, lr=0.5), max_epochs=3,
            resume="auto", **kw)  # fmt: skip
    with pytest.raises(ConfigError, match=r"differs in optimizer\b"):
        fit(model(), train, val, optimizer=lambda p: torch.optim.SGD(p, lr=1.0), max_epochs=3,
            resume="auto", **kw)  # fmt: skip
    with pytest.raises(ConfigError, match=r"differs in stopper.patience"):
        fit(model(), train, val, optimizer=lambda p: torch.optim.Adadelta(p, lr=1.0), max_epochs=3,
            resume="auto", stopper=EarlyStopping("val_loss", "min", patience=4), **kw)  # fmt: skip


@pytest.mark.parametrize(
    "settings",
    [{}, {"stopper": "forecast"}, {"schedule": "warmup(cosine)"}, {"schedule": cosine_factory}],
    ids=["default", "forecast", "named-schedule", "factory-schedule"],
)
def test_a_longer_budget_resumes_the_same_run(tmp_path, data, settings, caplog):
    """What follows the budget (a Forecast's budget, a schedule rebuilt for the run) is not hashed."""
    train, val = data
    kw = dict(run_dir=tmp_path / "r", seed=0, progress=False, report=False, **settings)
    fit(model(), train, val, max_epochs=2, **kw)
    with caplog.at_level(logging.INFO, logger="epochpilot"):
        fit(model(), train, val, max_epochs=4, resume="auto", **kw)
    assert "resumed from" in caplog.text and "different config" not in caplog.text


# -- a run written before these records (config.toml format 1) -----------------------------------------------
#: config.toml exactly as the trainer wrote it before format 2, for the run built by ``old_run`` below
OLD_CONFIG = """[train]
loss_fn = "none"
optimizer = "sgd"
lr = 0.05
weight_decay = 0.0
schedule = "none"
stopper = "none"
max_epochs = 2
max_steps = "none"
max_time = "none"
batch_size = 32
accumulation = 1
clip_grad_norm = "none"
precision = "32"
device = "auto"
metrics = {}
seed = 0
deterministic = false
shuffle = true
drop_last = false
num_workers = 0
run_dir = "RUN_DIR"
checkpoint_every = 1
keep_last = 2
checkpoint_fsync = false
resume = false
overwrite = false
progress = false
tensorboard = false
callbacks = []
on_nan = "stop"
grad_norm_every = 50
val_every_steps = "none"
cooldown = "none"
cooldown_fraction = 0.2
sweep_start = 4.0
sweep_patience = 2

[model]
class = "torch.nn.modules.linear.Linear"
parameters = 10

[data]
n_train = 48
n_val = 16
world_size = 1

[run]
config_hash = "7f7bf10f4b519c3f"
epochpilot_version = "0.1.0"
torch_version = "2.13.0+cpu"
"""
OLD_HASH = "7f7bf10f4b519c3f"
OLD_SETTINGS = dict(optimizer="sgd", lr=0.05, seed=0, progress=False)


def test_the_format_1_hash_is_unchanged():
    """The hash older runs recorded is still computed the same way from the same settings."""
    cfg = TrainConfig(max_epochs=2, run_dir="x", **OLD_SETTINGS)
    extra = {"model": {"class": "torch.nn.modules.linear.Linear", "parameters": 10},
             "data": {"n_train": 48}}  # fmt: skip
    assert cfg.config_hash(extra) == OLD_HASH
    assert (
        TrainConfig(max_epochs=9, run_dir="y", report=False, **OLD_SETTINGS).config_hash(extra)
        == OLD_HASH
    )


@pytest.fixture
def old_run(tmp_path, data) -> Path:
    """A run directory as the trainer wrote it before format 2: checkpoints after epochs 1 and 2, the old
    config.toml, and the old hash in every checkpoint's metadata."""
    run_dir = tmp_path / "old"
    train, val = data
    fit(model(), train, val, max_epochs=2, run_dir=run_dir, report=False, **OLD_SETTINGS)
    (run_dir / "config.toml").write_text(OLD_CONFIG.replace("RUN_DIR", str(run_dir)))
    for meta in (run_dir / "checkpoints").glob("*/meta.json"):
        content = json.loads(meta.read_text())
        content["config_hash"] = OLD_HASH
        meta.write_text(json.dumps(content))
    return run_dir


def test_a_run_written_before_format_2_resumes(old_run, data, caplog):
    train, val = data
    kw = dict(run_dir=old_run, report=False, **OLD_SETTINGS)
    with caplog.at_level(logging.INFO, logger="epochpilot"):
        more = fit(model(), train, val, max_epochs=4, resume="auto", **kw)
    assert "resumed from" in caplog.text and "epoch-0002" in caplog.text
    assert (
        "different config" not in caplog.text and "written by a different config" not in caplog.text
    )
    assert [r["epoch"] for r in more.history] == [1, 2, 3, 4]
    config = tomllib.loads((old_run / "config.toml").read_text())
    assert config["run"]["config_hash"] == OLD_HASH  # the run keeps its hash...
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="epochpilot"):  # ...so it resumes again
        again = fit(model(), train, val, max_epochs=5, resume="auto", **kw)
    assert len(again.history) == 5 and "different config" not in caplog.text
    summary = json.loads((old_run / "summary.json").read_text())
    assert summary["optimizer"]["class"] == "torch.optim.SGD"  # this session's records say what ran


def test_a_changed_config_of_a_format_1_run_is_named(old_run, data):
    train, val = data
    kw = dict(OLD_SETTINGS, lr=0.1)
    with pytest.raises(ConfigError, match=r"different config \(differs in lr\).*resume=True"):
        fit(model(), train, val, max_epochs=4, run_dir=old_run, resume="auto", report=False, **kw)
    more = fit(model(), train, val, max_epochs=3, run_dir=old_run, resume=True, report=False, **kw)
    assert len(more.history) == 3

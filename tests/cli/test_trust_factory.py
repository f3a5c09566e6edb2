"""A run directory is data: loading one (predict, evaluate, resume, continue, ``epochpilot.load``) never imports
a model factory its files name unless it is built in or the user passes ``--trust-factory`` /
``trust_factory=True``. The factory here would create a marker file when imported and when called."""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from pathlib import Path

import pandas as pd
import pytest

from epochpilot.data.table import write_builtin_csv
from epochpilot.errors import ConfigError

FAST = ["--max-epochs", "2", "--no-tensorboard"]

FACTORY = """
from pathlib import Path
import torch
Path({imported!r}).write_text("imported")


def make(n_features, n_outputs):
    Path({called!r}).write_text("called")
    return torch.nn.Sequential(torch.nn.Linear(n_features, 8), torch.nn.ReLU(), torch.nn.Linear(8, n_outputs))
"""


@pytest.fixture
def user_run(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A run trained from the user's own job file naming a factory of its own (allowed: the user's input),
    then made fresh: the module forgotten, its folder off sys.path and the marker files deleted."""
    name = f"ep_factory_{uuid.uuid4().hex[:8]}"
    markers = tmp_path / "imported", tmp_path / "called"
    src = tmp_path / "src"
    src.mkdir()
    (src / f"{name}.py").write_text(
        FACTORY.format(imported=str(markers[0]), called=str(markers[1]))
    )
    frame = pd.read_csv(write_builtin_csv("wine", tmp_path / "wine.csv")).sample(
        frac=1.0, random_state=0
    )
    frame.iloc[:120].to_csv(tmp_path / "old.csv", index=False)
    frame.iloc[120:].to_csv(tmp_path / "new.csv", index=False)
    (src / "job.toml").write_text(
        f'model = "{name}:make"\n[data]\ncsv = "{tmp_path / "old.csv"}"\ntarget = "target"\n'
    )
    path_before = list(sys.path)
    proc = cli("train", src / "job.toml", *FAST, "--run-dir", "runs/u")
    assert proc.returncode == 0, proc.stderr
    assert all(m.exists() for m in markers)
    monkeypatch.delitem(sys.modules, name)
    sys.path[:] = path_before
    for m in markers:
        m.unlink()
    run = tmp_path / "runs" / "u"
    assert json.loads((run / "model.json").read_text())["factory"] == f"{name}:make"
    return run, markers, f"{name}:make"


def _refused(proc, file: str, factory: str) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    line = lines[0]
    assert file in line and repr(factory) in line
    assert (
        "--trust-factory" in line and "only if you trust where this run directory came from" in line
    )
    return line


def test_loading_commands_refuse_a_user_factory_without_the_flag(cli, tmp_path, user_run):
    run, markers, factory = user_run
    new = tmp_path / "new.csv"
    out = tmp_path / "pred.csv"
    _refused(cli("predict", run, "--data", new, "--out", out), "model.json", factory)
    _refused(cli("evaluate", run, "--data", new), "model.json", factory)
    _refused(cli("resume", run), "job.toml", factory)
    _refused(cli("continue", run, "--data", new, "--epochs", "1"), "job.toml", factory)
    with pytest.raises(ConfigError, match="trust_factory=True"):
        import epochpilot

        epochpilot.load(run)
    assert not any(m.exists() for m in markers), "the factory module was imported or called"
    assert not out.exists() and not (tmp_path / "runs" / "u-continued").exists()


def test_the_flag_allows_it(cli, tmp_path, user_run):
    run, markers, _ = user_run
    new = tmp_path / "new.csv"
    proc = cli("predict", run, "--data", new, "--trust-factory")
    assert proc.returncode == 0, proc.stderr
    assert all(m.exists() for m in markers)
    assert cli("evaluate", run, "--data", new, "--trust-factory").returncode == 0
    proc = cli("resume", run, "--trust-factory")
    assert proc.returncode == 0, proc.stderr
    proc = cli("continue", run, "--data", new, "--epochs", "1", "--trust-factory")
    assert proc.returncode == 0, proc.stderr
    import epochpilot

    assert len(epochpilot.load(run, trust_factory=True).predict(new)) == len(pd.read_csv(new))


def test_a_fresh_process_imports_nothing(cli_process, tmp_path, user_run):
    """The strongest form: a new interpreter, the module file sitting in the folders model.json lists."""
    run, markers, factory = user_run
    proc = cli_process("predict", run, "--data", tmp_path / "new.csv", timeout=120)
    _refused(proc, "model.json", factory)
    assert not any(m.exists() for m in markers)


@pytest.mark.parametrize(
    "factory",
    ["os:system", "epochpilot.models:mlp ", "epochpilot.models:import_factory", "subprocess:run"],
)
def test_only_the_exact_builtin_names_pass(cli, tmp_path, factory):
    proc = cli("train", "--builtin", "wine", *FAST, "--run-dir", "runs/b")
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "runs" / "b"
    info = json.loads((run / "model.json").read_text())
    assert info["factory"] == "epochpilot.models:mlp"
    info["factory"] = factory
    (run / "model.json").write_text(json.dumps(info))
    _refused(cli("predict", run, "--data", tmp_path / "x.csv"), "model.json", factory)


def test_a_run_directory_shipping_its_own_module_is_refused(cli, tmp_path, user_run):
    """job.toml's folder is searched for the factory module: a run directory could carry one."""
    run, markers, factory = user_run
    received = tmp_path / "received"
    shutil.copytree(run, received)
    module = factory.split(":")[0]
    shutil.copy(tmp_path / "src" / f"{module}.py", received / f"{module}.py")
    _refused(cli("resume", received), "job.toml", factory)
    assert not any(m.exists() for m in markers)


def test_check_factory_compares_strings_before_importing(monkeypatch):
    import importlib

    from epochpilot.jobs.models import BUILTIN_FACTORIES, check_factory, import_factory, mlp

    def no_import(name, *a, **k):
        raise AssertionError(f"imported {name}")

    monkeypatch.setattr(importlib, "import_module", no_import)
    check_factory("epochpilot.models:mlp", "model.json", False)
    assert import_factory("epochpilot.models:mlp", ["/nonexistent"]) is mlp
    assert "/nonexistent" not in sys.path
    with pytest.raises(ConfigError, match=r"model\.json names model factory 'pkg:f'"):
        check_factory("pkg:f", "model.json", False)
    check_factory("pkg:f", "model.json", True)  # trusted: allowed (nothing imported yet)
    with pytest.raises(TypeError):
        BUILTIN_FACTORIES["evil:f"] = mlp  # read-only

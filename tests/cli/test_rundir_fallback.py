"""Damaged run directories and unusable output paths: every case is one line and exit code 2 naming the file
or the flag, or, where an equivalent copy exists (the best weights in checkpoints/ and model.pt), one warning
line and the command goes on. An existing ``--out`` file stays whole when writing fails."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from epochpilot.cli import main
from epochpilot.data.table import write_builtin_csv

FAST = ["--max-epochs", "3", "--no-tensorboard"]


def _quiet_main(*args: str) -> int:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    assert code == 0, err.getvalue()
    return code


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One finished run (and the CSVs) trained once for the module; tests copy it."""
    base = tmp_path_factory.mktemp("trained")
    frame = pd.read_csv(write_builtin_csv("wine", base / "wine.csv")).sample(
        frac=1.0, random_state=0
    )
    frame.iloc[:120].to_csv(base / "old.csv", index=False)
    frame.iloc[120:].to_csv(base / "new.csv", index=False)
    _quiet_main(
        "train", "--data", base / "old.csv", "--target", "target", *FAST, "--run-dir", base / "run"
    )
    _quiet_main(
        "train", "--data", base / "old.csv", "--target", "target", *FAST, "--run-dir", base / "wide",
        "--seed", "1",
    )  # fmt: skip
    info = json.loads((base / "wide" / "model.json").read_text())
    assert info["factory"] == "epochpilot.models:mlp"
    return base


@pytest.fixture
def run(trained, tmp_path) -> Path:
    for name in ("old.csv", "new.csv"):
        shutil.copy(trained / name, tmp_path / name)
    shutil.copytree(trained / "run", tmp_path / "run")
    return tmp_path / "run"


def _one_line(proc, *needles: str) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _warnings(caplog) -> list[str]:
    """The warning lines the command logged (in-process, logging goes to caplog rather than stderr)."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# -- model.pt: another model's weights are an error, damaged weights fall back to the checkpoints' copy ----------
def test_wrong_shape_model_pt_is_one_line(cli, run, tmp_path):
    state = torch.load(run / "model.pt", weights_only=True)
    state = {
        k: torch.cat([v, v]) for k, v in state.items()
    }  # every layer twice as wide: another model
    torch.save(state, run / "model.pt")
    proc = cli("predict", run, "--data", tmp_path / "new.csv")
    _one_line(proc, f"{run / 'model.pt'} does not match model.json:", "there,", "in the model")


@pytest.mark.parametrize("how", ["truncate", "empty", "malicious"])
def test_damaged_model_pt_uses_the_best_checkpoint(cli, run, tmp_path, caplog, how):
    expected = cli("predict", run, "--data", tmp_path / "new.csv")
    assert expected.returncode == 0, expected.stderr
    file = run / "model.pt"
    data = file.read_bytes()
    if how == "truncate":
        file.write_bytes(data[: len(data) // 3])
    elif how == "empty":
        file.write_bytes(b"")
    else:
        torch.save({"w": _Payload(tmp_path / "pwned")}, file)
    caplog.clear()
    proc = cli("predict", run, "--data", tmp_path / "new.csv")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == expected.stdout  # the same best weights
    (warning,) = _warnings(caplog)
    assert str(file) in warning and "using the best weights from" in warning
    assert not (tmp_path / "pwned").exists()
    shutil.rmtree(run / "checkpoints")
    proc = cli("evaluate", run, "--data", tmp_path / "new.csv")
    _one_line(proc, str(file), "cannot stand in for it")


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# -- the run directory's JSON and TOML files ---------------------------------------------------------------
GARBAGE = {
    "empty": b"",
    "cut": b'{"features": ["a", ',
    "binary": b"\xff\xfe\x00\x01garbage",
    "list": b"[1, 2, 3]",
}


@pytest.mark.parametrize("garbage", list(GARBAGE))
@pytest.mark.parametrize("name", ["model.json", "preprocessor.json"])
def test_garbled_predictor_files_name_the_file(cli, run, tmp_path, name, garbage):
    (run / name).write_bytes(GARBAGE[garbage])
    for command in ("predict", "evaluate"):
        line = _one_line(cli(command, run, "--data", tmp_path / "new.csv"), str(run / name))
        assert "restore the file or train the run again" in line


@pytest.mark.parametrize(
    ("name", "change", "needle"),
    [
        ("model.json", {"n_features": "13"}, "'n_features' must be an int >= 1"),
        ("model.json", {"kwargs": {"hidden": [64], "dropout": 2.0}}, "dropout"),
        ("model.json", {"n_features": 5}, "describes 5 inputs"),
        ("preprocessor.json", {"task": "ranking"}, "'task' must be one of"),
        ("preprocessor.json", {"mean": [0.0]}, "'mean' must be a list of 13 finite numbers"),
        ("preprocessor.json", {"surprise": 1}, "unknown keys 'surprise'"),
    ],
)
def test_wrong_values_in_predictor_files_name_the_file(cli, run, tmp_path, name, change, needle):
    data = json.loads((run / name).read_text())
    data.update(change)
    (run / name).write_text(json.dumps(data))
    _one_line(cli("predict", run, "--data", tmp_path / "new.csv"), str(run / name), needle)


def test_a_huge_model_json_allocates_nothing(cli, run, tmp_path):
    data = json.loads((run / "model.json").read_text())
    data["kwargs"] = {"hidden": [2**31, 2**31]}  # 2**62 weights, were the model built
    (run / "model.json").write_text(json.dumps(data))
    _one_line(
        cli("predict", run, "--data", tmp_path / "new.csv"),
        str(run / "model.json"),
        "cannot be built",
    )


@pytest.mark.parametrize("garbage", ["cut", "binary"])
def test_garbled_summary_json_in_continue(cli, run, tmp_path, caplog, garbage):
    (run / "summary.json").write_bytes(GARBAGE[garbage])
    proc = cli("continue", run, "--data", tmp_path / "new.csv")
    _one_line(proc, str(run / "summary.json"), "--epochs N")
    proc = cli("continue", run, "--data", tmp_path / "new.csv", "--epochs", "1")
    assert proc.returncode == 0, proc.stderr
    (warning,) = _warnings(caplog)
    assert str(run / "summary.json") in warning and "ignored (--epochs is given)" in warning


@pytest.mark.parametrize("name", ["config.toml", "job.toml"])
def test_garbled_toml_in_resume(cli, run, name):
    (run / name).write_text('[train\nmax_epochs = "')
    _one_line(cli("resume", run), str(run / name))
    (run / name).write_bytes(GARBAGE["binary"])
    _one_line(cli("resume", run), str(run / name))


# -- resume and continue fall back to the newest good checkpoint ---------------------------------------------
def test_resume_from_the_cli_falls_back(cli, run, caplog):
    newest = sorted((run / "checkpoints").glob("epoch-*"))[-1]
    (newest / "state.pt").write_bytes(b"")
    proc = cli("resume", run)
    assert proc.returncode == 0, proc.stderr
    (warning,) = [w for w in _warnings(caplog) if "unusable checkpoint" in w]
    assert str(newest / "state.pt") in warning and "resuming from epoch-" in warning
    for ckpt in (run / "checkpoints").glob("epoch-*"):
        (ckpt / "optimizer.pt").write_bytes(b"PK\x03\x04 not really")
    _one_line(cli("resume", run), "no usable checkpoint in", "--overwrite")


def test_continue_survives_damaged_best_weights(cli, run, tmp_path, caplog):
    for path in (run / "checkpoints").iterdir():
        (path / "model.pt").unlink()
        (path / "model.pt").write_bytes(b"")
    proc = cli("continue", run, "--data", tmp_path / "new.csv", "--epochs", "1")
    assert proc.returncode == 0, proc.stderr
    (warning,) = _warnings(caplog)
    assert "continuing from" in warning and str(run / "model.pt") in warning
    (run / "model.pt").write_bytes(b"")
    proc = cli("continue", run, "--data", tmp_path / "new.csv", "--epochs", "1", "--overwrite")
    _one_line(proc, "no usable weights to continue from")


# -- --out: checked before anything is loaded, written atomically ----------------------------------------------
def test_out_into_a_missing_folder_is_checked_first(cli, tmp_path):
    proc = cli(
        "predict", tmp_path / "no-run", "--data", "x.csv", "--out", tmp_path / "nope" / "p.csv"
    )
    _one_line(proc, "--out", "create the folder first")
    proc = cli("compare", tmp_path / "no-run", "--out", tmp_path / "nope" / "c.html")
    _one_line(proc, "--out", "create the folder first")


def test_out_name_too_long(cli, run, tmp_path):
    proc = cli(
        "predict", run, "--data", tmp_path / "new.csv", "--out", tmp_path / ("p" * 300 + ".csv")
    )
    _one_line(proc, "--out", "shorter file name")


def test_out_in_a_read_only_folder(cli, run, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        try:
            (folder / "probe").write_text("x")
        except OSError:
            pass
        else:
            pytest.skip("chmod does not stop this user from writing (root)")
        proc = cli("predict", run, "--data", tmp_path / "new.csv", "--out", folder / "p.csv")
        _one_line(proc, "--out", "choose a folder you can write to")
    finally:
        folder.chmod(0o755)


def _fail_midway(data: str, fh) -> None:
    fh.write(data[: len(data) // 2])
    fh.flush()
    raise OSError(errno.ENOSPC, "No space left on device")


def test_an_existing_out_file_stays_whole_when_the_write_fails(cli, run, tmp_path, monkeypatch):
    out = tmp_path / "p.csv"
    out.write_text("precious,old\n1,2\n")

    def to_csv(self, path_or_buf=None, **kw):
        _fail_midway(self.to_string(), path_or_buf)

    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)
    proc = cli("predict", run, "--data", tmp_path / "new.csv", "--out", out)
    _one_line(proc, "--out", "No space left on device", "free some disk space")
    assert out.read_text() == "precious,old\n1,2\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_an_existing_compare_page_stays_whole_when_the_write_fails(cli, run, tmp_path, monkeypatch):
    import epochpilot.report

    out = tmp_path / "c.html"
    out.write_text("<p>old page</p>")

    def compare_runs(run_dirs, out_path):
        with open(out_path, "w") as fh:
            _fail_midway("<html>" * 100, fh)

    monkeypatch.setattr(epochpilot.report, "compare_runs", compare_runs)
    proc = cli("compare", run, run, "--out", out)
    _one_line(proc, "--out", "No space left on device")
    assert out.read_text() == "<p>old page</p>"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    monkeypatch.undo()
    proc = cli("compare", run, run, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "<html" in out.read_text().lower() and oct(out.stat().st_mode & 0o777) != "0o600"


def test_resumed_from_names_the_checkpoint_actually_used(cli, run, caplog):
    """After a fallback, the "resumed from" line names the older checkpoint, not the damaged newest one."""
    ckpts = sorted((run / "checkpoints").glob("epoch-*"))
    newest, older = ckpts[-1], ckpts[-2]
    weights = torch.load(newest / "model.pt", weights_only=True)
    name = next(k for k, v in weights.items() if v.dim() == 2)
    # loads fine but does not fit the model: found only when restoring
    weights[name] = weights[name][:-1]
    torch.save(weights, newest / "model.pt")
    with caplog.at_level(logging.INFO, logger="epochpilot"):
        proc = cli("resume", run)
    assert proc.returncode == 0, proc.stderr
    assert any(newest.name in w and "model.pt" in w for w in _warnings(caplog))
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("resumed from")]
    assert older.name in line and newest.name not in line


@pytest.mark.parametrize(
    "damage",
    [b"\xff\xfe\x00garbage", b"[train\nlr = ", b"[train]\nlr = 0.001\n"],
    ids=["binary", "not-toml", "cut-short"],
)
def test_fit_resume_auto_with_a_damaged_config_says_so(tmp_path, damage):
    """fit(resume="auto") on a run whose config.toml is damaged: one line naming the file and the ways
    out in Python's words, not "a run of a different config"."""
    from epochpilot.errors import ConfigError
    from epochpilot.train import fit

    X, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    run_dir = tmp_path / "r"
    fit(torch.nn.Linear(4, 2), (X, y), max_epochs=1, run_dir=run_dir, seed=0)
    (run_dir / "config.toml").write_bytes(damage)
    with pytest.raises(ConfigError) as err:
        fit(torch.nn.Linear(4, 2), (X, y), max_epochs=1, run_dir=run_dir, seed=0, resume="auto")
    text = str(err.value)
    assert "\n" not in text and str(run_dir / "config.toml") in text
    assert "different config" not in text and "restore the file" in text
    assert "resume=True" in text and "overwrite=True" in text and "--" not in text

"""``epochpilot continue RUN_DIR --data NEW``: replay + retention guard + short budget, from the CLI and Python."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from epochpilot.data.table import write_builtin_csv

FAST = ["--max-epochs", "3", "--no-tensorboard"]


@pytest.fixture
def old_run(cli, tmp_path: Path) -> Path:
    frame = pd.read_csv(write_builtin_csv("wine", tmp_path / "wine.csv")).sample(
        frac=1.0, random_state=0
    )
    frame.iloc[:110].to_csv(tmp_path / "old.csv", index=False)
    frame.iloc[110:].to_csv(tmp_path / "new.csv", index=False)
    proc = cli(
        "train", "--data", tmp_path / "old.csv", "--target", "target", *FAST, "--run-dir", "runs/a"
    )
    assert proc.returncode == 0, proc.stderr
    return tmp_path / "runs" / "a"


def test_continue_writes_a_new_run_with_the_guard_in_every_row(cli, tmp_path, old_run):
    proc = cli(
        "continue", old_run, "--data", tmp_path / "new.csv", "--epochs", "2", "--replay", "0.5"
    )
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "runs" / "a-continued"
    for name in [
        "history.jsonl",
        "summary.json",
        "report.html",
        "model.pt",
        "preprocessor.json",
        "job.toml",
    ]:
        assert (out / name).exists(), name
    rows = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert 1 <= len(rows) <= 2 and all(0.0 <= r["old_val_accuracy"] <= 1.0 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["continued_from"] == str(old_run) and summary["replay"] == 0.5
    assert 0.0 <= summary["old_reference"] <= 1.0
    assert (old_run / "history.jsonl").read_text().count("\n") == 3  # the old run is untouched
    evaluated = cli("evaluate", out, "--data", tmp_path / "new.csv", "--json")
    assert evaluated.returncode == 0 and "accuracy" in json.loads(evaluated.stdout)


def test_budget_plan_is_short_and_bounded():
    from epochpilot.cli.continual import plan_budget

    assert plan_budget({"best_epoch": 40}, n_old=1000, n_new=100)[0] == 8
    assert plan_budget({"best_epoch": 2}, n_old=1000, n_new=100)[0] == 3
    assert plan_budget({}, n_old=10, n_new=1000)[0] == 20


def test_bad_inputs_are_one_line_errors(cli, tmp_path, old_run):
    new = tmp_path / "new.csv"
    proc = cli("continue", tmp_path / "nowhere", "--data", new)
    assert proc.returncode == 2 and "no job.toml" in proc.stderr
    proc = cli("continue", old_run, "--data", new, "--replay", "1.0")
    assert proc.returncode == 2 and "--replay must be" in proc.stderr and "[0, 1)" in proc.stderr
    shutil.rmtree(old_run / "checkpoints")
    proc = cli("continue", old_run, "--data", new)
    assert proc.returncode == 2 and "has no checkpoint to continue from" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_out_holding_a_run_is_refused_before_any_work(cli, tmp_path, old_run):
    """--out is checked before the data is read, and the refusal names what `continue` accepts (--out,
    --overwrite: it has no --resume)."""
    target = tmp_path / "runs" / "a-continued"
    shutil.copytree(old_run, target)
    before = _files(target)
    proc = cli("continue", old_run, "--data", tmp_path / "missing.csv", "--epochs", "1")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    line = proc.stderr.strip()
    assert "--out" in line and "already holds a run" in line and "--overwrite" in line
    assert "--resume" not in line and "missing.csv" not in line
    assert _files(target) == before


@pytest.mark.parametrize("failure", ["bad data", "full disk writing job.toml"])
def test_overwrite_that_fails_keeps_the_old_out_run(cli, tmp_path, old_run, monkeypatch, failure):
    """--overwrite replaces --out only once the new rows are validated, and keeps the old run aside until
    the new one is safe: a broken CSV, or a write failing before the fit, leaves it as it was."""
    import errno

    from epochpilot.jobs import pipeline

    target = tmp_path / "runs" / "a-continued"
    shutil.copytree(old_run, target)
    before = _files(target)
    data = tmp_path / "new.csv"
    if failure == "bad data":
        data = tmp_path / "bad.csv"
        data.write_text("x,y\n1,2\n")  # no target column
    else:

        def full(run_dir, spec):
            raise OSError(errno.ENOSPC, "No space left on device", str(run_dir / "job.toml"))

        monkeypatch.setattr(pipeline, "_write_job", full)
    proc = cli("continue", old_run, "--data", data, "--epochs", "1", "--overwrite")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    if failure != "bad data":
        assert "--out" in proc.stderr and "free some disk space" in proc.stderr
    assert _files(target) == before
    assert not [p.name for p in target.parent.iterdir() if ".epochpilot-" in p.name]


def test_continue_run_refusal_reads_as_python(tmp_path, old_run):
    from epochpilot.cli.continual import continue_run

    with pytest.raises(FileExistsError) as err:
        continue_run(old_run, tmp_path / "new.csv", out=old_run, epochs=1, echo=lambda *a: None)
    text = str(err.value)
    assert text.startswith("out ") and "overwrite=True" in text and "--" not in text
    assert "resume" not in text


def test_a_sweep_run_continues_from_its_trunk_without_a_new_warmup(cli, tmp_path, old_run):
    """A ``cooldown="sweep"`` run keeps the trunk's last constant-lr state: ``continue`` trains on from there
    at the trunk's lr (no warmup, no decay to undo) with new cooldown branches."""
    sweep = tmp_path / "runs" / "s"
    proc = cli(
        "train", "--data", tmp_path / "old.csv", "--target", "target", "--max-epochs", "12",
        "--schedule", "wsd", "--cooldown", "sweep", "--lr", "0.01", "--no-tensorboard",
        "--run-dir", sweep,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    proc = cli("continue", sweep, "--data", tmp_path / "new.csv", "--epochs", "6")
    assert proc.returncode == 0, proc.stderr
    assert "from the trunk's last constant-lr state" in proc.stdout + proc.stderr
    out = tmp_path / "runs" / "s-continued"
    rows = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert rows[0]["branch"] == 0 and rows[0]["lr"] == pytest.approx(0.01 * 0.3)  # --lr-scale 0.3
    assert any(r["branch"] for r in rows)  # new cooldown branches
    # a run without a sweep continues from its kept model, as before
    proc = cli("continue", old_run, "--data", tmp_path / "new.csv", "--epochs", "2")
    assert "trunk" not in proc.stdout + proc.stderr


def test_continue_an_auto_batch_run_keeps_its_micro_batch_and_effective_batch(cli, tmp_path):
    frame = pd.read_csv(write_builtin_csv("wine", tmp_path / "wine.csv")).sample(
        frac=1.0, random_state=0
    )
    frame.iloc[:110].to_csv(tmp_path / "old.csv", index=False)
    frame.iloc[110:].to_csv(tmp_path / "new.csv", index=False)
    auto = ["--batch-size", "auto", "--effective-batch", "32"]
    proc = cli("train", "--data", tmp_path / "old.csv", "--target", "target", *FAST, *auto)
    assert proc.returncode == 0, proc.stderr
    run = next((tmp_path / "runs").iterdir())
    before = json.loads((run / "summary.json").read_text())["batch"]
    proc = cli("continue", run, "--data", tmp_path / "new.csv", "--epochs", "2")
    assert proc.returncode == 0, proc.stderr
    after = json.loads((tmp_path / "runs" / f"{run.name}-continued" / "summary.json").read_text())
    assert after["batch"]["micro_batch"] == before["micro_batch"]
    assert after["batch"]["effective_batch"] == 32

"""Nothing lost, ever: ``--overwrite`` keeps the old run until the new one is safe, a folder of other files is
never written into, every output file is replaced atomically, a killed command's leftovers are recovered, and a
full disk is one line that leaves every file whole."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from epochpilot.data.table import write_builtin_csv
from epochpilot.errors import ConfigError
from epochpilot.train import fit, loop
from epochpilot.train.replace import ASIDE, is_own
from epochpilot.train.rundir import MARKER, check_run_dir, is_run_dir

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--max-epochs", "4", "--no-tensorboard"]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (hidden ones too) and its bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def leftovers(folder: Path) -> list[str]:
    """Hidden siblings a replacement leaves beside a run (none when it is settled)."""
    return sorted(p.name for p in folder.iterdir() if ".epochpilot-" in p.name)


def one_line(proc, code: int = 2) -> str:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished ``epochpilot train`` run on wine (copied by each test that needs one)."""
    from epochpilot.cli import main

    base = tmp_path_factory.mktemp("good")
    csv = write_builtin_csv("wine", base / "wine.csv")
    cwd = os.getcwd()
    os.chdir(base)
    try:
        assert (
            main(["train", "--data", str(csv), "--target", "target", *FAST, "--run-dir", "runs/w"])
            == 0
        )
    finally:
        os.chdir(cwd)
    return base / "runs" / "w"


@pytest.fixture
def old_run(tmp_path: Path, good_run: Path) -> Path:
    """A copy of the good run at tmp_path/runs/w, and wine.csv beside the runs."""
    shutil.copytree(good_run, tmp_path / "runs" / "w")
    shutil.copy(good_run.parents[1] / "wine.csv", tmp_path / "wine.csv")
    return tmp_path / "runs" / "w"


# -- --overwrite validates first, and keeps the old run until the new one is safe -----------------------------


BROKEN = {
    "no target column": "a,b\n1,2\n3,4\n",
    "empty file": "",
    "a single row": "x,target\n1,0\n",
}


@pytest.mark.parametrize("command", ["train", "cv", "tune"])
@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_overwrite_with_bad_input_keeps_the_old_run(cli, tmp_path, old_run, command, broken):
    before = snapshot(old_run)
    (tmp_path / "bad.csv").write_text(BROKEN[broken])
    args = [command, "--data", "bad.csv", "--target", "target", *FAST, "--run-dir", "runs/w"]
    extra = {"cv": ["--folds", "2"], "tune": ["--trials", "1"]}.get(command, [])
    one_line(cli(*args, *extra, "--overwrite"))
    assert snapshot(old_run) == before
    assert leftovers(old_run.parent) == []


class Boom(RuntimeError):
    pass


def _fail_at_epoch_end(monkeypatch: pytest.MonkeyPatch, n: int, exc: BaseException) -> None:
    """Make the n-th end of an epoch raise ``exc`` (the checkpoints of the epochs before it are on disk)."""
    calls = {"n": 0}
    real = loop.Loop._end_epoch

    def end_epoch(self: loop.Loop) -> None:
        calls["n"] += 1
        if calls["n"] == n:
            if self.ckpts is not None:
                self.ckpts.wait()
            raise exc
        real(self)

    monkeypatch.setattr(loop.Loop, "_end_epoch", end_epoch)


@pytest.mark.parametrize("exc, code", [(Boom("boom"), 1), (KeyboardInterrupt(), 130)])
def test_failure_before_the_first_checkpoint_brings_the_old_run_back(
    cli, old_run, monkeypatch, exc, code
):
    before = snapshot(old_run)
    _fail_at_epoch_end(monkeypatch, 1, exc)
    proc = cli(
        "train",
        "--data",
        "wine.csv",
        "--target",
        "target",
        *FAST,
        "--run-dir",
        "runs/w",
        "--overwrite",
    )
    assert proc.returncode == code, proc.stderr
    assert snapshot(old_run) == before
    assert leftovers(old_run.parent) == []


def test_failure_after_the_first_checkpoint_keeps_the_new_run(cli, old_run, monkeypatch):
    (old_run / "notes.txt").write_text("mine")  # a file the user added to the old run
    old_model = (old_run / "model.pt").read_bytes()
    real_end_epoch = loop.Loop._end_epoch
    _fail_at_epoch_end(monkeypatch, 3, Boom("boom"))
    args = [
        "train",
        "--data",
        "wine.csv",
        "--target",
        "target",
        "--max-epochs",
        "6",
        "--no-tensorboard",
    ]
    proc = cli(*args, "--run-dir", "runs/w", "--overwrite", "--seed", "7")
    assert proc.returncode == 1, proc.stderr
    assert leftovers(old_run.parent) == []
    assert not (old_run / "model.pt").exists()  # the new run is there, not finished
    assert (old_run / "notes.txt").read_text() == "mine"  # never deleted: moved into the new run
    assert {p.name for p in (old_run / "checkpoints").iterdir()} >= {"epoch-0001", "epoch-0002"}
    monkeypatch.setattr(loop.Loop, "_end_epoch", real_end_epoch)
    proc = cli("resume", "runs/w")
    assert proc.returncode == 0, proc.stderr
    assert (old_run / "model.pt").read_bytes() != old_model


def test_overwrite_success_replaces_the_run_and_keeps_user_files(cli, old_run):
    (old_run / "notes.txt").write_text("mine")
    old_history = (old_run / "history.jsonl").read_text()
    proc = cli(
        "train",
        "--data",
        "wine.csv",
        "--target",
        "target",
        "--max-epochs",
        "2",
        "--no-tensorboard",
        "--run-dir",
        "runs/w",
        "--overwrite",
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        len((old_run / "history.jsonl").read_text().splitlines())
        == 2
        != len(old_history.splitlines())
    )
    assert (old_run / "notes.txt").read_text() == "mine"
    assert leftovers(old_run.parent) == []


def _blobs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(64, 4, generator=g), torch.randint(0, 3, (64,), generator=g)


def test_fit_overwrite_restores_on_failure_and_replaces_on_success(tmp_path):
    X, y = _blobs()
    run = tmp_path / "run"
    fit(torch.nn.Linear(4, 3), (X, y), max_epochs=2, seed=0, run_dir=run)
    (run / "notes.txt").write_text("mine")
    before = snapshot(run)

    class Fail:  # raises inside the first epoch, before any checkpoint
        state_key = "fail"

        def on_step_end(self, state):
            raise Boom("boom")

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    with pytest.raises(Boom):
        fit(
            torch.nn.Linear(4, 3),
            (X, y),
            max_epochs=2,
            seed=0,
            run_dir=run,
            overwrite=True,
            callbacks=[Fail()],
        )
    assert snapshot(run) == before and leftovers(tmp_path) == []
    with pytest.raises(ValueError):  # bad data: refused before the run directory is touched
        fit(torch.nn.Linear(5, 3), (X, y), max_epochs=2, run_dir=run, overwrite=True)
    assert snapshot(run) == before and leftovers(tmp_path) == []
    result = fit(torch.nn.Linear(4, 3), (X, y), max_epochs=3, seed=1, run_dir=run, overwrite=True)
    assert len(result.history) == 3 and leftovers(tmp_path) == []
    assert len((run / "history.jsonl").read_text().splitlines()) == 3
    assert (run / "notes.txt").read_text() == "mine"


# -- a folder of other files is never written into, with or without --overwrite -------------------------------


@pytest.fixture
def user_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    (folder / "thesis.tex").write_text("\\section{results}")
    (folder / "config.toml").write_text(
        "[tool]\nname = 'not epochpilot'\n"
    )  # a name epochpilot uses too
    (folder / "sub" / "data.bin").write_bytes(os.urandom(64))
    return folder


COMMANDS = {
    "demo": ["demo", "--max-epochs", "2", "--run-dir", "mine"],
    "train": ["train", "--builtin", "wine", *FAST, "--run-dir", "mine", "--overwrite"],
    "cv": ["cv", "--builtin", "wine", *FAST, "--folds", "2", "--run-dir", "mine", "--overwrite"],
    "tune": [
        "tune",
        "--builtin",
        "wine",
        *FAST,
        "--trials",
        "1",
        "--run-dir",
        "mine",
        "--overwrite",
    ],
    "finetune": ["finetune", "--data", "t.csv", "--run-dir", "mine", "--overwrite"],
    "continue": ["continue", "runs/w", "--data", "wine.csv", "--out", "mine", "--overwrite"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_folder_of_other_files_is_refused(cli, tmp_path, user_folder, old_run, command):
    before = snapshot(user_folder)
    line = one_line(cli(*COMMANDS[command]))
    assert "mine" in line and "not an epochpilot run directory" in line and "thesis.tex" in line
    assert snapshot(user_folder) == before
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("overwrite", [False, True])
def test_fit_refuses_a_folder_of_other_files(user_folder, overwrite):
    X, y = _blobs()
    before = snapshot(user_folder)
    with pytest.raises(
        ConfigError, match="is not empty and is not an epochpilot run directory"
    ) as err:
        fit(torch.nn.Linear(4, 3), (X, y), max_epochs=1, run_dir=user_folder, overwrite=overwrite)
    assert "\n" not in str(err.value)
    assert snapshot(user_folder) == before


def test_what_counts_as_a_run_directory(tmp_path, old_run, user_folder):
    assert check_run_dir(tmp_path / "new") == "missing"
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".DS_Store").write_bytes(b"\0")
    assert check_run_dir(tmp_path / "empty") == "empty"
    assert check_run_dir(old_run) == "run" and is_run_dir(old_run)
    (old_run / MARKER).unlink()  # a run written before the marker: recognised by its files
    assert is_run_dir(old_run)
    assert not is_run_dir(user_folder)
    with pytest.raises(ConfigError, match="is a file"):
        check_run_dir(tmp_path / "wine.csv", "--run-dir")
    assert is_own("fold-3") and is_own("study.db-journal") and not is_own("thesis.tex")


# -- what a killed command left behind is recovered on the next command ---------------------------------------


def _killed(tmp_path: Path, n: int, *flags: str) -> int:
    """Run ``train --overwrite`` on runs/w and SIGKILL it at the end of epoch n; return its pid."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MPLBACKEND": "Agg"}
    args = [
        "train",
        "--data",
        "wine.csv",
        "--target",
        "target",
        *FAST,
        "--run-dir",
        "runs/w",
        "--overwrite",
    ]
    script = str(Path(__file__).with_name("_no_loss_kill.py"))
    proc = subprocess.Popen(
        [sys.executable, script, str(n), *flags, "--", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, err
    return proc.pid


def test_kill_before_the_first_checkpoint_the_next_command_restores_the_old_run(
    cli, tmp_path, old_run, caplog
):
    before = snapshot(old_run)
    pid = _killed(tmp_path, 1)
    assert leftovers(old_run.parent) == [f".w{ASIDE}{pid}"]
    assert snapshot(old_run) != before  # the new, unfinished run is there
    with caplog.at_level(logging.INFO, logger="epochpilot"):
        line = one_line(
            cli("train", "--data", "wine.csv", "--target", "target", "--run-dir", "runs/w")
        )
    assert (
        "already holds a run" in line
    )  # the old run is back, and not overwritten without --overwrite
    assert "restored the previous run" in caplog.text and str(pid) in caplog.text
    assert snapshot(old_run) == before and leftovers(old_run.parent) == []


def test_kill_after_the_first_checkpoint_the_next_command_removes_the_old_copy(
    cli, tmp_path, old_run, caplog
):
    (old_run / "notes.txt").write_text("mine")
    pid = _killed(tmp_path, 3, "hold")
    assert leftovers(old_run.parent) == [f".w{ASIDE}{pid}"]
    with caplog.at_level(logging.INFO, logger="epochpilot"):
        proc = cli("resume", "runs/w")  # the new run had checkpoints: it is the one resumed
    assert proc.returncode == 0, proc.stderr
    assert "removed" in caplog.text and "first checkpoint" in caplog.text
    assert leftovers(old_run.parent) == []
    assert (old_run / "notes.txt").read_text() == "mine"
    assert len((old_run / "history.jsonl").read_text().splitlines()) == 4


def test_a_copy_held_by_a_running_process_is_not_touched(cli, tmp_path, old_run):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        aside = old_run.parent / f".w{ASIDE}{holder.pid}"
        shutil.copytree(old_run, aside)
        before = snapshot(aside)
        line = one_line(
            cli(
                "train",
                "--data",
                "wine.csv",
                "--target",
                "target",
                "--run-dir",
                "runs/w",
                "--overwrite",
            )
        )
        assert f"process {holder.pid}" in line and str(aside) in line
        assert snapshot(aside) == before
    finally:
        holder.kill()
        holder.wait()


def test_a_run_moved_aside_with_nothing_in_its_place_comes_back(cli, tmp_path, old_run, caplog):
    """A kill between moving the old run aside and creating the new folder leaves only the copy."""
    before = snapshot(old_run)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    old_run.rename(old_run.parent / f".w{ASIDE}{dead.pid}")
    with caplog.at_level(logging.INFO, logger="epochpilot"):
        proc = cli("train", "--data", "wine.csv", "--target", "target", "--run-dir", "runs/w")
    assert "already holds a run" in one_line(proc)
    assert "restored the previous run" in caplog.text
    assert snapshot(old_run) == before and leftovers(old_run.parent) == []


# -- every output file is replaced atomically ----------------------------------------------------------------


def _writers(run: Path) -> dict[str, tuple[Path, object]]:
    """(target file, function writing it) for the files a run holds."""
    import json

    from epochpilot.jobs.pipeline import _update_summary, _write_job, load, save_predictor
    from epochpilot.jobs.spec import JobSpec
    from epochpilot.report import write_report
    from epochpilot.train.record import HistoryWriter, write_summary
    from epochpilot.train.rundir import write_config

    predictor = load(run)
    spec = JobSpec()
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    return {
        "summary.json": (run / "summary.json", lambda: write_summary(run, {"a": 1})),
        "summary.json (pipeline)": (run / "summary.json", lambda: _update_summary(run, {"a": 1})),
        "config.toml": (run / "config.toml", lambda: write_config(run, {"train": {"lr": 1.0}})),
        "job.toml": (run / "job.toml", lambda: _write_job(run, spec)),
        "model.pt": (
            run / "model.pt",
            lambda: save_predictor(run, spec, predictor.preprocessor, predictor.model),
        ),
        "history.csv": (run / "history.csv", lambda: HistoryWriter(run).reset(history)),
        "report.html": (run / "report.html", lambda: write_report(run)),
        "plots/loss.png": (run / "plots" / "loss.png", lambda: write_report(run)),
    }


@pytest.mark.parametrize(
    "name",
    [
        "summary.json",
        "summary.json (pipeline)",
        "config.toml",
        "job.toml",
        "model.pt",
        "history.csv",
        "report.html",
        "plots/loss.png",
    ],
)
def test_a_failed_write_leaves_the_old_file_whole(old_run, monkeypatch, name):
    """Every writer goes through a temporary file and a rename: when the rename (the last step) fails,
    the old file is untouched and no temporary file is left."""
    target, write = _writers(old_run)[name]
    before = snapshot(old_run)

    real_replace = os.replace

    def refuse(src, dst):  # the rename onto the target fails (as a full disk would fail the write)
        if Path(dst) == target:
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        real_replace(src, dst)

    with monkeypatch.context() as patch, pytest.raises(OSError):
        patch.setattr(os, "replace", refuse)
        write()
    assert target.read_bytes() == before[str(target.relative_to(old_run))]
    assert sorted(snapshot(old_run)) == sorted(before)  # no temporary file left


# -- a full disk: one line, every file whole ------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 3 MiB tmpfs at tmp_path/disk (needs root); the test is skipped where it cannot be mounted."""
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)],
            capture_output=True,
            text=True,
        )
    except OSError as exc:
        pytest.skip(f"cannot mount a tmpfs here ({exc}): the full-disk test needs root")
    if done.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({done.stderr.strip()}): the full-disk test needs root"
        )
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def fill(disk: Path, leave: int) -> None:
    """Write ballast until about ``leave`` bytes are free on ``disk`` (0: until the disk refuses more)."""
    st = os.statvfs(disk)
    size = max(0, st.f_bavail * st.f_frsize - leave)
    try:
        with open(disk / "ballast", "wb") as fh:
            fh.write(b"\0" * size)
            while not leave:
                fh.write(b"\0" * 4096)
                fh.flush()
    except OSError:
        pass


@pytest.mark.parametrize("leave", [0, 100_000], ids=["full", "full-mid-training"])
def test_full_disk_overwrite_is_one_line_and_keeps_the_old_run(
    cli, tmp_path, good_run, tiny_disk, leave
):
    run = tiny_disk / "runs" / "w"
    shutil.copytree(good_run, run)
    shutil.copy(good_run.parents[1] / "wine.csv", tmp_path / "wine.csv")
    fill(tiny_disk, leave)
    before = snapshot(run)
    args = [
        "train",
        "--data",
        "wine.csv",
        "--target",
        "target",
        *FAST,
        "--run-dir",
        run,
        "--overwrite",
    ]
    line = one_line(cli(*args))
    assert str(run) in line and "free some disk space" in line
    assert snapshot(run) == before
    assert leftovers(run.parent) == []


def test_full_disk_predict_out_keeps_the_old_file(cli, tmp_path, old_run, tiny_disk):
    out = tiny_disk / "predictions.csv"
    out.write_text("class\nold\n")
    fill(tiny_disk, 0)
    line = one_line(cli("predict", "runs/w", "--data", "wine.csv", "--out", out))
    assert str(out) in line and "free some disk space" in line
    assert out.read_text() == "class\nold\n"
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["ballast", "predictions.csv"]


# -- the commands that read a run settle what a killed --overwrite left; resume validates before it writes ----


@pytest.mark.parametrize("command", ["predict", "evaluate", "report", "compare"])
def test_reading_commands_bring_back_a_run_left_aside(cli, tmp_path, old_run, caplog, command):
    """A replacing command killed right after moving the old run aside leaves only the copy: the next
    command that reads the run (not just the ones that write it) puts it back and works on it."""
    before = snapshot(old_run)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    old_run.rename(old_run.parent / f".w{ASIDE}{dead.pid}")
    args = {
        "predict": ["predict", "runs/w", "--data", "wine.csv"],
        "evaluate": ["evaluate", "runs/w", "--data", "wine.csv"],
        "report": ["report", "runs/w"],
        "compare": ["compare", "runs/w", "runs/w", "--out", "cmp.html"],
    }[command]
    with caplog.at_level(logging.INFO, logger="epochpilot"):
        proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert "restored the previous run" in caplog.text and leftovers(old_run.parent) == []
    after = snapshot(old_run)
    if command == "report":  # its purpose: the report and its plots are rewritten
        after = {k: v for k, v in after.items() if k != "report.html" and not k.startswith("plots")}
        before = {k: v for k, v in before.items() if k in after}
    assert after == before


def test_resume_with_a_damaged_config_changes_nothing(cli, old_run):
    """config.toml cut short (no [run] config_hash left): one line naming it, before any file is written."""
    config = old_run / "config.toml"
    text = config.read_text()
    config.write_text(text[: text.index("[run]")])
    before = snapshot(old_run)
    line = one_line(cli("resume", "runs/w"))
    assert "runs/w/config.toml" in line and "config_hash" in line and "--overwrite" in line
    assert "resume=True" not in line and "overwrite=True" not in line
    assert snapshot(old_run) == before


def test_resume_that_fit_refuses_leaves_job_toml_alone(cli, tmp_path, old_run):
    """`train --resume` with other data: fit refuses the run (another config) after the data is read; the
    new job must not have been written over the run's job.toml by then. The refusal names CLI flags."""
    import pandas as pd

    pd.read_csv("wine.csv").iloc[:100].to_csv("fewer.csv", index=False)
    before = snapshot(old_run)
    args = ["train", "--data", "fewer.csv", "--target", "target", *FAST, "--run-dir", "runs/w"]
    line = one_line(cli(*args, "--resume"))
    assert "different config" in line and "n_train" in line
    assert "--overwrite" in line and "overwrite=True" not in line and "resume=True" not in line
    assert snapshot(old_run) == before


def test_a_successful_resume_keeps_job_toml_byte_for_byte(cli, old_run):
    before = (old_run / "job.toml").read_bytes()
    assert cli("resume", "runs/w").returncode == 0
    assert (old_run / "job.toml").read_bytes() == before
    assert b"resume = false" in before  # one command's flags are not part of the job


def test_resume_refuses_a_folder_holding_a_users_job_file(cli, tmp_path):
    """A user's job.toml (with [data] and [train]) does not make its folder a run directory."""
    job = '[data]\nbuiltin = "wine"\n[train]\nmax_epochs = 2\n'
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "job.toml").write_text(job)
    (folder / "notes.md").write_text("mine")
    before = snapshot(folder)
    line = one_line(cli("resume", folder))
    assert "not an epochpilot run directory" in line and "job.toml" in line
    assert snapshot(folder) == before and not is_run_dir(folder)
    (folder / "notes.md").unlink()  # the job file alone
    assert "not an epochpilot run directory" in one_line(cli("resume", folder))
    assert (folder / "job.toml").read_text() == job


def test_resume_without_room_on_the_disk_changes_nothing(cli, old_run, monkeypatch):
    """Resuming rewrites the run's files and writes a checkpoint: without room for them it is one line,
    before anything is written (the free space is faked; the tmpfs tests below use a real full disk)."""
    real = shutil.disk_usage

    def nearly_full(path):
        usage = real(path)
        return type(usage)(usage.total, usage.total - 4096, 4096)

    monkeypatch.setattr(shutil, "disk_usage", nearly_full)
    before = snapshot(old_run)
    line = one_line(cli("resume", "runs/w"))
    assert "RUN_DIR" in line and "runs/w" in line and "free some disk space" in line
    assert snapshot(old_run) == before


def test_resume_on_a_full_disk_changes_nothing(cli, tmp_path, good_run, tiny_disk):
    run = tiny_disk / "runs" / "w"
    shutil.copytree(good_run, run)
    shutil.copy(good_run.parents[1] / "wine.csv", tmp_path / "wine.csv")
    fill(tiny_disk, 64 * 1024)
    before = snapshot(run)
    line = one_line(cli("resume", run))
    assert str(run) in line and "free some disk space" in line
    assert snapshot(run) == before

"""SIGINT / SIGTERM during training: a final checkpoint, one line on how to resume, exit code 130 / 143, and a
resume that ends bitwise identical to an uninterrupted run. Real subprocesses, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from epochpilot.train import fit
from epochpilot.train.signals import StopSignals, TrainingTerminated, active, exit_code

SCRIPT = Path(__file__).with_name("_signal_script.py")
ROOT = Path(__file__).resolve().parents[2]
TIMING = ("epoch_time_s", "samples_per_s")


def _run(
    run_dir: Path, out: Path, when: str = "-", catch: str = "-"
) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(run_dir), str(out), when, catch],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _result(out: Path) -> tuple[dict, dict]:
    weights = torch.load(out, weights_only=True)
    info = json.loads(Path(str(out) + ".json").read_text())
    for row in info["history"]:
        for key in TIMING:
            row.pop(key)
    return weights, info


def _assert_same(out: Path, ref: Path) -> None:
    weights, info = _result(out)
    ref_weights, ref_info = _result(ref)
    assert weights.keys() == ref_weights.keys()
    for key in weights:
        assert torch.equal(weights[key], ref_weights[key]), f"{key} differs"
    assert info == ref_info


def _lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run's final weights and history."""
    base = tmp_path_factory.mktemp("ref")
    proc = _run(base / "run", base / "out.pt")
    assert proc.returncode == 0, proc.stderr
    return base / "out.pt"


@pytest.mark.slow
@pytest.mark.parametrize(
    "when, code, checkpoint",
    [
        ("INT:7", -signal.SIGINT, "step-0000007"),  # uncaught: Python's own Ctrl-C exit (130)
        ("TERM:7", 143, "step-0000007"),  # uncaught: a SystemExit(143)
        (
            "TERM:e3",
            143,
            "epoch-0003",
        ),  # at an epoch end: that epoch's checkpoint, not a second one
    ],
)
def test_signal_checkpoints_and_resume_is_exact(tmp_path, reference, when, code, checkpoint):
    run_dir, out = tmp_path / "run", tmp_path / "out.pt"
    proc = _run(run_dir, out, when)
    assert proc.returncode == code, proc.stderr
    assert not out.exists()
    name = "SIGINT" if when.startswith("INT") else "SIGTERM"
    line = next(line for line in _lines(proc.stderr) if line.startswith("training stopped by"))
    assert name in line and f"checkpoint {run_dir}/checkpoints/{checkpoint} saved" in line
    assert f"resume with: fit(..., run_dir={str(run_dir)!r}, resume=True)" in line
    if code == 143:  # a clean exit: the one line and nothing else
        assert _lines(proc.stderr) == [line]
    assert (run_dir / "checkpoints" / checkpoint / "meta.json").is_file()
    proc = _run(run_dir, out)  # the same command again resumes (resume="auto")
    assert proc.returncode == 0, proc.stderr
    _assert_same(out, reference)


def test_sigint_caught_exits_130_with_one_line(tmp_path):
    """The documented pattern: ``except KeyboardInterrupt as exc: sys.exit(exc.exit_code)``."""
    proc = _run(tmp_path / "run", tmp_path / "out.pt", "INT:5", "exit")
    assert proc.returncode == 130, proc.stderr
    lines = _lines(proc.stderr)
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("training stopped by SIGINT (Ctrl-C) in epoch 1 after update 5")


def test_second_signal_stops_at_once(tmp_path):
    proc = _run(tmp_path / "run", tmp_path / "out.pt", "INT2:5", "exit")
    assert proc.returncode == 130, proc.stderr
    assert "stopped at once by a second signal" in proc.stderr
    assert not (tmp_path / "run" / "checkpoints" / "step-0000005").exists()


def test_signal_without_run_dir_says_nothing_was_saved():
    """In-process: the handler only sets a flag; the loop raises at the next update boundary."""
    from epochpilot.train import Callback

    class Send(Callback):
        def on_step_end(self, state):
            if state.step == 3:
                os.kill(os.getpid(), signal.SIGINT)

    X, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="no run_dir, so nothing was saved") as err:
        fit(torch.nn.Linear(4, 2), (X, y), max_epochs=5, batch_size=8, callbacks=[Send()])
    assert (
        type(err.value) is KeyboardInterrupt
    )  # the exact type: Python's Ctrl-C exit when uncaught
    assert "after update 3" in str(err.value) and exit_code(err.value) == 130
    assert err.value.checkpoint is None
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_handlers_only_in_the_main_thread_and_restored():
    before = signal.getsignal(signal.SIGTERM)
    seen = {}

    def worker() -> None:
        with StopSignals() as sig:
            seen["handler"] = signal.getsignal(signal.SIGTERM)
            seen["active"] = active() is sig

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == {"handler": before, "active": True}
    with StopSignals() as sig:
        assert signal.getsignal(signal.SIGTERM) == sig._handler
        assert active() is sig
    assert signal.getsignal(signal.SIGTERM) is before
    assert active().signum == 0


def test_exceptions_pickle_and_carry_their_exit_codes(tmp_path):
    import pickle

    from epochpilot.train.signals import interruption

    for signum, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        made = interruption(signum, run_dir=tmp_path, checkpoint=tmp_path / "ck", where="here")
        exc = pickle.loads(pickle.dumps(made))
        assert (str(exc), exit_code(exc), exc.checkpoint) == (str(made), code, tmp_path / "ck")
    assert TrainingTerminated("x").code == 143
    assert exit_code(KeyboardInterrupt()) is None and exit_code(ValueError()) is None


def _cli(args: list[str], cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), MPLBACKEND="Agg")
    return subprocess.Popen(
        [sys.executable, "-m", "epochpilot", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_cli_train_signal_exit_code_line_and_resume(tmp_path, signum, code):
    """``epochpilot train`` signalled from outside mid-training: a checkpoint, the resume line, 130 / 143;
    ``epochpilot resume`` then finishes the run."""
    args = ["train", "--builtin", "wine", "--max-epochs", "60", "--stopper", "none"]
    proc = _cli([*args, "--no-tensorboard", "--run-dir", "runs/w"], tmp_path)
    history = tmp_path / "runs" / "w" / "history.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if history.is_file() and len(history.read_text().splitlines()) >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    last = _lines(err)[-1]
    assert last.startswith("training stopped by") and last.endswith(
        "resume with: epochpilot resume runs/w"
    )
    ckpts = [p for p in (tmp_path / "runs/w/checkpoints").iterdir() if not p.name.startswith(".")]
    assert any(p.name != "best" for p in ckpts)
    done = _cli(["resume", "runs/w"], tmp_path)
    _, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    rows = (tmp_path / "runs/w/history.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == list(range(1, 61))


def test_cli_main_after_a_fit_stopped_by_ctrl_c_adds_no_line(monkeypatch, capsys):
    """A command that lets fit's KeyboardInterrupt through (cv, tune, continue): fit already logged the
    line on how to resume, so main adds no "interrupted" and exits with the interruption's code; a Ctrl-C
    outside a fit still says "interrupted" (130)."""
    from epochpilot.cli import main, report
    from epochpilot.train.signals import interruption

    def stopped_in_fit(args):
        raise interruption(
            signal.SIGINT,
            run_dir=Path("runs/w"),
            checkpoint=Path("runs/w/checkpoints/epoch-0002"),
            where="after epoch 2",
        )

    def ctrl_c(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "precheck", lambda args: None)  # runs/w does not exist
    monkeypatch.setattr(report, "run", stopped_in_fit)
    assert main(["report", "runs/w"]) == 130
    assert "interrupted" not in capsys.readouterr().err
    monkeypatch.setattr(report, "run", ctrl_c)
    assert main(["report", "runs/w"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"

"""Faults: a read-only file system, a full disk (a tiny tmpfs), SIGINT/SIGTERM/SIGKILL during training, an
interrupt inside a checkpoint write and inside report writing.

Running as root, ``chmod`` does not stop writes, so a read-only folder is a read-only bind mount; both it and the
full disk need ``mount`` (the tests skip with a message where the machine does not allow it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from . import _harness as H
from . import strategies as S
from .conftest import fuzz_settings


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=20)


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=20)


def _can_mount() -> str | None:
    """None when mounting works here, else why not."""
    if shutil.which("mount") is None:
        return "no mount command"
    probe = Path(os.environ.get("TMPDIR", "/tmp")) / f"epochpilot-mount-probe-{os.getpid()}"
    probe.mkdir(exist_ok=True)
    try:
        _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe))
    except (subprocess.CalledProcessError, OSError, subprocess.TimeoutExpired) as exc:
        return f"mount is not allowed here ({exc})"
    _umount(probe)
    probe.rmdir()
    return None


WHY_NOT = _can_mount()
needs_mount = pytest.mark.skipif(WHY_NOT is not None, reason=f"needs mount: {WHY_NOT}")


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """``path`` bind-mounted read-only onto itself for the duration."""
    _mount("--bind", str(path), str(path))
    try:
        _mount("-o", "remount,bind,ro", str(path))
        yield path
    finally:
        _umount(path)


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "4m") -> Iterator[Path]:
    """A small tmpfs at ``path`` for the duration."""
    path.mkdir(exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    try:
        yield path
    finally:
        _umount(path)


def fill(folder: Path, leave: int) -> None:
    """Write a filler file so that about ``leave`` bytes stay free on ``folder``'s file system."""
    st_ = os.statvfs(folder)
    free = st_.f_bavail * st_.f_frsize
    with open(folder / ".filler", "wb") as fh:
        remaining = max(0, free - leave)
        chunk = b"\0" * (1 << 16)
        try:
            while remaining > 0:
                remaining -= fh.write(chunk[: min(len(chunk), remaining)])
        except OSError:
            pass


#: name -> argv with {F} for the faulty folder (it holds a copy of run a as {F}/runs/a and {F}/existing.csv)
WRITERS = {
    "predict --out new": ["predict", "runs/a", "--data", "tiny.csv", "--out", "{F}/pred.csv"],
    "predict --out existing": [
        "predict",
        "runs/a",
        "--data",
        "tiny.csv",
        "--out",
        "{F}/existing.csv",
    ],
    "train --run-dir": [
        "train",
        "--data",
        "tiny.csv",
        "--target",
        "label",
        "--max-epochs",
        "2",
        "--no-tensorboard",
        "--run-dir",
        "{F}/new",
    ],
    "train --overwrite": [
        "train",
        "--data",
        "tiny.csv",
        "--target",
        "label",
        "--max-epochs",
        "2",
        "--no-tensorboard",
        "--run-dir",
        "{F}/runs/a",
        "--overwrite",
    ],
    "report": ["report", "{F}/runs/a"],
    "resume": ["resume", "{F}/runs/a"],
    "continue --out": [
        "continue",
        "runs/a",
        "--data",
        "tiny.csv",
        "--epochs",
        "1",
        "--out",
        "{F}/cont",
    ],
    "schedule --plot": ["schedule", "cosine", "--steps", "50", "--plot", "{F}/lr.png"],
    "compare --out": ["compare", "runs/a", "runs/b", "--out", "{F}/cmp.html"],
    "audit --json": ["audit", "tiny.csv", "--target", "label", "--json", "{F}/audit.json"],
    "plan --json": ["plan", "tiny.csv", "--target", "label", "--json", "{F}/plan.json"],
    "cv --run-dir": [
        "cv",
        "--data",
        "tiny.csv",
        "--target",
        "label",
        "--max-epochs",
        "2",
        "--folds",
        "2",
        "--batch-size",
        "8",
        "--no-tensorboard",
        "--run-dir",
        "{F}/cv",
    ],
}


def _stage(case: H.Case, folder: Path) -> None:
    (folder / "runs").mkdir(parents=True, exist_ok=True)
    shutil.copytree(case.root / "runs" / "a", folder / "runs" / "a")
    (folder / "existing.csv").write_text("the user's old predictions\n")


@needs_mount
@pytest.mark.parametrize("name", sorted(WRITERS))
def test_read_only_folder(new_case, name: str) -> None:
    """Writing into a read-only file system: exit 2, one line, nothing changed."""
    case = new_case()
    folder = case.root / "ro"
    folder.mkdir()
    _stage(case, folder)
    case.snapshot()
    argv = [a.replace("{F}", "ro") for a in WRITERS[name]]
    with read_only(folder):
        case.run(
            argv,
            note="the output folder is a read-only mount",
            names=["ro/", "--out", "--run-dir", "--plot", "--json", "read-only"],
        )
    H.raise_unnamed()


@needs_mount
@pytest.mark.parametrize("name", sorted(WRITERS))
def test_full_disk(new_case, name: str) -> None:
    """A disk with 0 to 256 KiB left: exit 0 or 2 (one line); an existing file or run is never damaged."""
    argv = [a.replace("{F}", "full") for a in WRITERS[name]]
    purpose = {
        "predict --out existing": H.under("full/existing.csv"),
        "train --overwrite": H.under("full/runs/a"),
        "report": H.under("full/runs/a/report.html", "full/runs/a/plots"),
        "resume": H.under("full/runs/a"),
    }.get(name, H.nothing)

    @fuzz_settings(3)
    @given(leave=st.sampled_from([0, 4096, 65536, 262144]))
    def test(leave: int) -> None:
        case = new_case()
        folder = case.root / "full"
        with tmpfs(folder, "8m"):
            _stage(case, folder)
            fill(folder, leave)
            case.snapshot()
            before = dict(case.before)
            case.before = {k: v for k, v in before.items() if not k.endswith(".filler")}
            case.run(
                argv, note=f"{leave} bytes free on the output's file system", may_change=purpose
            )

    test()


# ----------------------------------------------------------------------------------------------- signals

BIG = [
    "train",
    "--data",
    "big.csv",
    "--target",
    "label",
    "--max-epochs",
    "12",
    "--stopper",
    "none",
    "--batch-size",
    "8",
    "--no-tensorboard",
    "--run-dir",
    "runs/big",
]


def _big_csv(root: Path) -> None:
    (root / "big.csv").write_text(S.to_csv([*S.FEATURES, S.TARGET], S.good_rows(2000)))


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if path.exists():
            return True
        time.sleep(0.02)
    return path.exists()


EXPECTED = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGKILL: -9}


def _signal_case(new_case, sig: signal.Signals, delay: float) -> None:
    case = new_case(with_runs=False)
    _big_csv(case.root)
    case.snapshot()
    proc = H.popen(BIG, case.root)
    try:
        reached = _wait_for(case.root / "runs" / "big" / "checkpoints" / "epoch-0001", proc)
        time.sleep(delay)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = H.Result(
        BIG,
        proc.returncode,
        out,
        err,
        0.0,
        note=f"{sig.name} {delay:.2f} s after the first checkpoint (reached: {reached})",
    )
    codes = frozenset({0, EXPECTED[sig]})
    H.check(result, root=case.root, before=case.before, codes=codes)
    if sig != signal.SIGKILL and proc.returncode == EXPECTED[sig]:
        assert "resume" in err.lower(), (
            "an interrupted train must say how to resume\n" + result.describe()
        )
    if proc.returncode != 0:  # the interrupted run resumes and finishes
        case.snapshot()
        case.run(
            ["resume", "runs/big"],
            note=f"after {sig.name}",
            may_change=H.under("runs/big"),
            codes=frozenset({0}),
        )


@pytest.mark.parametrize(
    ("sig", "delay"),
    [(signal.SIGINT, 0.0), (signal.SIGTERM, 0.1), (signal.SIGKILL, 0.05)],
    ids=["SIGINT", "SIGTERM", "SIGKILL"],
)
def test_signal_during_train(new_case, sig: signal.Signals, delay: float) -> None:
    """SIGINT/SIGTERM: exit 130/143 with a line saying how to resume; after any signal, resume finishes."""
    _signal_case(new_case, sig, delay)


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name
)
def test_signal_at_random_times(new_case, sig: signal.Signals) -> None:
    """The same at generated moments (some land inside a checkpoint write)."""

    @fuzz_settings(4)
    @given(delay=st.floats(0.0, 0.6))
    def test(delay: float) -> None:
        _signal_case(new_case, sig, delay)

    test()


def test_interrupt_inside_checkpoint_write(new_case, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C arriving while a checkpoint file is half written (the Nth file write of the run): exit 130,
    the checkpoints on disk stay loadable, and resume finishes the run."""
    from epochpilot.train import checkpoint

    real = checkpoint._write_bytes

    @fuzz_settings(6)
    @given(nth=st.integers(1, 14))
    def test(nth: int) -> None:
        calls = [0]

        def write(path: Path, data: bytes, sync: bool) -> None:
            calls[0] += 1
            if calls[0] == nth:
                Path(path).write_bytes(data[: len(data) // 2])
                raise KeyboardInterrupt
            real(path, data, sync)

        case = new_case(with_runs=False)
        case.snapshot()
        argv = [
            "train",
            "--data",
            "tiny.csv",
            "--target",
            "label",
            "--max-epochs",
            "4",
            "--batch-size",
            "16",
            "--no-tensorboard",
            "--run-dir",
            "runs/k",
        ]
        monkeypatch.setattr(checkpoint, "_write_bytes", write)
        try:
            result = H.run_inproc(argv, case.root, note=f"KeyboardInterrupt in file write #{nth}")
        finally:
            monkeypatch.setattr(checkpoint, "_write_bytes", real)
        H.check(result, root=case.root, before=case.before, codes=frozenset({0, 130}))
        if result.returncode == 130:
            case.snapshot()
            case.run(
                ["resume", "runs/k"],
                note=f"after an interrupt in file write #{nth}",
                may_change=H.under("runs/k"),
                codes=frozenset({0}),
            )

    test()


def test_interrupt_inside_report(new_case, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while report.html's plots are drawn: exit 130, and report.html and every plot are the old file
    or a whole new one (never a truncated one)."""
    import matplotlib.figure

    real = matplotlib.figure.Figure.savefig

    @fuzz_settings(4)
    @given(nth=st.integers(1, 6))
    def test(nth: int) -> None:
        calls = [0]

        def savefig(self, fname, *args, **kwargs):
            calls[0] += 1
            if calls[0] == nth:
                raise KeyboardInterrupt
            return real(self, fname, *args, **kwargs)

        case = new_case()
        case.snapshot()
        monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
        try:
            result = H.run_inproc(
                ["report", "runs/a"], case.root, note=f"KeyboardInterrupt in plot #{nth}"
            )
        finally:
            monkeypatch.setattr(matplotlib.figure.Figure, "savefig", real)
        H.check(
            result,
            root=case.root,
            before=case.before,
            codes=frozenset({0, 130}),
            may_change=H.under("runs/a/report.html", "runs/a/plots"),
        )
        run = case.root / "runs" / "a"
        html = (run / "report.html").read_bytes()
        assert html.rstrip().endswith(b"</html>"), "report.html is cut short\n" + result.describe()
        for png in (run / "plots").glob("*.png"):
            data = png.read_bytes()
            assert data.startswith(b"\x89PNG") and b"IEND" in data[-16:], f"{png.name} is cut short"
        leftovers = [
            p.name for p in run.rglob("*") if p.suffix == ".tmp" or ".epochpilot-" in p.name
        ]
        assert not leftovers, f"temporary files left behind: {leftovers}\n" + result.describe()

    test()

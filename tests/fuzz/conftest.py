"""Fixtures of the fuzz suite: two real runs built once per session, scratch folders, settings, the case count.

The summary line ``fuzz: N cases (...) in T s`` at the end of a session is what the issue asks to quote.
The example counts written in the tests are the full profile; by default a share ``EPOCHPILOT_FUZZ_SCALE``
(0.35) of them runs, which keeps the fuzz suite near 2 minutes on two cores. ``EPOCHPILOT_FUZZ_SCALE=1`` (or 4) runs the full
(or a four times bigger) profile; ``EPOCHPILOT_FUZZ_LOG=FILE``
appends every failing case's message to FILE.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from . import _harness as H
from . import strategies as S

os.environ.setdefault("MPLBACKEND", "Agg")

SCALE = float(os.environ.get("EPOCHPILOT_FUZZ_SCALE", "0.35"))


def fuzz_settings(max_examples: int) -> settings:
    """Reproducible settings: derandomized, no deadline, no example database; ``max_examples`` x SCALE."""
    return settings(
        max_examples=max(1, round(max_examples * SCALE)),
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=False,
        suppress_health_check=list(HealthCheck),
    )


#: seconds spent in the fuzz tests themselves (setup, call and teardown), whatever else the session runs
_SECONDS = [0.0]


def pytest_terminal_summary(terminalreporter: object) -> None:
    total = sum(H.COUNTS.values())
    if total:
        seconds = _SECONDS[0]
        terminalreporter.write_line(  # type: ignore[attr-defined]
            f"fuzz: {total} cases ({H.COUNTS['in-process']} in-process, {H.COUNTS['subprocess']} subprocesses) "
            f"in {seconds:.0f} s"
        )


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "tests/fuzz" in report.nodeid:
        _SECONDS[0] += report.duration
    log = os.environ.get("EPOCHPILOT_FUZZ_LOG")
    if log and report.failed and "tests/fuzz" in report.nodeid:
        text = str(report.longrepr)
        # the AssertionError raised by _harness.check starts with the problems, then the case
        start = text.find("AssertionError: ")
        body = text[start + 16 : start + 3000] if start >= 0 else text[-3000:]
        with open(log, "a") as fh:
            fh.write(f"### {report.nodeid} ({report.when})\n{body}\n\n")


# ----------------------------------------------------------------------------------------------- runs


def _train(root: Path, argv: list[str]) -> None:
    result = H.run_inproc(argv, root, timeout=300)
    if result.returncode != 0:
        raise RuntimeError("the fuzz suite's base run failed to train:\n" + result.describe())


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Session folder holding the base runs and their data."""
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="session")
def base(workspace: Path) -> Path:
    """A folder with ``tiny.csv``, ``wide.csv`` and two finished runs: ``runs/a`` (3 features, 2 classes,
    hidden [128, 64]) and ``runs/b`` (4 features, 3 classes, hidden [16]: its files do not fit run a).
    Built once per session; cases copy it (:func:`copy_base`)."""
    root = workspace / "base"
    root.mkdir()
    (root / "tiny.csv").write_text(S.good_csv_text(60))
    (root / "wide.csv").write_text(
        S.to_csv(["a", "b", "c", "d", S.TARGET], S.good_rows(60, classes=3, width=4, seed=7))
    )
    (root / "b.toml").write_text(
        S.toml_text(
            {
                "data": {"csv": "wide.csv", "target": S.TARGET},
                "model": {"hidden": [16]},
                "train": {"max_epochs": 3, "batch_size": 16, "tensorboard": False},
                "run": {"dir": "runs/b"},
            }
        )
    )
    _train(
        root,
        [
            "train",
            "--data",
            "tiny.csv",
            "--target",
            S.TARGET,
            "--max-epochs",
            "3",
            "--batch-size",
            "16",
            "--no-tensorboard",
            "--run-dir",
            "runs/a",
        ],
    )
    _train(root, ["train", "b.toml"])
    (root / "b.toml").unlink()
    return root


@pytest.fixture
def new_case(base: Path, workspace: Path) -> Iterator[object]:
    """new_case(with_runs=True) -> a Case in a fresh scratch folder holding a copy of ``base``; every scratch
    folder of the test is removed afterwards (hypothesis calls it once per example)."""
    made: list[Path] = []

    def make(with_runs: bool = True) -> H.Case:
        while made:  # the previous example's folder is done with
            shutil.rmtree(made.pop(), ignore_errors=True)
        root = Path(tempfile.mkdtemp(prefix="case-", dir=workspace))
        made.append(root)
        if with_runs:
            shutil.copytree(base, root, dirs_exist_ok=True)
        else:
            shutil.copy(base / "tiny.csv", root / "tiny.csv")
        return H.Case(root)

    yield make
    for root in made:
        shutil.rmtree(root, ignore_errors=True)

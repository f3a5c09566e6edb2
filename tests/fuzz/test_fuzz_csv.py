"""Broken CSVs (encodings, binary, ragged, empty, duplicate columns, inf/NaN, 20,000 columns, junk cells)
against every command that reads one; and ``--overwrite`` with a broken CSV never loses the old run."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from . import _harness as H
from . import strategies as S
from .conftest import fuzz_settings

T = S.TARGET
FAST = ["--max-epochs", "2", "--batch-size", "8", "--no-tensorboard"]

#: command -> (argv for a CSV path, generated examples)
COMMANDS = {
    "train": (lambda f: ["train", "--data", f, "--target", T, *FAST, "--run-dir", "runs/new"], 30),
    "audit": (lambda f: ["audit", f, "--target", T], 40),
    "plan": (lambda f: ["plan", f, "--target", T], 40),
    "predict": (lambda f: ["predict", "runs/a", "--data", f], 40),
    "evaluate": (lambda f: ["evaluate", "runs/a", "--data", f], 30),
    "cv": (
        lambda f: ["cv", "--data", f, "--target", T, *FAST, "--folds", "2", "--run-dir", "runs/cv"],
        10,
    ),
    "tune": (
        lambda f: [
            "tune",
            "--data",
            f,
            "--target",
            T,
            *FAST,
            "--trials",
            "1",
            "--run-dir",
            "runs/tu",
        ],
        6,
    ),
    "continue": (
        lambda f: ["continue", "runs/a", "--data", f, "--epochs", "1", "--out", "runs/a2"],
        12,
    ),
    "finetune": (
        lambda f: ["finetune", "--data", f, "--max-epochs", "1", "--run-dir", "runs/ft"],
        15,
    ),
}

file_names = st.sampled_from(["bad.csv", "bad.csv", "my data.csv", "donn\u00e9es.csv", "noext"])


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_broken_csv(new_case, command: str) -> None:
    """Every command reading a CSV answers a broken one with exit 0 or one error line, and changes nothing."""
    argv_for, examples = COMMANDS[command]

    @fuzz_settings(examples)
    @given(csv=S.broken_csv, name=file_names)
    def test(csv, name) -> None:
        case = new_case()
        description, payload = csv
        (case.root / name).write_bytes(payload)
        case.snapshot()
        case.run(argv_for(name), note=f"{name}: {description}", names=[name, "--"])

    H.UNNAMED.clear()
    test()
    H.raise_unnamed()


OVERWRITE = {
    "train": ["train", "--data", "{f}", "--target", T, *FAST, "--run-dir", "runs/a", "--overwrite"],
    "cv": [
        "cv",
        "--data",
        "{f}",
        "--target",
        T,
        *FAST,
        "--folds",
        "2",
        "--run-dir",
        "runs/a",
        "--overwrite",
    ],
    "tune": [
        "tune",
        "--data",
        "{f}",
        "--target",
        T,
        *FAST,
        "--trials",
        "1",
        "--run-dir",
        "runs/a",
        "--overwrite",
    ],
}


@pytest.mark.parametrize("command", sorted(OVERWRITE))
def test_overwrite_with_broken_csv_keeps_the_run(new_case, command: str) -> None:
    """``--overwrite`` onto a good run with a CSV that is refused leaves the old run byte-identical."""

    @fuzz_settings(8)
    @given(csv=S.broken_csv)
    def test(csv) -> None:
        case = new_case()
        description, payload = csv
        (case.root / "bad.csv").write_bytes(payload)
        case.snapshot()
        argv = [a.replace("{f}", "bad.csv") for a in OVERWRITE[command]]
        case.run(argv, note=description, may_change=H.under("runs/a"), names=["bad.csv", "--"])

    H.UNNAMED.clear()
    test()
    H.raise_unnamed()

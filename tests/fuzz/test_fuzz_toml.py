"""Job files: wrong types, unknown keys and sections, out-of-range values, syntax errors; and tune's space file."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from . import _harness as H
from . import strategies as S
from .conftest import fuzz_settings

#: command -> (extra arguments, generated examples)
COMMANDS = {"train": ([], 40), "cv": (["--folds", "2"], 10), "tune": (["--trials", "1"], 6)}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_job_values(new_case, command: str) -> None:
    """Fuzzed entries in a job file: exit 0 or 2; an error names the key, its section or the file."""
    extra, examples = COMMANDS[command]

    @fuzz_settings(examples)
    @given(job=S.job_toml("tiny.csv", "runs/toml"))
    def test(job: tuple[str, str, list[str]]) -> None:
        description, text, names = job
        case = new_case(with_runs=False)
        (case.root / "job.toml").write_text(text)
        case.snapshot()
        case.run(
            [command, "job.toml", *extra],
            note=f"job.toml: {description}",
            names=[*names, "job.toml"],
        )

    H.UNNAMED.clear()
    test()
    H.raise_unnamed()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_job_syntax(new_case, command: str) -> None:
    """A job file that is not TOML: exit 2, one line naming the file."""

    @fuzz_settings(10 if command == "train" else 4)
    @given(job=S.broken_toml("tiny.csv"))
    def test(job: tuple[str, str]) -> None:
        kind, text = job
        case = new_case(with_runs=False)
        (case.root / "job.toml").write_bytes(text.encode("utf-8", "surrogatepass"))
        case.snapshot()
        case.run(
            [command, "job.toml"],
            note=f"job.toml {kind}: {text[:200]!r}",
            codes=frozenset({2}),
            names=["job.toml"],
        )

    H.UNNAMED.clear()
    test()
    H.raise_unnamed()


space_lines = st.one_of(
    S.broken_toml("tiny.csv").map(lambda kt: kt[1]),
    st.sampled_from(
        [
            'lr = ["float", 1e-4, 1e-1, "log"]',
            'lr = ["float", 1e-1, 1e-4]',
            'lr = ["float"]',
            'lr = ["bogus", 1, 2]',
            'nosuchkey = ["int", 1, 3]',
            'batch_size = ["int", -5, 0]',
            'batch_size = ["categorical"]',
            'lr = "float:1e-4:1e-1"',
            "lr = 5",
            'lr = ["float", nan, inf]',
            "[lr]\nkind = 'float'",
            'max_epochs = ["int", 1, 100000000000]',
            "",
        ]
    ),
)


def test_space_file(new_case) -> None:
    """``tune --space-file`` with broken or odd spaces: exit 0 or 2, one line."""

    @fuzz_settings(12)
    @given(text=space_lines)
    def test(text: str) -> None:
        case = new_case(with_runs=False)
        (case.root / "space.toml").write_bytes(text.encode("utf-8", "surrogatepass"))
        case.snapshot()
        argv = [
            "tune",
            "--data",
            "tiny.csv",
            "--target",
            "label",
            "--max-epochs",
            "2",
            "--trials",
            "1",
            "--no-tensorboard",
            "--space-file",
            "space.toml",
        ]
        case.run(
            argv,
            note=f"space.toml: {text[:200]!r}",
            names=["space.toml", "--space", "lr", "batch_size"],
        )

    H.UNNAMED.clear()
    test()
    H.raise_unnamed()

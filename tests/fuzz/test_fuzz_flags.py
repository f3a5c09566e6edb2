"""Flag values for every subcommand, read from the CLI's own parser (a new flag is fuzzed without a change here).

Two tests per command: values of the flag's type (edge numbers, paths that are missing, folders, files, too
long, a folder holding the user's own files) and values of the wrong type (argparse's own refusal, which must be
short too).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from epochpilot.cli.main import COMMANDS, build_parser

from . import _harness as H
from . import strategies as S
from .conftest import fuzz_settings

#: Flags whose large values only cost time (a long but valid budget): drawn from these values instead.
LIMITED = {
    "--max-epochs": [-5, -1, 0, 1, 2],
    "--max-steps": [-1, 0, 1, 3],
    "--epochs": [-1, 0, 1, 2],
    "--trials": [-1, 0, 1],
    "--folds": [-1, 0, 1, 2, 3],
    "--workers": [-1, 0, 1],
    "--n-samples": [-1, 0, 1, 2, 10, 300],
    "--n-train": [-1, 0, 1, 5],
    "--n-general": [-1, 0, 1, 5],
    "--general-epochs": [-1, 0, 1],
    "--steps": [-(2**63), -1, 0, 1, 2, 7, 1000, 10**5, 300_000_000, 2**63],
    "--timeout": ["-1", "0", "nan", "inf", "0.5", "5"],
    "--max-time": [
        "",
        "0",
        "-5",
        "0s",
        "1s",
        "2s",
        "1e9s",
        "nan",
        "inf",
        "abc",
        "10min",
        "3h",
        "-1min",
    ],
}

#: Files and folders every case starts with (besides the base runs a and b, tiny.csv and wide.csv).
PATHS_IN = [
    "tiny.csv",
    "wide.csv",
    "missing.csv",
    "nodir/x.csv",
    "runs",
    "userdir",
    "userdir/notes.txt",
    "",
    ".",
    "x" * 300 + ".csv",
    "/dev/null",
    "tiny.csv/x",
    "job.toml",
    "runs/a/model.pt",
]
PATHS_OUT = [
    "out.csv",
    "existing.txt",
    "nodir/out.csv",
    "userdir",
    "userdir/notes.txt",
    "runs/a",
    "",
    ".",
    "y" * 300,
    "tiny.csv/x",
    "/dev/full",
    "/proc/version",
    "runs/a/report.html",
]
RUN_DIRS = [
    "runs/a",
    "runs/b",
    "runs/a",
    "runs/new",
    "missing",
    "tiny.csv",
    "userdir",
    "",
    ".",
    "runs",
    "runs/a/checkpoints",
]
#: Flags that name something written (a file or a run directory).
OUTPUTS = {"--out", "--plot", "--json", "--run-dir", "--storage"}

POSITIONALS: dict[str, dict[str, list[str | None]]] = {
    "audit": {"file": PATHS_IN},
    "plan": {
        "source": [
            "tiny.csv",
            "digits",
            "wine",
            "mnist1d",
            "1000",
            "-5",
            "0",
            "missing.csv",
            "userdir",
            "",
        ]
    },
    "train": {
        "config": [
            None,
            None,
            None,
            "job.toml",
            "tiny.csv",
            "missing.toml",
            "runs",
            "userdir/notes.txt",
        ]
    },
    "predict": {"run_dir": RUN_DIRS},
    "evaluate": {"run_dir": RUN_DIRS},
    "resume": {"run_dir": RUN_DIRS},
    "report": {"run_dir": RUN_DIRS},
    "continue": {"run_dir": RUN_DIRS},
    "schedule": {
        "spec": [
            "cosine",
            "warmup(cosine)",
            "onecycle",
            "constant",
            "linear",
            "step",
            "exponential",
            "wsd",
            "warmup(warmup(cosine))",
            "warmup(",
            "cosine)",
            "bogus",
            "",
            "warmup()",
            "step(0.5)",
        ],
    },
}
POSITIONALS["cv"] = POSITIONALS["tune"] = POSITIONALS["train"]

#: Arguments every case of the command gets, so that most cases get past "nothing to do" (fuzzed flags may
#: still replace them: argparse keeps the last value).
BASE = {
    "train": ["--data", "tiny.csv", "--target", "label", "--max-epochs", "2", "--no-tensorboard"],
    "cv": [
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
    ],
    "tune": [
        "--data",
        "tiny.csv",
        "--target",
        "label",
        "--max-epochs",
        "2",
        "--trials",
        "1",
        "--no-tensorboard",
    ],
    "demo": ["--max-epochs", "1"],
    "predict": ["--data", "tiny.csv"],
    "evaluate": ["--data", "tiny.csv"],
    "continue": ["--data", "tiny.csv", "--epochs", "1"],
    "schedule": ["--steps", "100"],
    "finetune": [
        "--data",
        "tiny.csv",
        "--max-epochs",
        "1",
    ],  # tiny.csv has no text column: never trains
}
EXAMPLES = {
    "train": 20,
    "cv": 12,
    "tune": 8,
    "demo": 6,
    "finetune": 15,
    "continue": 15,
    "resume": 15,
}
NEVER = {
    "--fortunes",
    "--general-fortunes",
}  # fortune files are absent here; drawn from junk names below


def subparser(command: str) -> argparse.ArgumentParser:
    """The parser of one subcommand."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def _values(action: argparse.Action, flag: str, command: str) -> st.SearchStrategy[list[str]]:
    """Typed values for one option (a list: nargs may take several)."""
    if command == "finetune" and flag == "--text-column":
        one = st.sampled_from(["nosuch", "", "text"])  # a real text column would fine-tune for 20 s
    elif flag in LIMITED:
        one = st.sampled_from(LIMITED[flag]).map(str)
    elif flag in NEVER:
        one = st.sampled_from(["nosuchcategory", "", "../etc"])
    elif action.choices:
        one = st.one_of(
            st.sampled_from(sorted(map(str, action.choices))), st.sampled_from(["", "Nope"])
        )
    elif action.type is int:
        one = S.int_values.map(str)
    elif action.type is float:
        one = S.float_values
    elif flag in OUTPUTS:
        one = st.sampled_from(PATHS_OUT)
    elif action.type is not None or flag in (
        "--data",
        "--space-file",
        "--general-data",
        "--val",
        "--test",
    ):
        one = st.sampled_from(PATHS_IN)
    else:
        one = S.text_values
    if action.nargs in ("+", "*"):
        return st.lists(one, min_size=1 if action.nargs == "+" else 0, max_size=3)
    if action.nargs == "?":
        return st.one_of(st.just([]), one.map(lambda v: [v]))
    return one.map(lambda v: [v])


@st.composite
def argv_for(draw: st.DrawFn, command: str) -> list[str]:
    """One command line: the command's base arguments, positionals from pools, a few fuzzed options."""
    parser = subparser(command)
    argv = [command, *BASE.get(command, [])]
    options = [a for a in parser._actions if a.option_strings and a.dest not in ("help", "debug")]
    chosen = (
        draw(st.lists(st.sampled_from(options), max_size=4, unique_by=lambda a: a.dest))
        if options
        else []
    )
    for action in chosen:
        flag = max(action.option_strings, key=len)
        if action.nargs == 0:
            argv.append(flag)
        else:
            argv += [flag, *draw(_values(action, flag, command))]
    tail: list[str] = []
    for action in parser._actions:
        if action.option_strings:
            continue
        pool = POSITIONALS.get(command, {}).get(action.dest)
        if command == "compare":
            tail += draw(st.lists(st.sampled_from(RUN_DIRS), min_size=1, max_size=3))
        elif pool is not None:
            value = draw(st.sampled_from(pool))
            if value is not None:
                tail.append(value)
    # "--" keeps a positional that looks like an option ("-5") a positional
    return argv + (["--", *tail] if any(t.startswith("-") for t in tail) else tail)


def _setup(case: H.Case) -> None:
    (case.root / "userdir").mkdir()
    (case.root / "userdir" / "notes.txt").write_text("the user's own notes: never delete\n")
    (case.root / "existing.txt").write_text("an existing file\n")
    (case.root / "job.toml").write_text(
        S.toml_text({"data": {"csv": "tiny.csv", "target": "label"}, "train": {"max_epochs": 2}})
    )


def may_change(argv: list[str]) -> Callable[[str], bool]:
    """What a successful command may rewrite: its output files, the run it resumes/replaces/reports."""
    allowed: list[str] = []
    for flag, value in zip(argv, argv[1:]):
        if flag in ("--out", "--plot", "--json", "--storage"):
            allowed.append(value)
        if flag == "--run-dir" and value in ("runs/a", "runs/b"):
            allowed.append(value)  # an epochpilot run: --overwrite / --resume / demo may replace it
    command = argv[0]
    runs = [a for a in argv[1:] if a.startswith("runs/")]
    if command in ("resume", "report") or (
        command in ("train", "cv", "tune") and "--resume" in argv
    ):
        allowed += runs
    if command == "continue" and "--out" not in argv:
        allowed += [r.rstrip("/") + "-continued" for r in runs]
    if command == "continue" and "--overwrite" in argv:
        allowed += [argv[argv.index("--out") + 1]] if "--out" in argv[:-1] else []
    return H.under(*[a for a in allowed if a not in ("", ".")])


@pytest.mark.parametrize("command", COMMANDS)
def test_flag_values(new_case, command: str) -> None:
    """Typed flag values: exit 0 or 2, one short error line, no traceback, nothing the user owns changed."""

    @fuzz_settings(EXAMPLES.get(command, 25))
    @given(argv=argv_for(command))
    def test(argv: list[str]) -> None:
        case = new_case()
        _setup(case)
        case.snapshot()
        names = [a for a in argv[1:] if a != "--"] + ["arguments are required"]
        case.run(argv, note="typed flag values", may_change=may_change(argv), names=names)

    H.UNNAMED.clear()
    test()
    H.raise_unnamed()


@st.composite
def wrong_type(draw: st.DrawFn, command: str) -> list[str]:
    """The command's base line with one typed option given a value argparse refuses."""
    parser = subparser(command)
    typed = [
        a for a in parser._actions if a.option_strings and (a.type in (int, float) or a.choices)
    ]
    if not typed:
        return [command, "--no-such-flag"]
    action = draw(st.sampled_from(typed))
    bad = draw(st.sampled_from(["abc", "1.5.2", "", "0x10", "1e", "--", "\u00e9", "Nope"]))
    if action.type is float and bad in ("0x10",):
        bad = "abc"
    flag = max(action.option_strings, key=len)
    return [command, *BASE.get(command, []), f"{flag}={bad}"]


@pytest.mark.parametrize("command", COMMANDS)
def test_wrong_type(new_case, command: str) -> None:
    """A value of the wrong type or an unknown choice: exit 2 and at most 3 lines (argparse's own usage
    block included), naming the flag."""

    @fuzz_settings(6)
    @given(argv=wrong_type(command))
    def test(argv: list[str]) -> None:
        case = new_case(with_runs=False)
        case.snapshot()
        flag = argv[-1].split("=")[0]
        case.run(
            argv, note="a value argparse refuses", codes=frozenset({2}), names=[flag, "required"]
        )

    H.UNNAMED.clear()
    test()
    H.raise_unnamed()

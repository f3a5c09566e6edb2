"""``epochpilot --help``, ``--version`` and the user's mistakes are answered without torch or any framework.

Each command runs in a fresh interpreter that imports the CLI entry, runs it and reports which modules it
imported; its exit code and one-line message are the ones the command gave before it learned to answer early
(the texts below are copied from that version). No timing here: ``bench/cli_start.py`` measures.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from epochpilot.cli._precheck import check_csv, check_frame
from epochpilot.errors import DataError

ROOT = Path(__file__).resolve().parents[2]

#: What none of these paths may import.
FRAMEWORKS = (
    "torch",
    "lightning",
    "pytorch_lightning",
    "keras",
    "tensorflow",
    "jax",
    "transformers",
    "optuna",
    "sklearn",
    "matplotlib",
)
#: What the plain paths (help, version, flags, job file, CSV) do not import either.
DATA_LIBRARIES = ("numpy", "pandas", "scipy")

WRAPPER = """
import contextlib, io, json, sys
from epochpilot.cli import main
out, err = io.StringIO(), io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
top = sorted({name.split(".")[0] for name in sys.modules})
print(json.dumps({"code": code, "stdout": out.getvalue(), "stderr": err.getvalue(), "modules": top}))
"""


def heavy(result: dict, names: tuple[str, ...] = FRAMEWORKS) -> list[str]:
    """Which of ``names`` the run imported."""
    return sorted(set(result["modules"]) & set(names))


def start(cwd: Path, *argv: str) -> dict:
    """Run the CLI with ``argv`` in a fresh interpreter in ``cwd``: exit code, output and the top-level
    modules it imported."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """A folder of malformed job files and CSVs."""
    files = {
        "bad.csv": "a,b,y\n1,2,0\n3,4,1\n5,6,7,8\n",
        "good.csv": "a,b,label\n1,2,0\n3,4,1\n",
        "header.csv": "a,b,y\n",
        "dup.csv": "a,a,y\n1,2,3\n",
        "empty.csv": "",
        "onlytarget.csv": "y\n1\n2\n",
        "texts.csv": "text,label\nhello,a\n",
        "bad.toml": '[train]\nmax_epochs = "ten"\n',
        "syntax.toml": "[train\nmax_epochs = 3\n",
        "unknown.toml": "[train]\nmax_epoch = 3\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / "utf16.csv").write_bytes("a,y\n1,0\n".encode("utf-16"))
    (tmp_path / "folder").mkdir()
    return tmp_path


def _line(command: str, message: str) -> str:
    return f"epochpilot {command}: error: {message}"


NOT_A_RUN = "is not a run directory: give the directory 'epochpilot train' wrote"
PARSE = "cannot be parsed as CSV at line 4: expected 3 fields, saw 4: fix that line"
ERRORS = [
    # flags
    ("train --builtin wine --max-epochs ten", "--max-epochs must be an integer, got 'ten'"),
    (
        "train --builtin wine --max-epochs 0",
        "--max-epochs must be >= 1, got 0: train for at least one epoch",
    ),
    ("train --builtin wine --lr nan", "--lr must be a number > 0, got nan"),
    (
        "train --builtin wine --max-time abc",
        "--max-time must be a duration such as 90 (seconds), '90s', '10min' or '2h', got 'abc'",
    ),
    ("train --builtin wine --extend -1", "--extend must be a number >= 0, got -1"),
    (
        "train --builtin wine --stopper erly",
        "--stopper: invalid choice 'erly': did you mean 'early'?",
    ),
    (
        "train --builtin wine --bogus 3",
        "unrecognized arguments: --bogus (see 'epochpilot train --help')",
    ),
    ("train --data good.csv", "--data needs --target COLUMN: name the column to predict"),
    (
        "train --data good.csv --builtin wine --target label",
        "--data and --builtin are both given: keep one",
    ),
    (
        "train",
        "no data: give a CONFIG.toml, --data FILE.csv --target COLUMN, or --builtin NAME",
    ),
    # job files
    ("train nofile.toml", "nofile.toml: no such config file; check the path"),
    (
        "train syntax.toml",
        "syntax.toml: TOML syntax error: Expected ']' at the end of a table declaration "
        "(at line 1, column 7)",
    ),
    ("train bad.toml", "[train] max_epochs in bad.toml must be an integer, got 'ten'"),
    (
        "train unknown.toml",
        "unknown key 'max_epoch' in unknown.toml [train]: did you mean 'max_epochs'?",
    ),
    # data files
    ("train --data missing.csv --target y", "missing.csv: no such file; check the path"),
    ("train --data bad.csv --target y", f"bad.csv {PARSE}"),
    (
        "train --data good.csv --target lable",
        "good.csv has no target column 'lable': did you mean 'label'?",
    ),
    ("train --data header.csv --target y", "header.csv has a header but no data rows: add rows"),
    (
        "train --data dup.csv --target y",
        "dup.csv has duplicate column names 'a': give each column its own name",
    ),
    (
        "train --data empty.csv --target y",
        "empty.csv is empty: give a CSV with a header row and data rows",
    ),
    (
        "train --data utf16.csv --target y",
        "utf16.csv is UTF-16 text, not UTF-8: save it as UTF-8 CSV (in a spreadsheet: Save As > "
        "CSV UTF-8)",
    ),
    ("train --data folder --target y", "folder is a directory; give a CSV file"),
    (
        "train --data onlytarget.csv --target y",
        "onlytarget.csv has only the target column: add feature columns",
    ),
    # the other commands
    ("cv --data missing.csv --target y", "missing.csv: no such file; check the path"),
    ("cv --builtin wine --resume", "epochpilot cv cannot resume: re-run with --overwrite"),
    ("tune --data bad.csv --target y", f"bad.csv {PARSE}"),
    (
        "tune --builtin wine --space lr",
        "--space 'lr': write NAME=KIND:LOW:HIGH (e.g. lr=log:1e-4:1e-1) or NAME=choice:A,B",
    ),
    (
        "tune --builtin wine --space-file nope.toml",
        "--space-file nope.toml: no such space file; check the path",
    ),
    ("predict nowhere --data x.csv", f"nowhere {NOT_A_RUN}"),
    ("evaluate nowhere --data x.csv", f"nowhere {NOT_A_RUN}"),
    ("report nowhere", f"nowhere {NOT_A_RUN}"),
    ("resume nowhere", f"nowhere {NOT_A_RUN}"),
    ("compare good.csv nowhere", f"good.csv {NOT_A_RUN}"),
    (
        "continue nowhere --data x.csv",
        "nowhere is not a run directory written by 'epochpilot train' (no job.toml)",
    ),
    (
        "plan missing.csv",
        "'missing.csv' is neither a file, a built-in data set (digits, breast_cancer, wine, "
        "mnist1d, diabetes) nor a sample count",
    ),
    (
        "plan 0",
        "the sample count must be >= 1, got 0: give the number of training rows",
    ),
    ("plan bad.csv", f"bad.csv {PARSE}"),
    ("audit missing.csv", "missing.csv: no such file; check the path"),
    ("audit bad.csv", f"bad.csv {PARSE}"),
    ("finetune --data missing.csv", "--data missing.csv: no such file; check the path"),
    (
        "finetune --data texts.csv --target lab",
        "--data texts.csv has no column 'lab': set --target (columns: 'text', 'label')",
    ),
    (
        "finetune --fortunes a",
        "--fortunes needs at least two categories (they are the classes)",
    ),
]


@pytest.mark.parametrize("argv", ["--help", "--version", "train --help", "cv --help"])
def test_help_and_version_import_no_framework_nor_numpy(inputs, argv):
    result = start(inputs, *argv.split())
    assert result["code"] == 0 and result["stdout"].startswith(("usage: epochpilot", "epochpilot "))
    assert heavy(result, FRAMEWORKS + DATA_LIBRARIES) == []


def test_version_is_the_package_version(inputs):
    import epochpilot

    assert start(inputs, "--version")["stdout"].strip() == f"epochpilot {epochpilot.__version__}"


@pytest.mark.parametrize("argv, message", ERRORS, ids=[a for a, _ in ERRORS])
def test_mistakes_are_the_same_line_without_a_framework(inputs, argv, message):
    result = start(inputs, *argv.split())
    command = argv.split()[0]
    assert (result["code"], result["stderr"]) == (2, _line(command, message) + "\n")
    assert heavy(result) == []


@pytest.mark.parametrize(
    "argv",
    [
        "train --builtin wine --max-epochs 0",
        "train syntax.toml",
        "train bad.toml",
        "train --data missing.csv --target y",
        "train --data bad.csv --target y",
    ],
)
def test_the_common_mistakes_need_no_numpy_or_pandas_either(inputs, argv):
    assert heavy(start(inputs, *argv.split()), DATA_LIBRARIES) == []


# --- the early answers never change which error comes first -----------------------------------------------


def test_a_run_directory_refusal_still_comes_before_the_data(cli, tmp_path):
    """``train`` checks the run directory first: a folder of other files is refused before a missing CSV."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    result = cli("train", "--data", "missing.csv", "--target", "y", "--run-dir", "out")
    assert result.returncode == 2 and "is not empty and is not an epochpilot run directory" in (
        result.stderr
    )


def test_overwrite_with_resume_is_still_refused_first(cli):
    result = cli("train", "--data", "missing.csv", "--target", "y", "--overwrite", "--resume")
    assert result.returncode == 2
    assert "--overwrite and --resume contradict each other" in result.stderr


def test_a_run_dir_left_aside_is_settled_by_the_command_not_refused_early(tmp_path):
    from epochpilot.cli._precheck import check_run_dir_arg, fresh_run_dir

    (tmp_path / ".runs.epochpilot-old-123").mkdir()
    check_run_dir_arg(tmp_path / "runs")  # the command brings the old run back first
    assert not fresh_run_dir(tmp_path / "runs")
    assert fresh_run_dir(tmp_path / "other")
    assert not fresh_run_dir(tmp_path / "other", overwrite=True, resume=True)


# --- the CSV check agrees with pandas --------------------------------------------------------------------------


def _real_error(path: Path, target: str) -> str | None:
    from epochpilot.data.table import read_csv

    try:
        read_csv(path, target)
    except DataError as exc:
        return str(exc)
    return None


def _early_error(path: Path, target: str) -> str | None:
    try:
        check_csv(path, target)
    except DataError as exc:
        return str(exc)
    return None


CELLS = ["1", "2.5", "a", "", " ", "y", "x", '"q"', '"a,b"', '"e""f"', 'g"h', "\t", "#c", "y "]
ODD_CELLS = ['"c\nd"', "'", ";", '""', '" x"', ' "a,b"', "nan", "Y", "z"]


@pytest.mark.parametrize("odd", [False, True], ids=["plain", "odd"])
def test_every_early_csv_error_is_the_error_reading_it_gives(tmp_path, odd):
    """Generated CSVs (extra and missing fields, blank lines, quotes, an index column, CRLF; with ``odd``
    also line breaks inside quotes and old Mac line ends): whenever the early check refuses a file, reading
    it with pandas refuses it in the same words. Most plain files are decided early."""
    rng = random.Random(7 if odd else 3)
    cells = CELLS + ODD_CELLS if odd else CELLS
    ends = ["\n", "\r\n", "\r"] if odd else ["\n", "\r\n"]
    decided = 0
    n = 400
    for i in range(n):
        end, ncol = rng.choice(ends), rng.randint(1, 4)
        lines = [rng.choice(["", " ", "\t"]) for _ in range(rng.random() < 0.2)]
        lines.append(
            ",".join(rng.choice(["a", "b", "y", "c", "", '"y"', "x y"]) for _ in range(ncol))
        )
        for _ in range(rng.randint(0, 5)):
            if rng.random() < 0.15:
                lines.append(rng.choice(["", " ", "\t", " \t "]))
            else:
                k = max(1, ncol + rng.choice([0, 0, 0, 0, 1, 1, 2, -1]))
                lines.append(",".join(rng.choice(cells) for _ in range(k)))
        path = tmp_path / f"f{i}.csv"
        path.write_bytes((end.join(lines) + (end if rng.random() < 0.8 else "")).encode())
        target = rng.choice(["y", "a", "yy"])
        early = _early_error(path, target)
        if early is not None:
            decided += 1
            assert early == _real_error(path, target), path.read_bytes()
    assert decided > (0.3 if odd else 0.8) * n


@pytest.mark.parametrize(
    "data",
    [
        b"a,y\n1,\xff\n",  # not UTF-8: pandas names the byte its own way
        b'a,y\n"1\n2",0\n3,4,5\n',  # a line break inside quotes: pandas numbers lines its own way
        b"a,y\r1,0\r2,3,4\r",  # old Mac line ends
        b"\xef\xbb\xbfa,y\n1,0\n",  # a UTF-8 byte-order mark
        b"\t,\t\n1,2\n",  # a header of blanks, renamed by pandas
    ],
)
def test_files_only_pandas_can_judge_are_left_to_it(tmp_path, data):
    path = tmp_path / "x.csv"
    path.write_bytes(data)
    check_csv(path, "y")  # no early answer: the command reads the file as before


def test_a_file_over_the_limit_gets_only_the_path_and_head_checks(tmp_path):
    path = tmp_path / "big.csv"
    path.write_bytes(b"a,y\n" + b"1,0\n" * 10 + b"1,2,3,4\n")
    check_csv(path, "y", limit=20)
    with pytest.raises(DataError, match="expected 2 fields, saw 4"):
        check_csv(path, "y")
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="binary file"):
        check_frame(path, "--data", limit=20)


def test_the_early_names_match_the_data_module():
    """The choices repeated in ``_jobcheck`` (so that a job file is checked without pandas) are the data
    module's, and the default schedule, which is not parsed when checked, parses."""
    from epochpilot.core.schedules import parse
    from epochpilot.data import table as data
    from epochpilot.jobs import check as _jobcheck
    from epochpilot.jobs.spec import TrainSpec

    assert (_jobcheck.BUILTINS, _jobcheck.IMPUTE, _jobcheck.TASKS) == (
        data.BUILTINS,
        data.IMPUTE,
        data.TASKS,
    )
    default = next(f.default for f in dataclasses.fields(TrainSpec) if f.name == "schedule")
    parse(default, lr=1e-3, total_steps=1000)


def test_a_bad_schedule_is_still_refused(cli):
    result = cli("train", "--builtin", "wine", "--schedule", "bogus")
    assert result.returncode == 2 and "--schedule is not usable: unknown schedule 'bogus'" in (
        result.stderr
    )


# --- the package itself -------------------------------------------------------------------------------------


def test_import_epochpilot_imports_nothing_heavy_and_names_load_on_use():
    code = (
        "import sys, epochpilot;"
        "assert not {'numpy', 'torch', 'pandas'} & set(sys.modules), sorted(sys.modules);"
        "from epochpilot import EarlyStopping, budget;"
        "assert 'torch' not in sys.modules;"
        "assert epochpilot.core.stopping.EarlyStopping is EarlyStopping;"  # submodules as attributes, as before
        "assert epochpilot.core.budget is budget and 'fit' in dir(epochpilot);"
        "import epochpilot as e; assert not hasattr(e, 'no_such_name')"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )

"""One clear line for every mistake: the flag or key as the user wrote it, the file, the fix; exit code 2 for
the user's mistakes, 1 plus a pointer to ``--debug`` for what is not; no hang on a long schedule."""

from __future__ import annotations

import errno
import json
import time
from pathlib import Path

import pytest
import torch

import epochpilot.cli.schedule as schedule_cli
from epochpilot.cli.main import MAX_LINE, cap, classify
from epochpilot.errors import DataError

WINE = ["--builtin", "wine", "--no-tensorboard"]


def one_line(proc, code: int = 2) -> str:
    """The single stderr line of a refused command (asserting the exit code, no traceback)."""
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def files_in(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# --- zero epochs: refused by every command that trains, before anything is written -----------------------------

ZERO_EPOCHS = {
    "train": ["train", *WINE, "--max-epochs", "0"],
    "cv": ["cv", *WINE, "--max-epochs", "0"],
    "tune": ["tune", *WINE, "--max-epochs", "0", "--trials", "1"],
    "finetune": ["finetune", "--data", "x.csv", "--max-epochs", "0"],
    "continue": ["continue", "runs/wine", "--data", "x.csv", "--epochs", "0"],
    "demo": ["demo", "--max-epochs", "0"],
}


@pytest.mark.parametrize("command", sorted(ZERO_EPOCHS))
def test_zero_epochs_is_refused_naming_the_flag(cli, tmp_path, command):
    argv = ZERO_EPOCHS[command]
    flag = "--epochs" if command == "continue" else "--max-epochs"
    line = one_line(cli(*argv))
    assert f"{flag} must be >= 1, got 0" in line, line
    assert files_in(tmp_path) == set()  # nothing trained, nothing written


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train", *WINE, "--max-epochs", "-5"], "--max-epochs must be >= 1, got -5"),
        (["train", *WINE, "--max-epochs", "ten"], "--max-epochs must be an integer, got 'ten'"),
        (["train", *WINE, "--lr", "nan"], "--lr must be a number > 0, got nan"),
        (["train", *WINE, "--lr", "-0.1"], "--lr must be a number > 0, got -0.1"),
        (["train", *WINE, "--val-fraction", "1.5"], "--val-fraction must be in (0, 1), got 1.5"),
        (["train", *WINE, "--patience", "-1"], "--patience must be >= 0, got -1"),
        (["cv", *WINE, "--folds", "1"], "--folds must be >= 2, got 1"),
        (["plan", "1000", "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (["plan", "1000", "--world-size", "0"], "--world-size must be >= 1, got 0"),
        (["plan", "0"], "error: the sample count must be >= 1, got 0"),
        (["schedule", "cosine", "--steps", "0"], "--steps must be >= 1, got 0"),
        (["train", *WINE, "--stopper", "erly"], "did you mean 'early'?"),
        (["trian"], "did you mean 'train'?"),
        (["train", *WINE, "--bogus"], "epochpilot train: error: unrecognized arguments: --bogus"),
    ],
)
def test_flag_values_are_named_as_typed(cli, tmp_path, argv, expected):
    assert expected in one_line(cli(*argv))
    assert files_in(tmp_path) == set()


def test_flag_and_spec_checks_agree_on_values_the_parser_lets_through(cli, tmp_path):
    """Values only the job spec can judge (a test share that leaves no training rows) name the flag too."""
    line = one_line(cli("train", *WINE, "--val-fraction", "0.5", "--test-fraction", "0.6"))
    assert line.startswith(
        "epochpilot train: error: --test-fraction must be in [0, 1 - val_fraction)"
    )
    assert not (tmp_path / "runs").exists()


# --- the job file: the key as written, the file, the line -----------------------------------------------------


@pytest.mark.parametrize(
    "train, expected",
    [
        ('max_epochs = "ten"', "[train] max_epochs in job.toml must be an integer, got 'ten'"),
        ("max_epochs = 0", "[train] max_epochs in job.toml must be >= 1, got 0"),
        ("lr = -1", "[train] lr in job.toml must be a finite number > 0, got -1"),
        (
            'deterministic = "yes"',
            "[train] deterministic in job.toml must be true or false, got 'yes'",
        ),
        (
            'schedule = "cosin"',
            "[train] schedule in job.toml is not usable: unknown schedule 'cosin'",
        ),
        ('max_time = "soon"', "[train] max_time in job.toml must be a duration"),
        (
            'optimizer = "adamm"',
            "[train] optimizer in job.toml must be one of 'adam', 'adamw', 'sgd'",
        ),
    ],
)
def test_toml_values_name_the_key_and_the_file(cli, tmp_path, train, expected):
    (tmp_path / "job.toml").write_text(f'[data]\nbuiltin = "wine"\n[train]\n{train}\n')
    assert expected in one_line(cli("train", "job.toml"))
    assert not (tmp_path / "runs").exists()


def test_toml_data_values_and_a_flag_overriding_a_bad_key(cli, tmp_path):
    (tmp_path / "job.toml").write_text('[data]\nbuiltin = "wine"\nval_fraction = 2\n')
    assert "[data] val_fraction in job.toml must be in (0, 1), got 2" in one_line(
        cli("train", "job.toml")
    )
    (tmp_path / "ok.toml").write_text('[data]\nbuiltin = "wine"\n[train]\nmax_epochs = 3\n')
    assert "--max-epochs must be >= 1, got 0" in one_line(
        cli("train", "ok.toml", "--max-epochs", "0")
    )


def test_toml_syntax_error_and_encoding_name_the_file(cli, tmp_path):
    (tmp_path / "bad.toml").write_text('[data]\nbuiltin = "wine"\n[train]\nlr = = 3\n')
    line = one_line(cli("train", "bad.toml"))
    assert "bad.toml" in line and "line 4" in line
    (tmp_path / "u16.toml").write_text('[data]\nbuiltin = "wine"\n', encoding="utf-16")
    line = one_line(cli("train", "u16.toml"))
    assert "u16.toml is not UTF-8 text" in line and "save the job file as UTF-8" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_device_without_cuda_is_refused_before_the_run_directory(cli, tmp_path):
    (tmp_path / "job.toml").write_text('[data]\nbuiltin = "wine"\n[train]\ndevice = "cuda"\n')
    line = one_line(cli("train", "job.toml", "--run-dir", "runs/gpu"))
    assert (
        "[train] device in job.toml is 'cuda' but this machine has no CUDA: use device = \"cpu\""
        in line
    )
    assert not (tmp_path / "runs").exists()


# --- what is not the user's fault: one line, exit 1, --debug for the traceback -------------------------------


def _raise(exc: BaseException):
    def run(args):
        raise exc

    return run


def test_a_bug_is_one_line_with_the_debug_hint(cli, monkeypatch):
    monkeypatch.setattr(schedule_cli, "run", _raise(RuntimeError("boom")))
    line = one_line(cli("schedule", "cosine", "--steps", "10"), code=1)
    assert line == (
        "epochpilot schedule: internal error: RuntimeError: boom (run with --debug for the traceback)"
    )


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback_before_or_after_the_subcommand(cli, monkeypatch, where):
    monkeypatch.setattr(schedule_cli, "run", _raise(RuntimeError("boom")))
    argv = ["schedule", "cosine", "--steps", "10"]
    argv = ["--debug", *argv] if where == "before" else [*argv, "--debug"]
    with pytest.raises(RuntimeError, match="boom"):
        cli(*argv)


def test_type_errors_are_user_errors_only_when_epochpilot_raised_them():
    def bug():
        return None + 1  # type: ignore[operator]

    try:
        bug()
    except TypeError as exc:
        code, line = classify(exc)
    assert code == 1 and "TypeError: unsupported operand" in line and "--debug" in line
    from epochpilot.core.budget import total_steps

    try:
        total_steps(100, 10, "3")  # type: ignore[arg-type]
    except TypeError as exc:
        assert classify(exc) == (2, "epochs must be an int, got str '3'")


@pytest.mark.parametrize(
    "code, fix",
    [
        (errno.ENOSPC, "free some disk space"),
        (errno.EROFS, "read-only"),
        (errno.ENAMETOOLONG, "shorter file name"),
        (errno.EACCES, "choose a folder you can write to"),
        (errno.ENOENT, "check the path"),
    ],
)
def test_os_errors_about_paths_name_the_path_and_the_fix(cli, monkeypatch, code, fix):
    exc = OSError(code, errno.errorcode[code], "/data/out/model.csv")
    monkeypatch.setattr(schedule_cli, "run", _raise(exc))
    line = one_line(cli("schedule", "cosine", "--steps", "10"))
    assert "'/data/out/model.csv'" in line and fix in line


def test_other_os_errors_are_internal(cli, monkeypatch):
    monkeypatch.setattr(schedule_cli, "run", _raise(OSError(errno.EIO, "Input/output error")))
    assert "internal error: OSError" in one_line(cli("schedule", "cosine", "--steps", "10"), code=1)


def test_long_messages_are_capped_keeping_the_fix(cli, monkeypatch):
    monkeypatch.setattr(schedule_cli, "run", _raise(DataError("x" * 20_000 + " : do this")))
    line = one_line(cli("schedule", "cosine", "--steps", "10"))
    assert len(line) <= MAX_LINE + 40 and line.endswith(": do this")
    assert cap("short") == "short"


def test_twenty_thousand_columns_give_a_short_line(cli, tmp_path):
    header = ",".join(f"c{i}" for i in range(20_000))
    (tmp_path / "wide.csv").write_text(header + "\n" + ",".join(["1"] * 20_000) + "\n")
    line = one_line(cli("train", "--data", "wide.csv", "--target", "zzz_none", "--no-tensorboard"))
    assert "... and 19,995 more" in line and len(line) < 300


# --- schedules: any length returns at once --------------------------------------------------------------------


def test_schedule_with_300_million_steps_returns_at_once(cli_process, tmp_path):
    start = time.perf_counter()
    proc = cli_process(
        "schedule", "warmup(cosine)", "--steps", "300000000", "--plot", "lr.png", timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert time.perf_counter() - start < 60
    assert "peak lr 0.001 at step 15000000" in proc.stdout  # the warmup's end, found exactly
    assert "step 299999999: lr" in proc.stdout
    assert (tmp_path / "lr.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "spec", ["warmup(cosine)", "onecycle", "constant", "step", "warmup(linear)"]
)
def test_sampled_peak_matches_every_step(spec):
    from epochpilot.core.schedules import parse, peak, presets, sample, simulate

    schedule = parse(spec, lr=0.1, total_steps=250_003)
    lrs = simulate(schedule, 250_003)
    best = max(range(len(lrs)), key=lrs.__getitem__)
    assert presets.EXACT_STEPS < 250_003  # the zooming search, not the full scan
    assert peak(schedule, 250_003) == (best, lrs[best])
    xs, ys = sample(schedule, 250_003, points=500)
    assert len(xs) <= 501 and xs[0] == 0 and xs[-1] == 250_002 and best in xs
    assert ys == [lrs[x] for x in xs]


def test_schedule_warmup_flags_are_named(cli, tmp_path):
    assert "--warmup-steps must be < --steps (10), got 10" in one_line(
        cli("schedule", "warmup(cosine)", "--steps", "10", "--warmup-steps", "10")
    )
    assert "--warmup-steps needs a warmup spec: write 'warmup(cosine)'" in one_line(
        cli("schedule", "cosine", "--steps", "10", "--warmup-steps", "3")
    )
    (tmp_path / "afile").write_text("mine")
    line = one_line(cli("schedule", "cosine", "--steps", "10", "--plot", "afile/sub/lr.png"))
    assert line.startswith(
        "epochpilot schedule: error: --plot 'afile/sub/lr.png': cannot write there"
    )
    assert (tmp_path / "afile").read_text() == "mine"


def test_plan_json_into_a_missing_folder_is_refused_before_the_work(cli, tmp_path):
    proc = cli("plan", "1000", "--json", "nodir/plan.json")
    assert proc.returncode == 2 and "--json" in proc.stderr and "nodir/plan.json" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


# --- run directories read by report / compare -----------------------------------------------------------------


def _run(path: Path, history: bytes | None = None) -> Path:
    path.mkdir(parents=True)
    rows = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e + 0.01 * e} for e in range(1, 9)]
    text = "".join(json.dumps(r) + "\n" for r in rows).encode()
    (path / "history.jsonl").write_bytes(text if history is None else history)
    return path


def test_report_on_a_binary_history_names_the_file(cli, tmp_path):
    _run(tmp_path / "r", b"\xff\xfe\x00garbage\x00\x81")
    line = one_line(cli("report", "r"))
    assert "history.jsonl is not UTF-8 text" in line


def test_report_on_a_bad_epoch_names_the_file_and_line(cli, tmp_path):
    _run(
        tmp_path / "r",
        b'{"epoch": 1, "val_loss": 1}\n{"epoch": "x", "val_loss": 1}\n{"epoch": 3}\n',
    )
    line = one_line(cli("report", "r"))
    assert "history.jsonl line 2: 'epoch' must be a whole number, got 'x'" in line


@pytest.mark.parametrize(
    "name, content, says",
    [
        ("summary.json", b"{not json", "summary.json is not valid JSON"),
        ("summary.json", b"\xff\xfe\x00\x01", "summary.json is not valid JSON"),
        (
            "summary.json",
            b'{"best_epoch": "three", "elapsed_s": "long"}',
            "'best_epoch' has the wrong type",
        ),
        ("config.toml", b"\xff\xfe\x00\x01", "config.toml is not UTF-8 text"),
        ("config.toml", b"a = = 1", "config.toml does not parse"),
    ],
)
def test_report_warns_about_a_bad_side_file_and_still_writes(
    cli, tmp_path, caplog, name, content, says
):
    run = _run(tmp_path / "r")
    (run / name).write_bytes(content)
    proc = cli("report", "r")  # the CLI logs warnings to stderr; under pytest they land in caplog
    assert proc.returncode == 0, proc.stderr
    assert (run / "report.html").is_file()
    warnings = [m for m in caplog.messages if m.startswith("warning:")]
    assert any(says in m and str(Path("r") / name) in m for m in warnings), caplog.messages
    assert all("\n" not in m for m in warnings)


def test_compare_names_the_bad_run(cli, tmp_path):
    _run(tmp_path / "a")
    _run(tmp_path / "b", b"\x00\x01\x02")
    line = one_line(cli("compare", "a", "b", "--out", "cmp.html"))
    assert str(Path("b") / "history.jsonl") in line


def test_compare_says_which_argument_is_not_a_run(cli, tmp_path):
    """`compare runs/a userdir`: the line says which of the folders given is wrong and why."""
    _run(tmp_path / "a")
    (tmp_path / "userdir").mkdir()
    (tmp_path / "userdir" / "notes.txt").write_text("mine")
    line = one_line(cli("compare", "a", "userdir", "--out", "cmp.html"))
    assert line.startswith(
        "epochpilot compare: error: run 2 of 2: 'userdir' is not a run directory"
    ), line
    assert files_in(tmp_path / "userdir") == {"notes.txt"} and not (tmp_path / "cmp.html").exists()


def test_continue_on_rows_with_other_columns_names_their_file(cli, tmp_path):
    """`continue RUN --data new.csv` whose columns are not the model's: the line names new.csv."""
    from epochpilot.data.table import load_builtin

    assert cli("train", *WINE, "--max-epochs", "1", "--run-dir", "runs/w").returncode == 0
    frame = load_builtin("wine").frame
    frame.drop(columns=[frame.columns[0]]).to_csv(tmp_path / "new.csv", index=False)
    line = one_line(cli("continue", "runs/w", "--data", "new.csv", "--epochs", "1"))
    assert line.startswith(
        f"epochpilot continue: error: new.csv: missing feature columns ['{frame.columns[0]}']"
    ), line


def test_device_check_counts_gpus_and_knows_mps(monkeypatch):
    from epochpilot.errors import FieldError
    from epochpilot.jobs.check import check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    check_device("cuda")
    check_device("cuda:0")
    with pytest.raises(FieldError, match=r"is 'cuda:3' but this machine has 1 CUDA device\(s\)"):
        check_device("cuda:3")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(FieldError, match="no MPS"):
        check_device("mps")
    check_device("auto")
    check_device("cpu")


# --- tune's space file: the key and the file -------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, expected",
    [
        (
            'max_epochs = ["int", 1, 100000000000]',
            "max_epochs in s.toml: 100000000000 is out of range: a trial may ask for at most "
            "max_epochs = 100,000",
        ),
        ('lr = ["uniform", 0, 1]', "lr in s.toml: unknown kind 'uniform'"),
        (
            'lrr = ["log", 0.1, 1]',
            "space has unknown parameter 'lrr' in s.toml: did you mean 'lr'?",
        ),
        ('lr = "fast"', "lr in s.toml must be a tuple (kind, ...)"),
        ("lr = [", "--space-file s.toml: TOML syntax error"),
    ],
)
def test_space_file_errors_name_the_key_and_the_file(cli, tmp_path, line, expected):
    (tmp_path / "s.toml").write_text(line + "\n")
    got = one_line(cli("tune", *WINE, "--space-file", "s.toml", "--trials", "1", "--run-dir", "t"))
    assert got.startswith(f"epochpilot tune: error: {expected}"), got
    assert files_in(tmp_path) == {"s.toml"}  # refused before any run directory or study exists


def test_schedule_plot_with_a_non_image_name_is_refused_before_any_work(cli, tmp_path):
    proc = cli("schedule", "cosine", "--steps", "10", "--plot", "notes.txt")
    assert proc.returncode == 2 and "--plot notes.txt" in proc.stderr and ".png" in proc.stderr
    assert proc.stdout == "" and not (tmp_path / "notes.txt").exists()

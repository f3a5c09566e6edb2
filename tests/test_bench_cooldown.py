"""bench/cooldown.py: a tiny run prints the table and resumes from its cache; splits, noise and targets are right."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import _cooldown_table as T  # noqa: E402
import _cooldown_workloads as W  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_cooldown", BENCH / "cooldown.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

TINY = ["--seeds", "1", "--workloads", "W3,W4", "--max-epochs", "6", "--lengths", "2,3",
        "--runners", "default,on_stop,best_cosine,sweep", "--candidate", "on_stop"]  # fmt: skip


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_tiny_run_prints_the_table_and_resumes_from_the_cache(tmp_path, capsys):
    assert bench.main([*TINY, "--out", str(tmp_path)]) == 0
    first = capsys.readouterr()
    table = [line for line in first.out.splitlines() if line.startswith("| W")]
    assert len(table) == 3, first.out  # header + W3 + W4
    assert "on_stop − best_cosine" in table[0] and "(L=" in table[1]
    rows = _rows(tmp_path / "cooldown.jsonl")
    by_runner = {r["runner"] for r in rows}
    assert {"default", "on_stop", "best_cosine"} <= by_runner
    # the trainer either runs the sweep or the column says it is not available (never a crash)
    assert "sweep" in by_runner or "sweep: not available" in first.out
    cosine = next(r for r in rows if r["runner"] == "best_cosine")
    assert cosine["chosen_length"] in (2, 3) and len(cosine["per_length"]) == 2
    assert cosine["epochs"] == pytest.approx(5.0)  # the sum of both lengths: what finding it costs
    assert all(r["epochs"] <= 6 for r in rows)
    assert "Mean over workloads of the epoch ratio on_stop/best_cosine" in first.out

    assert bench.main([*TINY, "--out", str(tmp_path)]) == 0  # everything cached: nothing re-runs
    second = capsys.readouterr()
    assert "0 task(s) to run" in second.err
    assert len(_rows(tmp_path / "cooldown.jsonl")) == len(rows)
    assert [x for x in second.out.splitlines() if x.startswith("| W")] == table

    cache = (
        tmp_path / "cooldown.jsonl"
    )  # a row trained by another trainer is pointed out, not re-run
    cache.write_text(
        "".join(
            json.dumps(dict(r, trainer="old") if r["runner"] == "default" else r) + "\n"
            for r in rows
        )
    )
    assert bench.main([*TINY, "--out", str(tmp_path)]) == 0
    assert (
        "default: 2 cached row(s) were trained by other trainer sources" in capsys.readouterr().out
    )

    assert bench.main([*TINY, "--out", str(tmp_path), "--fresh", "on_stop"]) == 0
    assert "2 task(s) to run" in capsys.readouterr().err
    assert len(_rows(tmp_path / "cooldown.jsonl")) == len(rows) + 2


def test_split_and_label_noise_touch_train_and_val_only():
    w = W.WORKLOADS["W4"]  # breast_cancer, 20% noise
    X, y = W.load_arrays(w.data, "unused")
    d = W.prepare(w, 3, "unused")
    order = np.random.default_rng(3).permutation(len(y))
    a, b = int(0.6 * len(y)), int(0.8 * len(y))
    assert [len(d[k][1]) for k in ("train", "val", "test")] == [a, b - a, len(y) - b]
    np.testing.assert_array_equal(d["test"][1], y[order[b:]])  # test labels are never noisy
    noisy = np.concatenate([d["train"][1], d["val"][1]])
    assert (noisy != y[order[:b]]).sum() == round(0.2 * b)  # exactly 20%, each to another class
    again = W.prepare(w, 3, "unused")  # the same split and noise for every runner of a seed
    np.testing.assert_array_equal(again["train"][1], d["train"][1])
    assert not np.array_equal(W.prepare(w, 4, "unused")["train"][1], d["train"][1])
    assert abs(float(d["train"][0].mean())) < 1e-4  # standardised on the training rows


def _row(seed: int, acc: float, loss: float, epochs: float) -> dict:
    return {"seed": seed, "test_acc": acc, "test_loss": loss, "epochs": epochs}


def test_paired_differences_and_targets():
    cand = [_row(0, 0.90, 0.30, 20), _row(1, 0.80, 0.50, 30)]
    best = [_row(0, 0.91, 0.31, 100), _row(1, 0.83, 0.49, 100), _row(2, 0.5, 9.0, 100)]
    d = T.paired(cand, best)  # seeds both have only
    assert d["n"] == 2
    assert d["acc"][0] == pytest.approx(-2.0) and d["loss"][0] == pytest.approx(0.0)
    default = [_row(0, 0.9, 0.41, 50), _row(1, 0.9, 0.41, 50)]
    t = T.targets(cand, best, default)
    assert t == {"acc": True, "loss": True, "default": True, "epochs": True}
    worse = [_row(0, 0.10, 30.0, 400), _row(1, 0.10, 30.0, 400)]
    assert T.targets(worse, best, default) == {
        "acc": False,
        "loss": False,
        "default": False,
        "epochs": False,
    }
    assert T.targets([], best, default)["acc"] is None

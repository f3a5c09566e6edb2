"""bench/stopping.py scores exactly as ../shared/stopbench/score.py does, on the same curves."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from epochpilot.core.stopping.forecast import Forecast

REPO = Path(__file__).resolve().parents[3]
SCORE = REPO / ".." / "shared" / "stopbench" / "score.py"
sys.path.insert(0, str(REPO / "bench"))

import _loco  # noqa: E402
import _replay  # noqa: E402


@pytest.fixture(scope="module")
def score():
    if not SCORE.exists():
        pytest.skip(f"shared scorer not found at {SCORE.resolve()} (shared data absent)")
    spec = importlib.util.spec_from_file_location("shared_score", SCORE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _curves() -> list[_replay.Curve]:
    """A few curves of every kind score.py knows: loss, acc (generated) and rel (AlgoPerf, both modes)."""
    out: list[_replay.Curve] = []
    if _replay.GENERATED.exists():
        for kind in ("loss", "acc"):
            out += _replay.load_generated(_replay.GENERATED, kind)[:25]
    if _replay.ALGOPERF.exists():
        ap = _replay.load_algoperf()
        out += [c for c in ap if c.mode == "min"][:12] + [c for c in ap if c.mode == "max"][:12]
    for c in out:  # score.py's policies see val and train only: no schedule or resolution
        c.lr, c.n_val = None, None
    return out


def _as_json(c: _replay.Curve) -> dict:
    def lst(a):
        return [None if not math.isfinite(v) else float(v) for v in a]

    return {
        "metric": c.kind,
        "mode": c.mode,
        "train": lst(c.train),
        "val": lst(c.valid),
        "test": lst(c.test),
    }


def test_patience_frontier_and_forecast_agree_with_score_py(score):
    curves = _curves()
    if not curves:
        pytest.skip("no curves (bench/data and ../shared/curves absent)")
    for kind in ("loss", "acc", "rel"):
        cs = [c for c in curves if c.kind == kind]
        if not cs:
            continue
        js = [_as_json(c) for c in cs]
        row = _loco.build_row(f"agreement, {kind}", "agreement-test", "", cs)
        for p in (1, 3, 10, 30):
            want = score.score(js, score.patience(p))
            got = _loco.summarise(row, _loco.patience_stops(row, p))
            assert np.allclose(got, want, atol=1e-9), (kind, p, got, want)
        pts = score.frontier(js)
        assert np.allclose(_loco.frontier(row), pts, atol=1e-9)
        for comp in (0.0, 0.31, 0.5, 0.77, 1.0):
            assert np.allclose(
                _loco.frontier_at(_loco.frontier(row), comp), score.frontier_at(js, comp, pts)
            )
        # Forecast as score.py replays it, as the bench replays it, and through the cached shortcut
        want = score.score(
            js,
            score.policy_from(
                lambda mode, budget: Forecast("val", mode, budget, train_monitor="train")
            ),
        )
        if kind != "rel":  # the bench flips AlgoPerf's "max" train curve; score.py feeds it raw
            res = _replay.evaluate(
                cs,
                "forecast",
                lambda c: _replay.replay(
                    c, Forecast("val", c.mode, c.budget, train_monitor="train")
                ),
            )
            assert np.allclose((res.compute, res.mean, res.p90), want, atol=1e-9)
            from epochpilot.core.stopping import _prior_weights

            prob = _loco.p_improve(row, _prior_weights.WEIGHTS)
            got = _loco.summarise(row, _loco.forecast_stops(row, prob, 0.95))
            assert np.allclose(got, want, atol=1e-9)

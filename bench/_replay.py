"""Shared replay code for the stopping benchmark: load curve corpora and replay them through stop policies.

A curve is replayed epoch by epoch: the policy sees that epoch's metrics and may stop; the kept model is the
best-so-far by validation. Regret is the test metric lost against the best-validation epoch of the full run
(loss: relative %, accuracy: points, "rel": relative % signed so that worse is positive), exactly as
``../shared/stopbench/score.py`` computes it (tests/core/stopping/test_scorer_agreement.py).
"""

from __future__ import annotations

import gzip
import json
import math
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from epochpilot.stopping.base import Policy

VAL, TRAIN, GRAD = "val", "train", "grad"
REPO = Path(__file__).resolve().parents[1]
GENERATED = REPO / "bench" / "data" / "generated.jsonl.gz"
TASKSET = REPO / ".." / "shared" / "curves" / "taskset"
ALGOPERF = REPO / ".." / "shared" / "curves" / "algoperf" / "algoperf_visible.jsonl.gz"
SCHED = REPO / "bench" / "data" / "sched.jsonl.gz"
CONV = REPO / "bench" / "data" / "conv.jsonl.gz"


@dataclass
class Curve:
    """One run's per-epoch curves; ``kind`` is "loss" (mode min), "acc" (mode max) or "rel" (``direction``).

    ``lr`` (per-epoch learning rate over the budget, known in advance) and ``n_val`` (validation-set size)
    are the run's context where the corpus records them."""

    name: str
    kind: str
    valid: np.ndarray
    test: np.ndarray
    train: np.ndarray
    grad: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    direction: str | None = None
    lr: np.ndarray | None = None
    n_val: int | None = None

    @property
    def mode(self) -> str:
        if self.direction is not None:
            return self.direction
        return "min" if self.kind == "loss" else "max"

    @property
    def budget(self) -> int:
        return len(self.valid)

    def split(self, tune_fraction: float = 0.3) -> str:
        """A stable "tune" / "report" assignment from a hash of the curve's name."""
        h = zlib.crc32(self.name.encode()) / 2**32
        return "tune" if h < tune_fraction else "report"


def _arr(values: Iterable[float | None]) -> np.ndarray:
    return np.array([math.nan if v is None else float(v) for v in values], dtype=float)


def _usable(c: Curve) -> bool:
    """At least 5 finite validation values, and a finite test value wherever validation is finite."""
    fin = np.isfinite(c.valid)
    return bool(fin.sum() >= 5 and np.isfinite(c.valid[0]) and np.all(np.isfinite(c.test[fin])))


def _generated_lr(cfg: dict, budget: int) -> np.ndarray:
    """Corpus 1's per-epoch learning rate (bench/make_curves.py ``lr_at``; Adam's lr is a tenth)."""
    base = cfg["lr"] / (10.0 if cfg["optimizer"] == "adam" else 1.0)
    e = np.arange(budget, dtype=float)
    if cfg["schedule"] == "cosine":
        return base * 0.5 * (1 + np.cos(np.pi * e / budget))
    if cfg["schedule"] == "step":
        return base * 0.1 ** ((e >= budget // 2).astype(float) + (e >= 3 * budget // 4))
    return np.full(budget, base)


def load_generated(path: Path = GENERATED, kind: str = "loss", prefix: str = "gen") -> list[Curve]:
    """A generated corpus (bench/make_curves.py, any family): one curve per run, monitoring ``kind``."""
    curves = []
    with gzip.open(path, "rt") as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            cfg = r["config"]
            if "lr" in r:
                lr, n_val = _arr(r["lr"]), int(r["n_val"])
            else:  # corpus 1: rebuilt from the config and the split sizes
                n = int(r["n"])
                lr, n_val = _generated_lr(cfg, int(r["budget"])), int(0.8 * n) - int(0.6 * n)
            c = Curve(
                name=f"{prefix}-{cfg['index']}",
                kind=kind,
                valid=_arr(r["valid"][kind]),
                test=_arr(r["test"][kind]),
                train=_arr(r["train"]["loss"]),
                grad=_arr(r["grad_norm"]),
                meta=cfg,
                lr=lr,
                n_val=n_val,
            )
            if _usable(c):
                curves.append(c)
    return curves


def load_algoperf(path: Path = ALGOPERF) -> list[Curve]:
    """AlgoPerf runs (shared/curves/algoperf): the workload's target metric, regret kind "rel"."""
    curves = []
    with gzip.open(path, "rt") as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            c = Curve(
                name=f"algoperf-{r['id']}",
                kind="rel",
                valid=_arr(r["val"]),
                test=_arr(r["test"]),
                train=_arr(r["train"] or [None] * len(r["val"])),
                meta={"source": r["source"]},
                direction=r["mode"],
            )
            if _usable(c):
                curves.append(c)
    return curves


def load_taskset(directory: Path = TASKSET, per_task: int | None = None) -> list[Curve]:
    """Corpus 2: TaskSet loss curves (``per_task`` first configs of each task file, or all)."""
    curves = []
    for path in sorted(Path(directory).glob("*.json.gz")):
        task = path.name.split(".")[0].replace("FixedTextRNNClassification_", "")
        records = json.load(gzip.open(path, "rt"))
        for i, r in enumerate(records[:per_task] if per_task else records):
            c = Curve(
                name=f"{task}-{i}",
                kind="loss",
                valid=_arr(r["valid"]["loss"]),
                test=_arr(r["test"]["loss"]),
                train=_arr(r["train"]["loss"]),
                meta=r["hp"],
            )
            if _usable(c):
                curves.append(c)
    return curves


def metrics_at(c: Curve, i: int) -> dict[str, float]:
    """What a policy sees at epoch ``i + 1``."""
    m = {VAL: float(c.valid[i]), TRAIN: float(c.train[i])}
    if c.grad is not None:
        m[GRAD] = float(c.grad[i])
    return m


def replay(c: Curve, policy: Policy) -> int:
    """Feed ``c`` to ``policy`` epoch by epoch; return the stop epoch (the budget when it never stops)."""
    for i in range(c.budget):
        if policy.update(i + 1, metrics_at(c, i)).stop:
            return i + 1
    return c.budget


def kept_epoch(c: Curve, stop: int) -> int:
    """Best-so-far validation epoch (1-based) among epochs 1..stop."""
    v = c.valid[:stop]
    v = np.where(np.isfinite(v), v, np.inf if c.mode == "min" else -np.inf)
    return int(np.argmin(v) if c.mode == "min" else np.argmax(v)) + 1


def regret(c: Curve, stop: int, on: str = "test") -> float:
    """Metric lost by stopping at ``stop`` vs the full run's best-validation epoch (on test or valid)."""
    target = c.test if on == "test" else c.valid
    k, best = kept_epoch(c, stop), kept_epoch(c, c.budget)
    a, b = target[k - 1], target[best - 1]
    if not (math.isfinite(a) and math.isfinite(b)):  # as score.py: a missing kept value costs 100
        return 100.0 if not math.isfinite(a) else 0.0
    if c.kind == "loss":
        return float(100.0 * (a - b) / max(abs(b), 1e-12))
    if c.kind == "rel":
        return float(100.0 * (a - b if c.mode == "min" else b - a) / max(abs(b), 1e-12))
    return float(100.0 * (b - a))


@dataclass
class Result:
    """Per-policy summary over a corpus."""

    name: str
    stops: np.ndarray
    regrets: np.ndarray
    budgets: np.ndarray

    @property
    def compute(self) -> float:
        return float(np.mean(self.stops / self.budgets))

    @property
    def mean(self) -> float:
        return float(np.mean(self.regrets))

    @property
    def p90(self) -> float:
        return float(np.percentile(self.regrets, 90))


def evaluate(
    curves: list[Curve], name: str, stop_epoch: Callable[[Curve], int], on: str = "test"
) -> Result:
    """Run ``stop_epoch`` on every curve and summarise compute and regret."""
    stops = np.array([stop_epoch(c) for c in curves], dtype=float)
    regrets = np.array([regret(c, int(s), on) for c, s in zip(curves, stops)])
    budgets = np.array([c.budget for c in curves], dtype=float)
    return Result(name, stops, regrets, budgets)


def frontier_at(frontier: list[Result], compute: float) -> tuple[float, float, str] | None:
    """(mean, p90, between) of the patience frontier interpolated at ``compute``; None outside it."""
    pts = sorted(frontier, key=lambda r: r.compute)
    for lo, hi in zip(pts, pts[1:]):
        if lo.compute <= compute <= hi.compute:
            span = hi.compute - lo.compute
            f = 0.0 if span <= 0 else (compute - lo.compute) / span
            return (
                lo.mean + f * (hi.mean - lo.mean),
                lo.p90 + f * (hi.p90 - lo.p90),
                f"{lo.name} .. {hi.name}",
            )
    return None


def verdict(r: Result, frontier: list[Result]) -> str:
    """The target verdict for ``r``: mean at most half the frontier's at its compute, p90 no worse."""
    at = frontier_at(frontier, r.compute)
    if at is None:
        return f"{r.name}: compute {r.compute:.3f} is outside the patience frontier: no verdict."
    mean, p90, between = at
    ratio = r.mean / mean if mean > 0 else float("inf")
    ok = r.mean <= 0.5 * mean and r.p90 <= p90
    return (
        f"{r.name}: frontier at compute {r.compute:.3f} ({between}): mean {mean:.3f}, p90 {p90:.3f}. "
        f"Mean / frontier mean = {ratio:.2f} (target <= 0.50), p90 {r.p90:.3f} vs {p90:.3f}: "
        f"target {'MET' if ok else 'NOT met'}."
    )


def table(
    title: str,
    unit: str,
    rows: list[Result],
    main: Result,
    frontier: list[Result],
    also: tuple[Result, ...] = (),
) -> str:
    """A markdown table plus the target verdict for ``main`` (and for each of ``also``)."""
    lines = [
        f"### {title}",
        "",
        f"| policy | compute | mean regret ({unit}) | p90 regret ({unit}) |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        bold = "**" if r is main else ""
        lines.append(f"| {bold}{r.name}{bold} | {r.compute:.3f} | {r.mean:.3f} | {r.p90:.3f} |")
    lines.append("")
    lines.extend(verdict(r, frontier) for r in (main, *also))
    return "\n".join(lines)


def figure(path: Path, title: str, unit: str, frontier, others, sweep, main) -> None:
    """Frontier of patience rules and Forecast's confidence sweep, compute vs mean regret."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=90)
    fr = sorted(frontier, key=lambda r: r.compute)
    ax.plot(
        [r.compute for r in fr],
        [r.mean for r in fr],
        "o-",
        color="tab:gray",
        label="patience frontier",
    )
    for r in fr:
        ax.annotate(
            r.name.replace("patience ", "p"),
            (r.compute, r.mean),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.plot(
        [r.compute for r in sweep],
        [r.mean for r in sweep],
        "s-",
        color="tab:blue",
        ms=4,
        label="Forecast (confidence sweep)",
    )
    ax.plot([main.compute], [main.mean], "*", color="tab:red", ms=14, label="Forecast default")
    ax.plot(
        [r.compute for r in fr],
        [0.5 * r.mean for r in fr],
        ":",
        color="tab:green",
        label="target: half the frontier",
    )
    for r in others:
        ax.plot([r.compute], [r.mean], "x", ms=7, label=r.name)
    ax.set_xlabel("compute (mean stop epoch / budget)")
    ax.set_ylabel(f"mean test regret ({unit})")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def noise_sd(v: np.ndarray) -> float:
    """Robust noise sd of a curve from its first differences (MAD), for labels only."""
    d = np.diff(v[np.isfinite(v)])
    if len(d) < 2:
        return 0.0
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))

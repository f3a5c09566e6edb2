"""Leave-one-corpus-out evaluation of Forecast for bench/stopping.py: nested setting choice, table, figure.

For each held-out corpus H, every setting (feature set, label floor, patience floor, confidence) is scored on
each other corpus G with a prior fitted without G and H; the setting with the best *worst* ratio over those
corpora (p90 no worse than the frontier's where any setting manages that) is chosen, the prior is refitted
without H, and H is scored once. The shipped weights are fitted on all corpora with the setting whose worst
LOCO ratio is best.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _loco import (
    Row,
    fit,
    forecast_stops,
    frontier,
    frontier_at,
    p_improve,
    patience_stops,
    ratio,
    summarise,
)

from epochpilot.stopping import _prior

BASE = tuple(f for f in _prior.FEATURES if f not in _prior.CONTEXT_FEATURES)
FEATURE_SETS = {"base": BASE, "context": _prior.FEATURES}
LABEL_RELS = (0.005, 0.015)
FLOORS = (0, 3)
MIN_FRACTIONS = (0.0, 0.1, 0.2)
CAPS = (0, 10, 15, 20)
SWEEP = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)


@dataclass(frozen=True)
class Setting:
    features: str
    label_rel: float
    floor: int
    min_fraction: float
    cap: int
    confidence: float

    def __str__(self) -> str:
        return (
            f"features={self.features} label_rel={self.label_rel:g} floor={self.floor} "
            f"min_fraction={self.min_fraction:g} cap={self.cap} confidence={self.confidence:g}"
        )

    def at(self, confidence: float) -> Setting:
        """The same setting at another confidence."""
        return Setting(
            self.features, self.label_rel, self.floor, self.min_fraction, self.cap, confidence
        )


@dataclass
class Cell:
    """One policy on one row: compute, mean, p90, the frontier there and the ratio."""

    compute: float
    mean: float
    p90: float
    f_mean: float
    f_p90: float

    @property
    def ratio(self) -> float:
        return ratio(self.mean, self.f_mean)

    @property
    def p90_ok(self) -> bool:
        return self.p90 <= self.f_p90 + 1e-9

    @property
    def floor_ok(self) -> bool:
        return self.ratio <= 1.0 and self.p90_ok


class Loco:
    """Caches prior fits (by excluded corpora) and frontiers; scores settings on rows."""

    def __init__(self, rows: list[Row], per_row: int = 10000, l2: float = 1.0) -> None:
        self.rows = rows
        self.corpora = sorted({r.corpus for r in rows})
        self.per_row, self.l2 = per_row, l2
        #: only settings with a patience cap (the cap as a fixed part of the design)
        self.capped = False
        self.fronts = {r.title: frontier(r) for r in rows}
        self._fits: dict = {}
        self._p: dict = {}
        self._caps: dict = {}
        self._cells: dict = {}

    def weights(self, exclude: frozenset, features: str, label_rel: float) -> dict:
        key = (exclude, features, label_rel)
        if key not in self._fits:
            train = [r for r in self.rows if r.corpus not in exclude]
            self._fits[key] = fit(
                train, FEATURE_SETS[features], label_rel, self.l2, per_row=self.per_row
            )
        return self._fits[key]

    def probs(self, row: Row, exclude: frozenset, features: str, label_rel: float) -> np.ndarray:
        key = (row.title, exclude, features, label_rel)
        if key not in self._p:
            self._p[key] = p_improve(row, self.weights(exclude, features, label_rel))
        return self._p[key]

    def cell(self, row: Row, stops: np.ndarray) -> Cell:
        c, m, q = summarise(row, stops)
        fm, fq = frontier_at(self.fronts[row.title], c)
        return Cell(c, m, q, fm, fq)

    def score(self, row: Row, s: Setting, exclude: frozenset) -> Cell:
        key = (row.title, s, exclude)
        if key not in self._cells:
            self._cells[key] = self._score(row, s, exclude)
        return self._cells[key]

    def _score(self, row: Row, s: Setting, exclude: frozenset) -> Cell:
        p = self.probs(row, exclude, s.features, s.label_rel)
        stops = forecast_stops(row, p, s.confidence, s.floor, s.min_fraction)
        if s.cap:
            key = (row.title, s.cap)
            if key not in self._caps:
                self._caps[key] = patience_stops(row, s.cap)
            stops = np.minimum(stops, self._caps[key])
        return self.cell(row, stops)

    def settings(self):
        caps = [c for c in CAPS if c] if self.capped else CAPS
        for fs, lr, fl, mf, cap, q in itertools.product(
            FEATURE_SETS, LABEL_RELS, FLOORS, MIN_FRACTIONS, caps, SWEEP
        ):
            yield Setting(fs, lr, fl, mf, cap, q)

    def choose(self, among: list[str], also_exclude: frozenset = frozenset()) -> Setting:
        """The setting with the best worst ratio over the rows of corpora ``among``, each scored with a
        prior fitted without it (and without ``also_exclude``): fewest rows with p90 worse than the
        frontier's first, then the worst ratio, then the most compute (the safer of two ties)."""
        best, best_key = None, None
        for s in self.settings():
            cells = [
                self.score(r, s, also_exclude | {r.corpus}) for r in self.rows if r.corpus in among
            ]
            worst = max(c.ratio for c in cells)
            p90_bad = sum(not c.p90_ok for c in cells)
            key = (p90_bad, worst, -np.mean([c.compute for c in cells]))
            if best_key is None or key < best_key:
                best, best_key = s, key
        assert best is not None
        return best


def run(rows: list[Row], log=print, lo: Loco | None = None, capped: bool = False) -> dict:
    """Nested LOCO: the chosen setting and its cell per held-out row, the sweep, and the shipped setting.

    ``capped``: choose only among settings with a patience cap (the cap fixed by design, not chosen)."""
    lo = lo or Loco(rows)
    lo.capped = capped
    out: dict = {"held_out": {}, "rows": rows, "loco": lo, "capped": capped}
    for h in lo.corpora:
        others = [c for c in lo.corpora if c != h]
        s = lo.choose(others, also_exclude=frozenset({h}))
        log(f"held out {h}: chose {s}")
        for r in (r for r in rows if r.corpus == h):
            ex = frozenset({h})
            sweep = [lo.score(r, s.at(q), ex) for q in SWEEP]
            out["held_out"][r.title] = (s, lo.score(r, s, ex), sweep)
    ship = lo.choose(lo.corpora)
    out["ship"] = ship
    out["ship_cells"] = {r.title: lo.score(r, ship, frozenset({r.corpus})) for r in rows}
    log(f"shipped setting (best worst LOCO ratio over all corpora): {ship}")
    return out


def rule_cells(lo: Loco, name: str, stops_of) -> dict[str, Cell]:
    """A fixed rule (nothing fitted) on every row."""
    return {r.title: lo.cell(r, stops_of(r)) for r in lo.rows}


def relative_patience(frac: float, lo_p: int = 3, hi_p: int = 30):
    """Patience = frac x budget, clipped to [lo_p, hi_p] (what `plan` does for epochs)."""

    def stops(r: Row) -> np.ndarray:
        out = []
        for w, b in zip(r.waits, r.budgets):
            p = int(min(max(round(frac * b), lo_p), hi_p))
            hit = np.flatnonzero(w >= p)
            out.append(int(hit[0]) + 1 if len(hit) else len(w))
        return np.array(out)

    return stops


def table(res: dict, extra: dict[str, dict[str, Cell]]) -> str:
    """The held-out markdown table (+ other policies scored the same way)."""
    lines = [
        "| held-out corpus | curves | Forecast setting (chosen without it) | compute | mean regret | p90 regret "
        "| frontier mean there | frontier p90 there | ratio (target <= 0.5) | p90 vs frontier | safety floor |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in res["rows"]:
        s, c, _ = res["held_out"][r.title]
        lines.append(
            f"| {r.title} ({r.unit}) | {len(r)} | {s} | {c.compute:.3f} | {c.mean:.3f} | {c.p90:.3f} "
            f"| {c.f_mean:.3f} | {c.f_p90:.3f} | {_fmt(c.ratio)} | {'no worse' if c.p90_ok else 'WORSE'} "
            f"| {'holds' if c.floor_ok else 'BROKEN'} |"
        )
    if not extra:
        return "\n".join(lines)
    lines += ["", "Other policies, same scoring (ratio / p90 vs frontier's p90 there):", ""]
    head = "| policy | " + " | ".join(r.title for r in res["rows"]) + " | worst ratio |"
    lines += [head, "|---|" + "---:|" * (len(res["rows"]) + 1)]
    for name, cells in extra.items():
        vals = [cells[r.title] for r in res["rows"]]
        txt = [
            f"{_fmt(c.ratio)} @ {c.compute:.2f} (p90 {c.p90:.3g}{'' if c.p90_ok else ' WORSE'})"
            for c in vals
        ]
        lines.append(f"| {name} | " + " | ".join(txt) + f" | {_fmt(max(c.ratio for c in vals))} |")
    return "\n".join(lines)


def _fmt(x: float) -> str:
    return "inf" if not math.isfinite(x) else f"{x:.2f}"


def figure(res: dict, path: Path) -> None:
    """One panel per held-out row: patience frontier, Forecast's confidence sweep, the chosen point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["rows"]
    cols = 4
    nr = math.ceil(len(rows) / cols)
    fig, axes = plt.subplots(nr, cols, figsize=(4.2 * cols, 3.4 * nr), dpi=80, squeeze=False)
    for ax, r in zip(axes.flat, rows):
        s, c, sweep = res["held_out"][r.title]
        fr = res["loco"].fronts[r.title]
        ax.plot(
            [p[0] for p in fr], [p[1] for p in fr], "o-", ms=3, color="gray", label="patience 1..30"
        )
        ax.plot(
            [p[0] for p in fr],
            [0.5 * p[1] for p in fr],
            ":",
            color="tab:green",
            label="half frontier",
        )
        ax.plot(
            [x.compute for x in sweep], [x.mean for x in sweep], "s-", ms=3, label="Forecast sweep"
        )
        ax.plot(
            [c.compute], [c.mean], "*", color="tab:red", ms=12, label=f"chosen ({s.confidence:g})"
        )
        ax.set_title(f"held out: {r.title}", fontsize=9)
        ax.set_xlabel("compute")
        ax.set_ylabel(f"mean regret ({r.unit})")
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(rows) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def patience_rows(lo: Loco) -> dict[str, dict[str, Cell]]:
    """Fixed patience rules (on the frontier by construction) and budget-relative patience."""
    out = {
        f"patience {p}": rule_cells(lo, f"patience {p}", lambda r, p=p: patience_stops(r, p))
        for p in (5, 10)
    }
    for frac in (0.1, 0.2):
        out[f"patience {frac:g} x budget (3..30)"] = rule_cells(lo, "", relative_patience(frac))
    return out

"""General-ability probes for fine-tuning: scores computed each epoch and put into the metrics row before the
stop policy sees them, so ``Retention`` can guard them.

``Probed(policy, {"retention": fn})`` is the bridge: the trainer feeds it the epoch's row; it adds each probe's
score to the row (so the history records it), then asks the wrapped policy. It also refuses to mark as "best"
an epoch that a ``Retention`` guard inside it finds past its limit, so the weights kept are never ones that
forgot too much.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

import numpy as np

from epochpilot.core.stopping.base import STATE_VERSION, Decision, Policy, check_epoch
from epochpilot.core.stopping.retention import Retention

__all__ = ["Probed", "SimilarityProbe", "pairwise_cosines", "rankdata", "spearman"]


def rankdata(values: Any) -> np.ndarray:
    """Ranks from 1 with ties given their average rank (like ``scipy.stats.rankdata``'s default)."""
    x = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    start = 0
    for end in range(1, len(x) + 1):
        if end == len(x) or sorted_x[end] != sorted_x[start]:
            ranks[order[start:end]] = (start + end + 1) / 2.0
            start = end
    return ranks


def spearman(a: Any, b: Any) -> float:
    """Spearman's rank correlation of two equal-length samples (NaN when either is constant)."""
    ra, rb = rankdata(a), rankdata(b)
    if len(ra) != len(rb) or len(ra) < 2:
        raise ValueError(
            f"spearman needs two samples of equal length >= 2, got {len(ra)} and {len(rb)}"
        )
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def pairwise_cosines(embeddings: Any) -> np.ndarray:
    """Cosine similarity of every pair (i < j) of rows, as a flat array."""
    e = np.asarray(embeddings, dtype=np.float64)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    sims = e @ e.T
    i, j = np.triu_indices(len(e), k=1)
    return sims[i, j]


class SimilarityProbe:
    """How well a fine-tuned encoder keeps the base model's similarity ranking on general sentences.

    ``encode()`` returns the current embeddings of a fixed held-out sentence set (rows); the score is the
    Spearman correlation between the base model's pairwise cosine similarities (taken at construction) and the
    current ones: 1.0 means the same ranking of which sentences are alike, lower means general ability drifted.

    >>> import numpy as np
    >>> base = np.random.default_rng(0).normal(size=(12, 8))
    >>> SimilarityProbe(lambda: base)()
    1.0
    >>> noisy = base + np.random.default_rng(1).normal(scale=3.0, size=base.shape)
    >>> round(SimilarityProbe(lambda: base, reference=base)(), 3), SimilarityProbe(lambda: noisy, reference=base)() < 0.9
    (1.0, True)
    """

    def __init__(self, encode: Callable[[], Any], reference: Any = None) -> None:
        if not callable(encode):
            raise TypeError("encode must be a callable returning the current embeddings")
        self.encode = encode
        base = np.asarray(encode() if reference is None else reference, dtype=np.float64)
        if base.ndim != 2 or len(base) < 3:
            raise ValueError(
                f"the probe needs >= 3 sentences' embeddings (rows), got shape {base.shape}"
            )
        self.base = pairwise_cosines(base)

    def __call__(self) -> float:
        """The current score (Spearman correlation with the base model's similarities)."""
        now = np.asarray(self.encode(), dtype=np.float64)
        return spearman(self.base, pairwise_cosines(now))


def guards(policy: Any) -> Iterator[Retention]:
    """Every ``Retention`` inside ``policy`` (through ``AnyOf.policies``, staged ``stoppers``, ``Probed``)."""
    if isinstance(policy, Retention):
        yield policy
    for child in (
        list(getattr(policy, "policies", ()))
        + list(getattr(policy, "stoppers", ()))
        + [getattr(policy, "inner", None)]
    ):
        if isinstance(child, Policy):
            yield from guards(child)


class Probed(Policy):
    """Adds probe scores to each epoch's metrics, then defers to ``inner``; never keeps a forgetting epoch.

    ``probes`` maps a row key (e.g. ``"retention"``) to a no-argument callable returning a float; a key already
    in the row (e.g. recomputing from a recorded history) is not probed again. ``improved`` is withheld while
    any ``Retention`` inside ``inner`` is past its limit.
    """

    def __init__(
        self, inner: Policy, probes: Mapping[str, Callable[[], float]] | None = None
    ) -> None:
        if not isinstance(inner, Policy):
            raise TypeError(f"inner must be a stop Policy, got {type(inner).__name__}")
        probes = dict(probes or {})
        for key, fn in probes.items():
            if not callable(fn):
                raise TypeError(f"probes[{key!r}] must be a callable returning a float")
        self.inner = inner
        self.probes = probes

    @property
    def name(self) -> str:
        """The wrapped policy's name."""
        return self.inner.name

    @property
    def monitor(self) -> str | None:
        """The wrapped policy's monitor unless it is a probe key (the trainer only knows its own keys)."""
        monitor = getattr(self.inner, "monitor", None)
        if monitor is None:
            monitor = getattr(
                next(iter(getattr(self.inner, "policies", ())), None), "monitor", None
            )
        return None if monitor in self.probes else monitor

    @property
    def mode(self) -> str:
        """The wrapped policy's mode (of its first child under ``AnyOf``)."""
        mode = getattr(self.inner, "mode", None)
        if mode is None:
            mode = getattr(next(iter(getattr(self.inner, "policies", ())), None), "mode", None)
        return mode or "min"

    def _init_state(self) -> None:
        self.inner._init_state()

    def reset(self) -> None:
        """Reset the wrapped policy."""
        self.inner.reset()

    def update(self, epoch: int, metrics: Mapping[str, float]) -> Decision:
        """Probe, record the scores in ``metrics`` (when it is a dict), then update the wrapped policy."""
        epoch = check_epoch(epoch)
        row = metrics if isinstance(metrics, MutableMapping) else dict(metrics)
        for key, fn in self.probes.items():
            if key not in row:
                row[key] = float(fn())
        decision = self.inner.update(epoch, row)
        if decision.improved and any(g.violating_ > 0 for g in guards(self.inner)):
            return dataclasses.replace(decision, improved=False)
        return decision

    def state_dict(self) -> dict[str, Any]:
        """The wrapped policy's state, enveloped."""
        return {
            "policy": "Probed",
            "version": STATE_VERSION,
            "state": {"inner": self.inner.state_dict()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        inner = self._unwrap_state(state)
        if set(inner) != {"inner"}:
            raise ValueError(f"Probed state must have exactly the key 'inner', got {sorted(inner)}")
        self.inner.load_state_dict(inner["inner"])

    def __repr__(self) -> str:
        return f"Probed({self.inner!r}, probes={sorted(self.probes)})"

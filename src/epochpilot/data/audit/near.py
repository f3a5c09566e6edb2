"""Near-duplicate clustering for ``audit``: MinHash + LSH banding for text, quantised hashing for numbers.

Text: each distinct text is normalised (lower case, single spaces), cut into shingles (character 5-grams, or
word 3-grams), and MinHashed with ``datasketch`` (``num_perm`` permutations). The signature is split into
``b`` bands of ``r`` rows, with ``b`` and ``r`` chosen by ``datasketch.MinHashLSH`` for the threshold with false
negatives weighted 0.9 (recall first: 14 bands of 9 rows at 0.8, a pair of true similarity 0.85 becomes a
candidate with probability 0.97); rows that
share a band are candidates, and a candidate pair is kept only when the exact Jaccard similarity of its
shingle sets is at least ``threshold`` (after a cheap signature pre-filter). Banding links each row to the first row
of its bucket rather than to every member, so work stays linear in the rows even when thousands collide.

Numbers: every feature is divided by ``resolution`` times its train standard deviation and rounded; rows that
hash equal after rounding are near-duplicates.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = ["NearIndex", "minhash_signatures", "shingles", "text_lengths"]

_CHAR_K = 5
_WORD_K = 3
_PRIME = np.uint64(1_000_003)
_CHUNK = 1_024


def shingles(text: str, kind: str = "char") -> list[bytes]:
    """Character 5-grams (``kind="char"``) or word 3-grams of the normalised text; short texts give one."""
    norm = " ".join(str(text).lower().split())
    if kind == "word":
        words = norm.split(" ")
        grams = [" ".join(words[i : i + _WORD_K]) for i in range(len(words) - _WORD_K + 1)]
    else:
        grams = [norm[i : i + _CHAR_K] for i in range(len(norm) - _CHAR_K + 1)]
    return [g.encode("utf-8") for g in (grams or [norm])]


def minhash_signatures(texts: np.ndarray, kind: str, num_perm: int, seed: int = 1) -> np.ndarray:
    """An (n, num_perm) matrix of datasketch MinHash values (unsigned ints), one row per text."""
    from datasketch import MinHash

    out: np.ndarray | None = None
    for start in range(0, len(texts), _CHUNK):  # chunks bound the memory held by shingle sets
        sets = [set(shingles(t, kind)) for t in texts[start : start + _CHUNK]]
        for i, m in enumerate(MinHash.generator(sets, num_perm=num_perm, seed=seed)):
            if out is None:  # the scheme's own width (uint32 for datasketch 2's default)
                out = np.empty((len(texts), num_perm), dtype=m.hashvalues.dtype)
            out[start + i] = m.hashvalues
    return out if out is not None else np.zeros((0, num_perm), dtype=np.uint64)


def _band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """A (bands, n) uint64 key per band: equal band slices give equal keys (collisions are verified)."""
    keys = np.zeros((bands, len(signatures)), dtype=np.uint64)
    for b in range(bands):
        key = np.zeros(len(signatures), dtype=np.uint64)
        for column in signatures[:, b * rows : (b + 1) * rows].T:
            key = key * _PRIME ^ column.astype(np.uint64)
        keys[b] = key
    return keys


def _agreement(sig: np.ndarray, a: np.ndarray, other: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Estimated Jaccard similarity of pairs (sig[a[i]], other[b[i]]), in chunks to bound memory."""
    out = np.empty(len(a), dtype=float)
    step = 50_000
    for start in range(0, len(a), step):
        s = slice(start, start + step)
        out[s] = (sig[a[s]] == other[b[s]]).mean(axis=1)
    return out


def text_lengths(texts: pd.Series) -> dict[str, dict[str, float]]:
    """Length distribution of texts in characters and in words: min, p5, median, mean, p95, max."""
    values = texts.astype(str)
    out = {}
    for unit, lengths in (("chars", values.str.len()), ("words", values.str.split().str.len())):
        arr = lengths.fillna(0).to_numpy(dtype=float)
        p5, p50, p95 = np.percentile(arr, [5, 50, 95])
        out[unit] = {
            "min": float(arr.min()),
            "p5": float(p5),
            "median": float(p50),
            "mean": round(float(arr.mean()), 3),
            "p95": float(p95),
            "max": float(arr.max()),
        }
    return out


def _first_rows(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(code per row, first row of each code): codes number distinct keys in order of first appearance."""
    codes = pd.factorize(keys)[0]
    return codes, np.flatnonzero(~pd.Series(codes).duplicated().to_numpy())


class NearIndex:
    """Near-duplicate clusters of the training rows, and look-ups of other splits' rows against them.

    ``labels[i]`` is the cluster of train row ``i`` (exact copies share their original's cluster);
    ``n_clusters`` is the effective sample size.
    """

    def __init__(
        self,
        features: pd.DataFrame,
        hashes: np.ndarray,
        *,
        text_column: str | None,
        threshold: float,
        resolution: float,
        shingle: str,
        num_perm: int,
    ) -> None:
        self.text_column = text_column
        self.threshold = threshold
        self.shingle = shingle
        self.num_perm = num_perm
        self._resolution = resolution
        inverse, first = _first_rows(hashes)
        self._first = first  # a train row for each distinct input, in order of first appearance
        if text_column is not None:
            unique_labels = self._cluster_text(features[text_column].to_numpy()[first])
        else:
            self._scale = self._scales(features)
            keys = self._numeric_keys(features)
            codes, rows = _first_rows(keys)
            self._numeric_first = pd.Series(rows, index=keys[rows])  # grid cell -> a train row
            unique_labels = codes[first]
        self.labels = pd.factorize(np.asarray(unique_labels)[inverse])[0]
        self.n_clusters = int(self.labels.max()) + 1 if len(self.labels) else 0

    # numeric rows --------------------------------------------------------------------------------------
    @staticmethod
    def _scales(features: pd.DataFrame) -> np.ndarray:
        std = np.nanstd(features.to_numpy(dtype=float), axis=0) if len(features) else np.ones(0)
        return np.where(np.isfinite(std) & (std > 0), std, 1.0)

    def _numeric_keys(self, features: pd.DataFrame) -> np.ndarray:
        grid = features.to_numpy(dtype=float, copy=True)
        grid /= self._resolution * self._scale
        np.rint(grid, out=grid)
        np.clip(grid, -9e15, 9e15, out=grid)
        grid += 0.0  # folds -0.0 into 0.0
        return pd.util.hash_pandas_object(pd.DataFrame(grid, copy=False), index=False).to_numpy()

    # text rows -----------------------------------------------------------------------------------------
    def _cluster_text(self, texts: np.ndarray) -> np.ndarray:
        from datasketch import MinHashLSH

        # recall-leaning bands (false negatives weigh 0.9): every candidate pair is verified afterwards
        lsh = MinHashLSH(threshold=self.threshold, num_perm=self.num_perm, weights=(0.1, 0.9))
        self._bands, self._rows = int(lsh.b), int(lsh.r)
        self._texts = texts
        self._sig = minhash_signatures(texts, self.shingle, self.num_perm)
        keys = _band_keys(self._sig, self._bands, self._rows)
        n = len(texts)
        candidates, self._tables = [], []
        for band in keys:
            table = pd.Series(np.arange(n)).groupby(band).first()  # bucket key -> first member
            self._tables.append(table)
            rep = table.reindex(band).to_numpy()
            pair = np.flatnonzero(rep != np.arange(n))
            candidates.append(pair.astype(np.int64) * n + rep[pair])
        unique = (
            np.unique(np.concatenate(candidates)) if candidates else np.zeros(0, dtype=np.int64)
        )
        a, b = unique // n, unique % n
        keep = self._verify(texts, a, self._sig, b)
        a, b = a[keep], b[keep]
        graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
        _, labels = connected_components(graph, directed=False)
        return labels

    def _verify(
        self, texts: np.ndarray, a: np.ndarray, sig: np.ndarray, b: np.ndarray
    ) -> np.ndarray:
        """Keep pairs (texts[a], train text b) whose exact shingle Jaccard is >= threshold.

        Signatures first drop pairs whose estimate is far below the threshold (cheap, vectorised); the
        rest are checked on their shingle sets, so the threshold is exact rather than a +-0.05 estimate.
        """
        if len(a) == 0:
            return np.zeros(0, dtype=bool)
        maybe = _agreement(sig, a, self._sig, b) >= self.threshold - 0.2
        keep = np.zeros(len(a), dtype=bool)
        for k in np.flatnonzero(
            maybe
        ):  # no cache: shingle sets of many rows would dominate peak memory
            x = set(shingles(texts[int(a[k])], self.shingle))
            y = set(shingles(self._texts[int(b[k])], self.shingle))
            keep[k] = len(x & y) >= self.threshold * len(x | y)
        return keep

    # look-ups ------------------------------------------------------------------------------------------
    def match(self, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """For each row of another split: whether it near-duplicates a train row, and that train row (-1)."""
        n = len(features)
        partner = np.full(n, -1, dtype=np.int64)
        if self.text_column is None:
            keys = self._numeric_keys(features)
            found = self._numeric_first.reindex(keys).to_numpy()
            hit = ~np.isnan(found)
            partner[hit] = found[hit].astype(np.int64)
            return hit, partner
        texts = features[self.text_column].to_numpy()
        sig = minhash_signatures(texts, self.shingle, self.num_perm)
        keys = _band_keys(sig, self._bands, self._rows)
        for band, table in zip(keys, self._tables, strict=True):
            open_rows = np.flatnonzero(partner < 0)
            if len(open_rows) == 0:
                break
            cand = table.reindex(band[open_rows]).to_numpy()
            has = ~np.isnan(cand)
            rows, cand = open_rows[has], cand[has].astype(np.int64)
            ok = self._verify(texts, rows, sig, cand)
            partner[rows[ok]] = self._first[cand[ok]]
        return partner >= 0, partner

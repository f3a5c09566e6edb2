"""Audit throughput: exact duplicates over 1,000,000 numeric rows, near-duplicates over 100,000 short texts.

Each method runs twice on the same generated data: once timed (wall clock, best of ``--repeat``), once under
``tracemalloc`` for peak memory (numpy and pandas allocations are traced). Baselines: pandas ``duplicated()``
(exact only, the naive tool) and, for text, the by-the-book ``datasketch`` loop (one ``MinHash`` per text,
``MinHashLSH`` insert + query per row).

    .venv/bin/python bench/audit.py            # 1,000,000 rows / 100,000 texts
    .venv/bin/python bench/audit.py --small    # 100,000 rows / 10,000 texts (a quick look)
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from epochpilot.audit import audit, row_hashes
from epochpilot.audit_near import NearIndex, shingles

WORDS = [f"w{i}" for i in range(5_000)]


def numeric(n: int, seed: int = 0) -> pd.DataFrame:
    """n rows x 10 float columns; 10% of rows copy an earlier row, 5% are copies plus 1e-9 noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 10))
    dup = rng.choice(n, size=n // 10, replace=False)
    x[dup] = x[rng.integers(0, n, size=len(dup))]
    near = rng.choice(n, size=n // 20, replace=False)
    x[near] = x[rng.integers(0, n, size=len(near))] + 1e-9
    return pd.DataFrame(x, columns=[f"x{i}" for i in range(10)])


def texts(n: int, seed: int = 0) -> pd.DataFrame:
    """n short texts (8-16 words); 10% exact copies, 10% copies with one word changed.

    ``frame.attrs["pairs"]`` lists (copy, source) for the one-word edits, to measure recall.
    """
    rng = np.random.default_rng(seed)
    out = [" ".join(rng.choice(WORDS, size=rng.integers(8, 17))) for _ in range(n)]
    for i in rng.choice(n, size=n // 10, replace=False):
        out[i] = out[rng.integers(0, n)]
    pairs = []
    for i in rng.choice(n, size=n // 10, replace=False):
        j = int(rng.integers(0, n))
        words = out[j].split()
        words[rng.integers(0, len(words))] = str(rng.choice(WORDS))
        out[i] = " ".join(words)
        pairs.append((int(i), j))
    frame = pd.DataFrame({"text": out})
    frame.attrs["pairs"] = pairs
    return frame


def quality(frame: pd.DataFrame, threshold: float = 0.8) -> None:
    """Recall of the one-word-edit pairs, split by their true Jaccard similarity on char 5-grams."""
    index = NearIndex(
        frame,
        row_hashes(frame),
        text_column="text",
        threshold=threshold,
        resolution=0.01,
        shingle="char",
        num_perm=128,
    )
    text = frame["text"].tolist()
    rows = []
    for i, j in frame.attrs["pairs"]:
        if text[i] == text[j]:
            continue  # the edit did not change the text, or a later edit overwrote one side
        a, b = set(shingles(text[i])), set(shingles(text[j]))
        rows.append((len(a & b) / len(a | b), index.labels[i] == index.labels[j]))
    sims, found = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    print(
        f"\nNear-duplicate recall on {len(rows):,} one-word-edit pairs, by true Jaccard (char 5-grams):"
    )
    print(f"{'true Jaccard':<14} {'pairs':>7} {'found':>7} {'recall':>7}")
    for low, high in ((0.9, 1.01), (0.8, 0.9), (0.7, 0.8), (0.5, 0.7), (0.0, 0.5)):
        mask = (sims >= low) & (sims < high)
        if mask.any():
            label = f"[{low:.1f}, {min(high, 1.0):.1f}{']' if high > 1 else ')'}"
            print(
                f"{label:<14} {mask.sum():>7,} {found[mask].sum():>7,} {found[mask].mean():>7.1%}"
            )


def naive_datasketch(frame: pd.DataFrame) -> int:
    """The documented datasketch loop: MinHash per text, insert all, query each, count rows with a match."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    hashes = []
    for i, text in enumerate(frame["text"]):
        m = MinHash(num_perm=128)
        m.update_batch(set(shingles(text)))
        lsh.insert(i, m)
        hashes.append(m)
    return sum(len(lsh.query(m)) > 1 for m in hashes)


def exact_epochpilot(frame: pd.DataFrame) -> int:
    return int(pd.Series(row_hashes(frame)).duplicated().sum())


def near_epochpilot_numeric(frame: pd.DataFrame) -> int:
    index = NearIndex(
        frame,
        row_hashes(frame),
        text_column=None,
        threshold=0.8,
        resolution=0.01,
        shingle="char",
        num_perm=128,
    )
    return len(frame) - index.n_clusters


def near_epochpilot_text(frame: pd.DataFrame) -> int:
    index = NearIndex(
        frame,
        row_hashes(frame),
        text_column="text",
        threshold=0.8,
        resolution=0.01,
        shingle="char",
        num_perm=128,
    )
    return len(frame) - index.n_clusters


def measure(fn: Callable[[Any], Any], data: Any, repeat: int) -> tuple[float, float, float, Any]:
    """(best wall seconds, best CPU seconds of this process, peak traced MiB, result).

    CPU seconds are reported next to wall time because the machine may be shared: rows/s uses CPU time.
    """
    wall, cpu, result = float("inf"), float("inf"), None
    for _ in range(repeat):
        gc.collect()
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn(data)
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    gc.collect()
    tracemalloc.start()
    fn(data)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return wall, cpu, peak, result


def table(title: str, n: int, rows: list[tuple[str, float, float, float, Any]], base: str) -> None:
    ref = next(r for r in rows if r[0] == base)
    print(f"\n{title} ({n:,} rows)")
    print(
        f"{'method':<44} {'found':>9} {'wall s':>7} {'CPU s':>7} {'rows/CPU s':>11} {'peak MiB':>9} "
        f"{'CPU x':>7} {'mem x':>6}"
    )
    for name, wall, cpu, mib, found in rows:
        print(
            f"{name:<44} {found:>9,} {wall:>7.2f} {cpu:>7.2f} {n / max(cpu, 1e-9):>11,.0f} {mib:>9.1f} "
            f"{cpu / max(ref[2], 1e-9):>7.2f} {mib / max(ref[3], 1e-9):>6.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="10x smaller data")
    parser.add_argument("--repeat", type=int, default=2, help="timed repetitions (best is kept)")
    parser.add_argument(
        "--skip-naive-text", action="store_true", help="skip the slow datasketch loop"
    )
    parser.add_argument("--part", choices=("all", "numeric", "text"), default="all")
    args = parser.parse_args()
    if args.part in ("all", "numeric"):
        bench_numeric(1_000_000 if not args.small else 100_000, args.repeat)
    if args.part in ("all", "text"):
        bench_text(100_000 if not args.small else 10_000, args.skip_naive_text)


def bench_numeric(n_rows: int, repeat: int) -> None:
    frame = numeric(n_rows)
    base = "pandas DataFrame.duplicated() (exact)"
    rows = []
    for name, fn in (
        (base, lambda f: int(f.duplicated().sum())),
        ("epochpilot exact (row hash + duplicated)", exact_epochpilot),
        ("epochpilot near (quantised-row hashing)", near_epochpilot_numeric),
        ("epochpilot audit() (everything)", lambda f: audit(f).exact_duplicates),
    ):
        rows.append((name, *measure(fn, frame, repeat)))
    table("Numeric rows, 10 float columns: exact and near duplicates", n_rows, rows, base)


def bench_text(n_texts: int, skip_naive: bool) -> None:
    base = "pandas DataFrame.duplicated() (exact)"
    frame = texts(n_texts)
    rows = []
    for name, fn in (
        (base, lambda f: int(f.duplicated().sum())),
        ("epochpilot near (MinHash bulk + LSH bands)", near_epochpilot_text),
        (
            "epochpilot audit(text_column=) (everything)",
            lambda f: audit(f, text_column="text").near_duplicates,
        ),
    ):
        rows.append((name, *measure(fn, frame, 1)))
    if not skip_naive:
        rows.append(
            ("datasketch loop (MinHash + LSH insert/query)", *measure(naive_datasketch, frame, 1))
        )
    table(
        "Short texts (8-16 words): near duplicates, Jaccard >= 0.8 on char 5-grams",
        n_texts,
        rows,
        base,
    )
    quality(frame)
    print(
        "\n'found': rows that duplicate an earlier row (exact), or rows folded into another's cluster (near); "
        "the datasketch loop counts rows with any match (both ends of a pair)."
    )


if __name__ == "__main__":
    main()

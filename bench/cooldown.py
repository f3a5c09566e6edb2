"""Does the schedule follow the stopper? `cooldown="sweep"` against today's defaults and a best-of-six cosine.

Issue 21's benchmark. Workloads (bench/_cooldown_workloads.py) are data x model x optimizer x label noise; every
runner of a seed gets the same 60/20/20 split, the same noisy training/validation labels (never test), the same
initial weights and the same data order. Runners:

- ``default``: ``fit`` with today's defaults (constant lr, the auto stopper), ``max_epochs`` 200;
- ``cosine200``: ``schedule="warmup(cosine)"`` over the 200-epoch budget, the auto stopper (what the plan does);
- ``best_cosine``: warmup (5%) + cosine over L epochs, L in 5/10/20/40/80/160, ``stopper=False``, best val kept;
  the L whose kept model has the best val loss gives the test metric; its epochs are the SUM of all six runs;
- ``on_stop``: ``schedule="wsd", cooldown="on_stop"``, 200 epochs;
- ``sweep``: ``schedule="wsd", cooldown="sweep"``, 200 epochs ("not available" until the trainer accepts it).

Prints one markdown table: test accuracy / cross-entropy (mean +- sd over seeds) @ mean epochs trained, the paired
differences sweep - default and sweep - best_cosine, the epoch ratio, and the issue's targets as pass/fail.
Each (workload, runner, seed) result is appended to ``OUT/cooldown.jsonl``: a re-run resumes.

    python bench/cooldown.py --jobs 2                                  # 8 workloads x 5 runners x 8 seeds
    python bench/cooldown.py --workloads W1,W3,W5,W7 --runners sweep,default,best_cosine \\
        --first 4 --patience 2 --fraction 0.2 --jobs 2                 # choose settings on the selection half
    python bench/cooldown.py --out /tmp/cd --fresh sweep               # re-run only the sweep rows
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _cooldown_table as T  # noqa: E402
import _cooldown_workloads as W  # noqa: E402

DEFAULT_OUT = Path(tempfile.gettempdir()) / "epochpilot-bench-cooldown"
#: ``fit`` keyword of each sweep option (``--first`` is in epochs)
SWEEP_ARGS = {"fraction": "cooldown_fraction", "first": "sweep_start", "patience": "sweep_patience"}


def _list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _fit_arg(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"--fit-arg {text!r}: write KEY=VALUE, e.g. sweep_start=4")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--workloads", type=_list, default=list(W.WORKLOADS), help="e.g. W1,W3,W5,W7")
    p.add_argument("--runners", type=_list, default=list(W.RUNNERS), help=",".join(W.RUNNERS))
    p.add_argument(
        "--max-epochs", type=int, default=200, help="budget of every runner but best_cosine"
    )
    p.add_argument("--lengths", type=lambda t: [int(x) for x in _list(t)], default=list(W.LENGTHS))
    p.add_argument("--fraction", type=float, help="cooldown_fraction of on_stop and sweep")
    p.add_argument("--first", type=float, help="sweep_start: epochs before the first branch")
    p.add_argument("--patience", type=int, help="sweep_patience: branches without improvement")
    p.add_argument(
        "--fit-arg",
        type=_fit_arg,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other fit keyword for the sweep runner (repeatable; VALUE read as JSON)",
    )
    p.add_argument("--candidate", default="sweep", help="runner compared in the paired columns")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (one torch thread each)")
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"cache folder (default {DEFAULT_OUT})"
    )
    p.add_argument(
        "--fresh",
        nargs="?",
        const="all",
        type=_list,
        default=[],
        help="ignore cached rows (of these runners only, if given)",
    )
    p.add_argument("--times", action="store_true", help="also print seconds per seed per runner")
    args = p.parse_args(argv)
    bad = [w for w in args.workloads if w not in W.WORKLOADS]
    bad += [r for r in args.runners + [args.candidate] if r not in W.RUNNERS]
    if bad or args.seeds < 1 or args.jobs < 1 or args.max_epochs < 1 or not args.lengths:
        p.error(
            f"unknown or bad values {bad}: workloads {', '.join(W.WORKLOADS)}; "
            f"runners {', '.join(W.RUNNERS)}; --seeds, --jobs, --max-epochs >= 1"
        )
    return args


def settings(args: argparse.Namespace, runner: str) -> dict[str, Any]:
    """What a runner's result depends on besides workload and seed (part of the cache key)."""
    if runner == "best_cosine":
        return {"lengths": list(args.lengths)}
    out: dict[str, Any] = {"max_epochs": args.max_epochs}
    extra = {}
    if runner in ("on_stop", "sweep") and args.fraction is not None:
        extra[SWEEP_ARGS["fraction"]] = args.fraction
    if runner == "sweep":
        for opt in ("first", "patience"):
            if getattr(args, opt) is not None:
                extra[SWEEP_ARGS[opt]] = getattr(args, opt)
        extra.update(dict(args.fit_arg))
    if extra:
        out["fit_args"] = extra
    return out


def tasks(args: argparse.Namespace, workloads: list[str]) -> list[dict[str, Any]]:
    """Every (workload, runner, seed) task with its cache key."""
    out = []
    for wid in workloads:
        for runner in args.runners:
            s = settings(args, runner)
            blob = json.dumps({"workload": W.spec(W.WORKLOADS[wid]), "settings": s}, sort_keys=True)
            digest = hashlib.sha1(blob.encode()).hexdigest()[:12]
            for seed in range(args.seeds):
                key = f"{wid}|{runner}|{seed}|{digest}"
                out.append(
                    dict(
                        key=key,
                        workload=wid,
                        runner=runner,
                        seed=seed,
                        settings=s,
                        cache_dir=str(args.out),
                    )
                )
    return out


def read_cache(path: Path) -> dict[str, dict[str, Any]]:
    """key -> row of the JSONL cache (the last row of a key wins; a torn last line is skipped)."""
    rows: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            rows[row["key"]] = row
    return rows


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_all(
    todo: list[dict[str, Any]], jobs: int, cache: Path, log: Callable[[str], None]
) -> tuple[dict[str, str], list[str]]:
    """Run the tasks (in a spawn pool when jobs > 1), appending each row to ``cache`` as it ends.

    Returns (runner -> why it is not available, one line per task that raised): a failed task costs its
    row only, the others still run and are cached.
    """
    unavailable: dict[str, str] = {}
    failed: list[str] = []
    started = time.perf_counter()
    done = 0

    def record(task: dict[str, Any], row: dict[str, Any] | None, exc: BaseException | None) -> None:
        nonlocal done
        done += 1
        what = f"{task['workload']} {task['runner']} seed {task['seed']}"
        if exc is not None:
            failed.append(f"{what}: {type(exc).__name__}: {exc}")
            outcome = f"FAILED ({type(exc).__name__}: {exc})"
        elif "unavailable" in row:
            unavailable.setdefault(task["runner"], row["unavailable"])
            outcome = "not available"
        else:
            with cache.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            outcome = f"{row['seconds']:.1f} s"
        log(
            f"[{done}/{len(todo)}] {what}: {outcome} ({time.perf_counter() - started:.0f} s in all)"
        )

    if jobs == 1:
        for task in todo:
            if task["runner"] in unavailable:  # the first refusal stands for the rest
                continue
            try:
                record(task, W.run_task(task), None)
            except Exception as exc:  # a bug in one runner must not lose the other rows
                record(task, None, exc)
        return unavailable, failed
    pool = ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"))
    previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM ends the workers too, as Ctrl-C
    try:
        futures = {pool.submit(W.run_task, task): task for task in todo}
        for fut in as_completed(futures):
            exc = fut.exception()
            record(futures[fut], None if exc else fut.result(), exc)
    except (
        KeyboardInterrupt
    ):  # the workers' fits catch the signal too: end them; finished rows stay
        workers = list((pool._processes or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in workers:
            proc.kill()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    pool.shutdown()
    return unavailable, failed


def collect(args: argparse.Namespace, workloads: list[str], rows: dict) -> dict[str, dict]:
    """workload -> runner -> the cached rows of this command's tasks (its seeds and settings)."""
    got: dict[str, dict] = {wid: {r: [] for r in args.runners} for wid in workloads}
    for t in tasks(args, workloads):
        if t["key"] in rows:
            got[t["workload"]][t["runner"]].append(rows[t["key"]])
    return got


def stale_notes(got: dict[str, dict]) -> list[str]:
    """One line per runner whose cached rows were trained by other trainer sources than today's."""
    current, out = W.trainer_digest(), []
    for r in next(iter(got.values()), {}):
        n = sum(x.get("trainer") != current for by in got.values() for x in by[r])
        if n:
            out.append(
                f"{r}: {n} cached row(s) were trained by other trainer sources than today's "
                f"({current}): --fresh {r} re-runs them"
            )
    return out


def main(argv: list[str] | None = None) -> int:
    """Run what the cache lacks, print the table; returns the exit status."""
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.out / "cooldown.jsonl"
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    workloads = []
    for wid in args.workloads:  # data made once here (MNIST-1D, MiniLM embeddings), cached in --out
        try:
            W.load_arrays(W.WORKLOADS[wid].data, str(args.out))
            workloads.append(wid)
        except W.Unavailable as exc:
            print(f"{wid} ({W.WORKLOADS[wid].label}) skipped: {exc}")
    rows = read_cache(cache)
    fresh = set(W.RUNNERS) if "all" in args.fresh else set(args.fresh)
    todo = [t for t in tasks(args, workloads) if t["runner"] in fresh or t["key"] not in rows]
    log(f"{len(todo)} task(s) to run, cache {cache}")
    try:
        unavailable, failed = run_all(todo, args.jobs, cache, log)
    except KeyboardInterrupt:
        log(f"interrupted: the finished tasks are in {cache}; run the same command to resume")
        return 130
    got = collect(args, workloads, read_cache(cache))
    notes = stale_notes(got) + [
        why if why.startswith(r) else f"{r}: not available ({why})"
        for r, why in unavailable.items()
    ]
    print(T.table(got, args.candidate, set(unavailable), notes, args.seeds, len(args.lengths)))
    if args.times:
        print("\nseconds per seed\n\n" + T.times_table(got))
    for line in failed:
        print(f"failed: {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

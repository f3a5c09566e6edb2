"""CLI start-up: how long ``epochpilot`` takes to answer ``--help``, ``--version`` and the user's mistakes.

    .venv/bin/python bench/cli_start.py                  # 7 runs of each command, medians
    .venv/bin/python bench/cli_start.py --runs 15
    .venv/bin/python bench/cli_start.py --src /tmp/old/src   # another checkout's package (before/after)

Each command runs as a fresh process (the ``epochpilot`` script next to this Python, as a user types it), in a
temporary folder holding a malformed job file and a malformed CSV; runs are interleaved (one of each command,
then again), and the table shows the median wall time and its difference to ``python -c pass`` (the
interpreter's own start), the median CPU time of the process (user + system: steadier than wall time on a
busy machine) and its difference, the exit code and which of torch, lightning, keras, transformers and optuna
were imported (one extra run under ``PYTHONPROFILEIMPORTTIME``). Target: every row under 0.3 s wall above the
baseline on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: (label, argv after the program); None: the baseline ``python -c pass``.
COMMANDS: list[tuple[str, list[str] | None]] = [
    ("python -c pass", None),
    ("epochpilot --help", ["--help"]),
    ("epochpilot --version", ["--version"]),
    ("epochpilot train --help", ["train", "--help"]),
    ("missing data file", ["train", "--data", "missing.csv", "--target", "y"]),
    ("bad flag value", ["train", "--builtin", "wine", "--max-epochs", "0"]),
    ("malformed job.toml", ["train", "job.toml"]),
    ("malformed CSV", ["train", "--data", "bad.csv", "--target", "y"]),
]

#: Imports that must not happen on these paths.
HEAVY = ("torch", "lightning", "keras", "transformers", "optuna")


def program() -> list[str]:
    """The ``epochpilot`` script beside this interpreter, else ``python -m epochpilot``."""
    script = Path(sys.executable).parent / "epochpilot"
    return [str(script)] if script.exists() else [sys.executable, "-m", "epochpilot"]


def argv_of(args: list[str] | None) -> list[str]:
    return [sys.executable, "-c", "pass"] if args is None else [*program(), *args]


def write_fixtures(folder: Path) -> None:
    """The malformed inputs: a job file with a TOML syntax error, a CSV with a line of too many fields."""
    (folder / "job.toml").write_text("[train\nmax_epochs = 3\n", encoding="utf-8")
    (folder / "bad.csv").write_text("a,b,y\n1,2,0\n3,4,1\n5,6,7,8\n", encoding="utf-8")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, exit code) of one run."""
    cpu, start = _cpu(), time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, timeout=120)
    return time.perf_counter() - start, _cpu() - cpu, done.returncode


def heavy_imports(argv: list[str], cwd: Path, env: dict[str, str]) -> list[str]:
    """The top-level packages of HEAVY that one run imports (from ``-X importtime``'s log)."""
    done = subprocess.run(
        argv, cwd=cwd, env={**env, "PYTHONPROFILEIMPORTTIME": "1"}, capture_output=True, text=True
    )
    seen = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:"):
            name = line.rsplit("|", 1)[-1].strip().split(".")[0]
            if name in HEAVY:
                seen.add(name)
    return sorted(seen)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="runs of each command (default 7)")
    parser.add_argument("--src", type=Path, help="import epochpilot from this folder instead")
    opts = parser.parse_args(argv)
    env = dict(os.environ)
    if opts.src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(opts.src.resolve()), env.get("PYTHONPATH", "")])
    times: dict[str, list[float]] = {label: [] for label, _ in COMMANDS}
    cpus: dict[str, list[float]] = {label: [] for label, _ in COMMANDS}
    codes: dict[str, set[int]] = {label: set() for label, _ in COMMANDS}
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        write_fixtures(cwd)
        for _label, args in COMMANDS:  # warm the file cache and the .pyc files; not counted
            run_once(argv_of(args), cwd, env)
        for _ in range(opts.runs):
            for label, args in COMMANDS:
                seconds, cpu, code = run_once(argv_of(args), cwd, env)
                times[label].append(seconds)
                cpus[label].append(cpu)
                codes[label].add(code)
        imported = {label: heavy_imports(argv_of(args), cwd, env) for label, args in COMMANDS}
    base, cpu_base = (statistics.median(d[COMMANDS[0][0]]) for d in (times, cpus))
    where = f" (epochpilot from {opts.src})" if opts.src else ""
    print(f"CLI start-up, median of {opts.runs} runs{where}; python {sys.version.split()[0]}")
    print(f"load average before: {', '.join(f'{x:.2f}' for x in load)}")
    print()
    print(
        "| command | wall (s) | above baseline (s) | CPU (s) | CPU above baseline (s) | exit | imports |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for label, _ in COMMANDS:
        wall, cpu = statistics.median(times[label]), statistics.median(cpus[label])
        first = label == COMMANDS[0][0]
        above = "—" if first else f"{wall - base:+.3f}"
        cpu_above = "—" if first else f"{cpu - cpu_base:+.3f}"
        code = ",".join(map(str, sorted(codes[label])))
        heavy = ", ".join(imported[label]) or "-"
        print(f"| {label} | {wall:.3f} | {above} | {cpu:.3f} | {cpu_above} | {code} | {heavy} |")
    worst = max(statistics.median(times[label]) - base for label, _ in COMMANDS[1:])
    print()
    print(f"worst: {worst:+.3f} s wall above the baseline (target < +0.300 s on a quiet machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

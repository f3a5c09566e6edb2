"""Running one fuzz case and checking the invariants every case must keep.

A *case* is one ``epochpilot`` command on generated input. Most run in-process through ``main(argv)``
(milliseconds when the input is refused); a sampled few run as real subprocesses. After each case
:func:`check` asserts the promises of issue 14:

- the exit code is 0 or 2 for anything a user can type or put in a file (never 1, never an escaped exception);
  130/143 after SIGINT/SIGTERM;
- an error is at most 3 lines on stderr, none of them longer than :data:`MAX_LINE` characters;
- no ``Traceback`` unless ``--debug``;
- every file that existed before the case is byte-identical afterwards, unless the command succeeded and its
  purpose is to replace that file;
- no marker file appeared (no code from the input was executed).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from epochpilot.cli import main

ROOT = Path(__file__).resolve().parents[2]

#: Longest error line accepted (lists must be cut to a few items).
MAX_LINE = 600

#: Most lines an error may print on stderr.
MAX_ERROR_LINES = 3

#: Seconds one in-process case may take before it counts as a hang (generous: `plan mnist1d` builds the
#: data set, 25 s on a loaded 2-core machine under pytest-xdist).
CASE_TIMEOUT = float(os.environ.get("EPOCHPILOT_FUZZ_CASE_TIMEOUT", "90"))

#: Errors that named neither the flag, the key nor the file: collected (the other invariants keep hypothesis'
#: attention), then reported by :func:`raise_unnamed` at the end of the test.
UNNAMED: list[str] = []

#: Cases run so far in this session (reported by the conftest's summary line).
COUNTS = {"in-process": 0, "subprocess": 0}


@dataclass
class Result:
    """What one case did."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    escaped: str = ""  # the traceback of an exception that escaped main()
    note: str = ""  # what the input was, for the failure message

    def describe(self) -> str:
        """The case in a few lines, for a failure message and the findings list."""
        err = (
            self.stderr
            if len(self.stderr) < 1500
            else self.stderr[:700] + " [...] " + self.stderr[-700:]
        )
        out = self.stdout[-300:]
        return (
            f"command: epochpilot {' '.join(_quote(a) for a in self.argv)}\n"
            f"input: {self.note}\n"
            f"exit code: {self.returncode} ({self.seconds:.1f} s)\n"
            f"stderr:\n{err}\n"
            f"stdout tail:\n{out}\n"
            + (f"escaped exception:\n{self.escaped[-1500:]}" if self.escaped else "")
        )


def _quote(arg: str) -> str:
    text = arg if len(arg) < 120 else arg[:60] + "..." + arg[-40:]
    return text if text and all(c.isalnum() or c in "-_./=:," for c in text) else repr(text)


class CaseTimeout(BaseException):
    """Raised in the main thread when an in-process case runs past :data:`CASE_TIMEOUT` (a hang)."""


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    def on_alarm(signum: int, frame: object) -> None:
        raise CaseTimeout(f"no answer after {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def chdir(path: Path) -> Iterator[None]:
    """Work in ``path`` for the duration (the CLI resolves relative paths against it)."""
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def run_inproc(
    argv: Sequence[object], cwd: Path, *, note: str = "", timeout: float = CASE_TIMEOUT
) -> Result:
    """``main(argv)`` in ``cwd`` with stdout/stderr captured; an exception escaping main is recorded, not raised."""
    argv = [str(a) for a in argv]
    COUNTS["in-process"] += 1
    out, err = io.StringIO(), io.StringIO()
    escaped = ""
    start = time.perf_counter()
    with chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            with _alarm(timeout):
                code = main(argv)
        except SystemExit as exc:  # argparse: usage errors, --help
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except CaseTimeout as exc:
            code, escaped = -1, f"HANG: {exc}"
        except Exception:
            code, escaped = 1, traceback.format_exc()
    return Result(
        argv, int(code), out.getvalue(), err.getvalue(), time.perf_counter() - start, escaped, note
    )


def cli_env() -> dict[str, str]:
    """The environment of a subprocess case: this checkout's sources, no display, one torch thread."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }


def popen(argv: Sequence[object], cwd: Path) -> subprocess.Popen:
    """Start ``python -m epochpilot ARGV`` in ``cwd`` (for the signal cases)."""
    COUNTS["subprocess"] += 1
    return subprocess.Popen(
        [sys.executable, "-m", "epochpilot", *map(str, argv)],
        cwd=cwd,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_subprocess(
    argv: Sequence[object], cwd: Path, *, note: str = "", timeout: float = 120
) -> Result:
    """``python -m epochpilot ARGV`` in ``cwd``."""
    argv = [str(a) for a in argv]
    COUNTS["subprocess"] += 1
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "epochpilot", *argv],
            cwd=cwd,
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        code, out, err, escaped = proc.returncode, proc.stdout, proc.stderr, ""
    except subprocess.TimeoutExpired as exc:
        code, escaped = -1, f"HANG: no answer after {timeout} s"
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
    return Result(argv, code, out, err, time.perf_counter() - start, escaped, note)


# ----------------------------------------------------------------------------------------------- the tree


def tree(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every regular file under ``root`` (symlinks are not followed)."""
    hashes: dict[str, str] = {}
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            try:
                hashes[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:  # unreadable: record that, it must stay unreadable-and-unchanged
                hashes[str(path.relative_to(root))] = "<unreadable>"
    return hashes


def under(*prefixes: str) -> Callable[[str], bool]:
    """A predicate: the relative path is one of ``prefixes`` or lies below one of them."""

    def inside(rel: str) -> bool:
        return any(rel == p or rel.startswith(p.rstrip("/") + "/") for p in prefixes)

    return inside


def nothing(rel: str) -> bool:
    """No pre-existing file may change."""
    return False


# ----------------------------------------------------------------------------------------------- checks

#: Lines a training command logs on stderr while it works (not part of an error message).
_PROGRESS = ("epoch ", "plan:", "budget:", "trial ", "fold ", "warning:", "[W ", "[I ")


def error_lines(stderr: str) -> list[str]:
    """The lines of stderr that belong to the error report (progress logging left out)."""
    return [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith(_PROGRESS)]


def check(
    result: Result,
    *,
    root: Path,
    before: dict[str, str],
    may_change: Callable[[str], bool] = nothing,
    codes: frozenset[int] = frozenset({0, 2}),
    markers: Sequence[Path] = (),
    names: Sequence[str] = (),
    debug: bool = False,
) -> None:
    """Assert the invariants on one finished case (see the module docstring).

    ``names``: when the command fails with exit code 2, its message must contain at least one of them
    (the flag, TOML key or file the user wrote)."""
    problems: list[str] = []
    if result.escaped:
        problems.append("an exception escaped main() (a traceback / exit 1 / hang)")
    if result.returncode not in codes:
        problems.append(f"exit code {result.returncode}, expected one of {sorted(codes)}")
    if not debug and "Traceback" in result.stderr:
        problems.append("'Traceback' on stderr without --debug")
    if result.returncode > 0:  # killed by a signal (< 0): nothing can be printed
        lines = error_lines(result.stderr)
        if len(lines) > MAX_ERROR_LINES:
            problems.append(
                f"{len(lines)} lines on stderr for an error (at most {MAX_ERROR_LINES})"
            )
        if not lines:
            problems.append("failed without a word on stderr")
        long = [ln for ln in lines if len(ln) > MAX_LINE]
        if long:
            problems.append(f"an error line of {len(long[0])} characters (at most {MAX_LINE})")
        if result.returncode == 2 and names and lines:
            text = "\n".join(lines)
            if not any(_named(n, text) for n in names):
                UNNAMED.append(f"the error names none of {list(names)}\n" + result.describe())
    for marker in markers:
        if marker.exists():
            problems.append(f"code from the input ran: marker {marker.name} was created")
    after = tree(root)
    changed = [
        rel
        for rel, digest in before.items()
        if after.get(rel) != digest and not (result.returncode == 0 and may_change(rel))
    ]
    if changed:
        lost = [rel for rel in changed if rel not in after]
        problems.append(
            f"{len(changed)} pre-existing file(s) changed or lost ({len(lost)} lost): "
            + ", ".join(sorted(changed)[:6])
        )
    if problems:
        raise AssertionError("; ".join(problems) + "\n" + result.describe())


def raise_unnamed() -> None:
    """Fail the test if one of its cases printed an error naming nothing the user wrote (first 3 shown)."""
    found, UNNAMED[:] = list(UNNAMED), []
    if found:
        raise AssertionError(
            f"{len(found)} error(s) named neither the flag, the key nor the file, e.g.\n"
            + "\n".join(found[:3])
        )


# ----------------------------------------------------------------------------------------------- helpers


@dataclass
class Case:
    """A scratch folder for one generated case, with the tree hashed before the command runs."""

    root: Path
    markers: list[Path] = field(default_factory=list)
    before: dict[str, str] = field(default_factory=dict)

    def snapshot(self) -> None:
        """Hash the tree now (call after the inputs are written, before the command)."""
        self.before = tree(self.root)

    def marker(self, name: str = "PWNED") -> Path:
        """A path that must never exist (code from the input would create it)."""
        path = self.root / f"{name}-{len(self.markers)}"
        self.markers.append(path)
        return path

    def run(self, argv: Sequence[object], *, note: str = "", **check_kwargs: object) -> Result:
        """Run ``argv`` in-process here and check the invariants."""
        result = run_inproc(argv, self.root, note=note)
        check(result, root=self.root, before=self.before, markers=self.markers, **check_kwargs)  # type: ignore[arg-type]
        return result

    def run_process(
        self, argv: Sequence[object], *, note: str = "", **check_kwargs: object
    ) -> Result:
        """Run ``argv`` as a subprocess here and check the invariants."""
        result = run_subprocess(argv, self.root, note=note)
        check(result, root=self.root, before=self.before, markers=self.markers, **check_kwargs)  # type: ignore[arg-type]
        return result


def _named(name: str, text: str) -> bool:
    """Whether an error line names what the user typed: an empty argument is named by saying it is empty,
    and a name longer than an error line can hold by its first 40 characters."""
    if not name.strip():
        return "''" in text or "is empty" in text
    return (name[:40] if len(name) > 100 else name) in text

"""Damaged run directories: truncated, zeroed, flipped, deleted and swapped files, malicious pickles and a
``model.json`` naming a factory that would run code. Every command that reads a run directory must answer with
exit 0 (a fallback) or one error line, never run code from the directory, and never damage it further."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from . import _harness as H
from .conftest import fuzz_settings

#: command -> (argv, what a successful run may rewrite, generated examples)
COMMANDS = {
    "predict": (["predict", "runs/a", "--data", "tiny.csv"], H.nothing, 40),
    "predict-out": (
        ["predict", "runs/a", "--data", "tiny.csv", "--out", "pred.csv"],
        H.under("pred.csv"),
        15,
    ),
    "evaluate": (["evaluate", "runs/a", "--data", "tiny.csv", "--json"], H.nothing, 30),
    "report": (["report", "runs/a"], H.under("runs/a/report.html", "runs/a/plots"), 20),
    "resume": (["resume", "runs/a"], H.under("runs/a"), 25),
    "continue": (
        ["continue", "runs/a", "--data", "tiny.csv", "--epochs", "1", "--out", "runs/c"],
        H.nothing,
        20,
    ),
    "compare": (["compare", "runs/a", "runs/b", "--out", "cmp.html"], H.under("cmp.html"), 15),
}


class Payload:
    """A pickle that creates a folder when it is loaded (what a hostile model.pt would do, harmlessly)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # noqa: D105
        return (os.mkdir, (self.marker,))


def malicious_pickle(path: Path, marker: Path, *, zipped: bool) -> None:
    """Write a pickle at ``path`` that would create ``marker`` when loaded with ``weights_only=False``."""
    if zipped:  # torch's own format: a zip archive holding data.pkl
        torch.save({"weight": Payload(marker)}, path)
    else:
        path.write_bytes(pickle.dumps(Payload(marker), protocol=2))


def factory_module(run: Path, marker: Path, variant: str) -> None:
    """Rewrite ``run/model.json`` so that building the model would run code that creates ``marker``."""
    info = json.loads((run / "model.json").read_text())
    if variant == "module in the run directory":
        (run / "fz_evil.py").write_text(
            f"import os\nos.mkdir({str(marker)!r})\n\ndef build(**kwargs):\n    os.mkdir({str(marker)!r} + '-b')\n"
        )
        info.update(factory="fz_evil:build", search=[str(run.resolve())])
    elif variant == "os.mkdir as factory":
        info.update(factory="os:mkdir", kwargs={"path": str(marker)})
    elif variant == "shutil.rmtree as factory":
        victim = run.parent.parent / "victim"  # the user's folder next to the runs: must survive
        victim.mkdir(exist_ok=True)
        (victim / "keep.txt").write_text("keep me")
        info.update(factory="shutil:rmtree", kwargs={"path": str(victim)})
    (run / "model.json").write_text(json.dumps(info))


# ----------------------------------------------------------------------------------------------- damage

OPS = ["truncate", "zero", "flip", "delete", "garbage", "swap", "pickle", "json", "empty"]


@st.composite
def damage(draw: st.DrawFn, files: list[str], dirs: list[str]) -> list[tuple]:
    """One to three operations on the files (or folders) of run a."""
    ops = []
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from([*OPS, "rmdir"]))
        target = draw(st.sampled_from(dirs if op == "rmdir" else files))
        ops.append((op, target, draw(st.integers(0, 2**32 - 1))))
    return ops


def apply(case: H.Case, ops: list[tuple]) -> str:
    """Apply the operations to ``case.root/runs/a``; returns what was done (for the failure message)."""
    import random

    run, other = case.root / "runs" / "a", case.root / "runs" / "b"
    done = []
    for op, rel, seed in ops:
        rng = random.Random(seed)
        path = run / rel
        if op == "rmdir":
            shutil.rmtree(path, ignore_errors=True)
            done.append(f"rm -r {rel}")
            continue
        if not path.is_file():
            continue
        data = path.read_bytes()
        if op == "truncate":
            cut = rng.randrange(0, max(1, len(data)))
            path.write_bytes(data[:cut])
            done.append(f"truncate {rel} to {cut} of {len(data)} bytes")
        elif op == "zero":
            path.write_bytes(bytes(len(data)))
            done.append(f"zero {rel}")
        elif op == "flip":
            buf = bytearray(data)
            spots = [rng.randrange(len(buf)) for _ in range(rng.randint(1, 8))] if buf else []
            for i in spots:
                buf[i] ^= 1 << rng.randrange(8)
            path.write_bytes(bytes(buf))
            done.append(f"flip bits at {spots} of {rel}")
        elif op == "delete":
            path.unlink()
            done.append(f"rm {rel}")
        elif op == "garbage":
            path.write_bytes(rng.randbytes(rng.randint(1, 400)))
            done.append(f"random bytes in {rel}")
        elif op == "empty":
            path.write_bytes(b"")
            done.append(f"empty {rel}")
        elif op == "swap":
            source = other / rel
            if source.is_file():
                shutil.copyfile(source, path)
                done.append(f"{rel} from run b")
        elif op == "pickle":
            malicious_pickle(path, case.marker(), zipped=rng.random() < 0.5)
            done.append(f"malicious pickle in {rel}")
        elif op == "json":
            value = rng.choice(
                [
                    "[]",
                    '"x"',
                    "null",
                    "{}",
                    "{",
                    '{"factory": 5}',
                    '{"features": "abc"}',
                    "1e999",
                    '{"n_features": -1, "n_outputs": 0, "factory": "epochpilot.models:mlp", "kwargs": {}}',
                ]
            )
            path.write_text(value)
            done.append(f"{rel} := {value}")
    return "; ".join(done) or "nothing applied"


def _listing(base: Path) -> tuple[list[str], list[str]]:
    run = base / "runs" / "a"
    files = sorted(
        str(p.relative_to(run)) for p in run.rglob("*") if p.is_file() and "plots" not in p.parts
    )
    dirs = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_dir())
    return files, dirs


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_damaged_run(new_case, base: Path, command: str) -> None:
    """A damaged run directory: exit 0 or one error line, no code run, nothing further damaged."""
    argv, may_change, examples = COMMANDS[command]
    files, dirs = _listing(base)

    @fuzz_settings(examples)
    @given(ops=damage(files, dirs))
    def test(ops: list[tuple]) -> None:
        case = new_case()
        note = apply(case, ops)
        case.snapshot()
        case.run(argv, note=note, may_change=may_change, names=["runs/a", "runs/b"])

    H.UNNAMED.clear()
    test()
    H.raise_unnamed()


PT_FILES = ["model.pt", "checkpoints/best/model.pt", "checkpoints/epoch-0003/state.pt"]


@pytest.mark.parametrize("zipped", [False, True], ids=["raw-pickle", "torch-zip"])
@pytest.mark.parametrize("target", PT_FILES)
@pytest.mark.parametrize("command", ["predict", "evaluate", "resume", "continue", "report"])
def test_malicious_pickle(new_case, command: str, target: str, zipped: bool) -> None:
    """A pickle that would run code, in any .pt file of the run: never executed."""
    argv, may_change, _ = COMMANDS[command]
    case = new_case()
    malicious_pickle(case.root / "runs" / "a" / target, case.marker(), zipped=zipped)
    case.snapshot()
    case.run(argv, note=f"malicious pickle in {target}", may_change=may_change)


FACTORIES = ["module in the run directory", "os.mkdir as factory", "shutil.rmtree as factory"]


@pytest.mark.parametrize("variant", FACTORIES)
@pytest.mark.parametrize("command", ["predict", "evaluate", "resume", "continue", "report"])
def test_factory_never_runs(new_case, command: str, variant: str) -> None:
    """model.json naming a factory that runs code: refused (exit 2, one line) without --trust-factory."""
    argv, may_change, _ = COMMANDS[command]
    case = new_case()
    factory_module(case.root / "runs" / "a", case.marker(), variant)
    case.snapshot()
    codes = (
        frozenset({2}) if command in ("predict", "evaluate") else frozenset({0, 2})
    )  # continue: job.toml
    case.run(argv, note=f"model.json: {variant}", may_change=may_change, codes=codes)


NEWEST = "checkpoints/epoch-0003"


@pytest.mark.parametrize("op", ["truncate", "zero", "swap", "pickle"])
@pytest.mark.parametrize("part", ["model.pt", "state.pt", "meta.json"])
@pytest.mark.parametrize("command", ["resume", "continue"])
def test_resume_falls_back(new_case, command: str, part: str, op: str) -> None:
    """The newest checkpoint damaged, the one before intact: resume/continue succeed from the older one."""
    argv, may_change, _ = COMMANDS[command]
    case = new_case()
    note = apply(case, [(op, f"{NEWEST}/{part}", 7)])
    case.snapshot()
    case.run(argv, note=note, may_change=may_change, codes=frozenset({0}))

"""Every ```python block in README.md runs as written, so the documentation never rots."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def python_blocks() -> list[tuple[str, str]]:
    """(heading, code) for each fenced python block, in order."""
    heading = "top"
    blocks = []
    in_code = False
    code: list[str] = []
    for line in README.read_text().splitlines():
        if not in_code and line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif not in_code and line.strip() == "```python":
            in_code, code = True, []
        elif in_code and line.strip() == "```":
            in_code = False
            blocks.append((heading, "\n".join(code)))
        elif in_code:
            code.append(line)
    return blocks


BLOCKS = python_blocks()


@pytest.mark.parametrize(
    "code", [code for _, code in BLOCKS], ids=[re.sub(r"\W+", "-", h)[:40] for h, _ in BLOCKS]
)
def test_readme_example_runs(code: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"README example failed:\n{code}\n---\n{proc.stderr[-3000:]}"


def test_readme_shows_the_two_commands() -> None:
    text = README.read_text()
    assert "./run demo" in text and "./run test" in text

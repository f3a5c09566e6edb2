"""Every ```python block in README.md and docs/**/*.md runs as written, so the documentation never rots.

Each block runs in a fresh interpreter with the working directory a temporary folder. Blocks that must not run
(output, shell sessions, TOML) use another fence language: ```text, ```console, ```bash, ```toml.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]


def python_blocks(page: Path) -> list[tuple[str, str]]:
    """(heading, code) for each fenced python block of one page, in order."""
    heading = "top"
    blocks = []
    in_code = False
    fence = ""
    code: list[str] = []
    for line in page.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not in_code and line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif not in_code and stripped.startswith("```"):
            in_code, fence, code = True, stripped[3:].strip(), []
        elif in_code and stripped == "```":
            in_code = False
            if fence == "python":
                blocks.append((heading, "\n".join(code)))
        elif in_code:
            code.append(line)
    return blocks


def page_name(page: Path) -> str:
    return page.relative_to(ROOT).with_suffix("").as_posix().removeprefix("docs/")


def collect() -> list[pytest.param]:
    params = []
    for page in PAGES:
        for heading, code in python_blocks(page):
            slug = re.sub(r"\W+", "-", heading).strip("-")[:40]
            params.append(pytest.param(code, id=f"{page_name(page)}:{slug}"))
    return params


@pytest.mark.parametrize("code", collect())
def test_docs_example_runs(code: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"docs example failed:\n{code}\n---\n{proc.stderr[-3000:]}"


def test_readme_shows_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert "./run demo" in text and "./run test" in text


def test_every_docs_page_is_in_the_nav() -> None:
    """mkdocs --strict only warns about a page missing from the nav at INFO level: check it here."""
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in sorted((ROOT / "docs").rglob("*.md")):
        assert page.relative_to(ROOT / "docs").as_posix() in nav, (
            f"{page} is not in mkdocs.yml's nav"
        )

"""The report in a real headless browser (Debian's chromium): it loads with no console errors, and a
screenshot of the requested size shows the charts.

Install the browser with ``apt-get update && apt-get install -y chromium``; without /usr/bin/chromium these
tests are skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from epochpilot.report import compare_runs, write_report
from epochpilot.report.page import page

from .runs import history_rows, summary_for, write_run

CHROMIUM = "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless chromium not installed: apt-get update && apt-get install -y chromium",
)
WIDTH, HEIGHT = 1280, 2400


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={tmp / 'chromium-profile'}",
        "--enable-logging=stderr",
        "--v=0",
        *args,
    ]
    env = {**os.environ, "HOME": str(tmp)}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env, check=False)


def _load(tmp: Path, html: Path) -> tuple[str, str]:
    """(root <html> tag after load, errors recorded by the page) plus console lines from stderr."""
    proc = _chromium(tmp, "--virtual-time-budget=5000", "--dump-dom", html.resolve().as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    root = re.search(r"<html[^>]*>", proc.stdout)
    assert root, proc.stdout[:500]
    recorded = re.search(r'<pre id="ep-errors"[^>]*>(.*?)</pre>', proc.stdout, re.S)
    console = "\n".join(line for line in proc.stderr.splitlines() if ":CONSOLE" in line)
    return root.group(0), (recorded.group(1) if recorded else "") + console


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _pixels_near(rgb: np.ndarray, hex_color: str, tol: float = 0.12) -> int:
    target = np.array([int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(rgb - target).max(axis=-1) < tol).sum())


@pytest.mark.slow
def test_report_loads_without_errors_and_screenshot_shows_the_charts(run_dir, tmp_path):
    html = write_report(run_dir)
    root, errors = _load(tmp_path, html)
    assert 'data-loaded="1"' in root, "the load event never fired"
    assert 'data-errors="0"' in root, f"the page recorded errors: {errors}"
    assert errors.strip() == ""

    shot = tmp_path / "shot.png"
    proc = _chromium(
        tmp_path, f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}", html.as_uri()
    )
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    assert _png_size(shot) == (WIDTH, HEIGHT)
    import matplotlib.image

    rgb = matplotlib.image.imread(str(shot))[..., :3]
    assert rgb.std() > 0.05, "the screenshot is blank"
    assert len(np.unique((rgb * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 200
    # the charts are drawn: the train (blue) and validation (orange) curves are visible on screen
    assert _pixels_near(rgb, "#2563eb") > 500
    assert _pixels_near(rgb, "#ea580c") > 500


def test_error_recorder_catches_script_and_image_errors(tmp_path):
    """The negative control: a page with a broken script and a missing image reports both."""
    broken = tmp_path / "broken.html"
    broken.write_text(
        page("broken", '<img alt="gone" src="nope.png"><script>notAFunction();</script>')
    )
    root, errors = _load(tmp_path, broken)
    assert 'data-loaded="1"' in root
    assert not re.search(r'data-errors="0"', root)
    assert "notAFunction" in errors and "nope.png" in errors


@pytest.mark.slow
def test_minimal_adapter_run_and_comparison_render_cleanly(tmp_path):
    """A run with only history.jsonl + summary.json (Keras-style keys), and a comparison page."""
    rows = [
        {"epoch": r["epoch"], "loss": r["train_loss"], "val_loss": r["val_loss"]}
        for r in history_rows(30, seed=3)
    ]
    minimal = write_run(tmp_path / "keras-run", rows, {"monitor": "val_loss", "mode": "min"}, None)
    full = history_rows(40, seed=4, overfit=False)
    other = write_run(tmp_path / "other", full, summary_for(full))
    for html in (write_report(minimal), compare_runs([minimal, other], tmp_path / "compare.html")):
        root, errors = _load(tmp_path, html)
        assert 'data-loaded="1"' in root and 'data-errors="0"' in root, errors

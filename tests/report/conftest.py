"""Fixtures for the report tests: a hand-written run directory (see runs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .runs import stopped_run, summary_for, write_run


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A complete epochpilot-style run directory of an overfitting run stopped by patience."""
    rows = stopped_run()
    return write_run(tmp_path / "digits-mlp", rows, summary_for(rows))

"""Run reports: ``write_report(run_dir)`` writes a self-contained report.html + plots/*.png;
``compare_runs(run_dirs, out_path)`` overlays several runs in one page.

Both read only the run-directory files (history.jsonl required; summary.json and config.toml optional), so
runs from any framework adapter can be reported on.
"""

from __future__ import annotations

from epochpilot.report.compare import compare_runs
from epochpilot.report.html import write_report
from epochpilot.report.load import ReportError, RunData, load_run

__all__ = ["ReportError", "RunData", "compare_runs", "load_run", "write_report"]

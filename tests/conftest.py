"""Suite-wide settings: one torch thread (tiny test models run faster without thread hand-offs on 2 cores)."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _no_fit_report(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """``fit(run_dir=...)`` renders report.html (about 1 s of matplotlib per fit); only the tests about that
    report (``test_fit_report``, marked ``fit_report``) pay for it, the rest of the suite skips the render."""
    if "fit_report" in request.node.nodeid or request.node.get_closest_marker("fit_report"):
        return
    monkeypatch.setattr("epochpilot.train.trainer.write_run_report", lambda run_dir: None)

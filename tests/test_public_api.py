"""The public API: every name in __all__ resolves, and the pure core imports without torch."""

from __future__ import annotations

import subprocess
import sys

import epochpilot


def test_every_public_name_resolves():
    for name in epochpilot.__all__:
        assert getattr(epochpilot, name) is not None, name


def test_pure_core_does_not_import_torch():
    code = (
        "import sys, epochpilot, epochpilot.budget, epochpilot.schedules, epochpilot.stopping, epochpilot.curves;"
        "assert 'torch' not in sys.modules, 'torch imported';"
        "epochpilot.EarlyStopping('val_loss', 'min').update(1, {'val_loss': 1.0})"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_training_terminated_is_public():
    """What ``fit`` raises on SIGTERM can be caught by its public name, from the package and from train."""
    import epochpilot.train
    from epochpilot.train.signals import TrainingTerminated

    assert (
        "TrainingTerminated" in epochpilot.__all__
        and "TrainingTerminated" in epochpilot.train.__all__
    )
    assert epochpilot.TrainingTerminated is TrainingTerminated
    assert epochpilot.train.TrainingTerminated is TrainingTerminated

"""``fit(compile=True)``: training runs through ``torch.compile``; checkpoints keep the model's own keys and a
compiled run resumes. Skipped with a message where this machine cannot compile (no C++ compiler)."""

from __future__ import annotations

import pytest
import torch

from epochpilot.train import fit
from epochpilot.train.checkpoint import load_checkpoint


def _can_compile() -> str | None:
    try:
        torch.compile(lambda x: x * 2 + 1)(torch.ones(3))
    except Exception as exc:  # noqa: BLE001 - any failure means: not on this machine
        return f"torch.compile does not work here ({type(exc).__name__}: {str(exc)[:120]})"
    return None


def _model() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))


@pytest.mark.slow
def test_compiled_training_checkpoints_and_resumes(tmp_path):
    why = _can_compile()
    if why:
        pytest.skip(why)
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(300, 8, generator=g), torch.randint(0, 3, (300,), generator=g)
    data = dict(train_data=(X[:250], y[:250]), val_data=(X[250:], y[250:]))
    run_dir = tmp_path / "run"
    kw = dict(seed=0, stopper=False, report=False)
    compiled = fit(_model(), **data, max_epochs=2, compile=True, run_dir=run_dir, **kw)
    plain = fit(_model(), **data, max_epochs=2, **kw)
    for p, q in zip(compiled.model.parameters(), plain.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    parts = load_checkpoint(sorted((run_dir / "checkpoints").glob("epoch-*"))[-1])
    assert set(parts["model"]) == set(_model().state_dict())  # no "_orig_mod." prefix
    more = fit(_model(), **data, max_epochs=3, compile=True, run_dir=run_dir, resume="auto", **kw)
    assert [r["epoch"] for r in more.history] == [1, 2, 3]
    assert more.history[:2] == compiled.history[:2]

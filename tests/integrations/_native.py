"""A run of epochpilot's own trainer whose validation curve the adapter tests replay."""

from __future__ import annotations

from typing import Any

_RUNS: dict[str, Any] = {}


def native_run(policy: Any, max_epochs: int = 30) -> Any:
    """Overfit a small MLP on noisy labels with epochpilot's Trainer; return its FitResult (cached per
    policy, so the three adapters' tests replay the same run)."""
    key = f"{policy!r}/{max_epochs}"
    if key not in _RUNS:
        _RUNS[key] = _run(policy, max_epochs)
    return _RUNS[key]


def _run(policy: Any, max_epochs: int) -> Any:
    import torch

    from epochpilot.train import fit

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 6, generator=g)
    y = ((x[:, 0] + torch.randn(96, generator=g)) > 0).long()
    model = torch.nn.Sequential(torch.nn.Linear(6, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
    return fit(
        model,
        (x[:64], y[:64]),
        (x[64:], y[64:]),
        max_epochs=max_epochs,
        stopper=policy,
        lr=0.01,
        batch_size=16,
        seed=0,
        progress=False,
        checkpoint_every=None,
    )

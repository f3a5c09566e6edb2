"""Tests for epochpilot.train.lr_find: exponential sweep, divergence stop, bitwise restore, suggestion, plot."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from epochpilot.train.lr_find import LRFindResult, _valley, lr_find, suggest_lr


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one intra-op thread avoids OpenMP spin-waits on a shared, loaded CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _regression(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 5, generator=g)
    y = X @ torch.tensor([1.0, -2.0, 0.5, 3.0, 0.0]) + 0.1 * torch.randn(n, generator=g)
    return X, y[:, None]


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(5, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 1)
    )


def test_model_and_optimizer_state_restored_bitwise():
    model = _net()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    X, y = _regression()
    for _ in range(3):  # give the optimizer some state to restore
        opt.zero_grad()
        nn.functional.mse_loss(model(X[:32]), y[:32]).backward()
        opt.step()
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt_before = opt.state_dict()
    exp_avg = [opt.state[p]["exp_avg"].clone() for p in model.parameters()]
    result = lr_find(model, (X, y), loss_fn=nn.functional.mse_loss, optimizer=opt, num_steps=40)
    assert len(result.lrs) > 5
    after = model.state_dict()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key  # weights and BatchNorm buffers
    assert not model.training
    assert (
        [g["lr"] for g in opt.param_groups]
        == [g["lr"] for g in opt_before["param_groups"]]
        == [3e-3]
    )
    for p, saved in zip(model.parameters(), exp_avg, strict=True):
        assert torch.equal(opt.state[p]["exp_avg"], saved)
    assert opt.state[next(model.parameters())]["step"] == 3


def test_sweep_is_exponential_and_reaches_end_without_divergence():
    X, y = _regression()
    model = nn.Linear(5, 1)
    result = lr_find(
        model, (X, y), loss_fn=nn.functional.mse_loss, start_lr=1e-6, end_lr=1e-2, num_steps=30
    )
    assert not result.diverged and len(result.lrs) == 30
    assert result.lrs[0] == pytest.approx(1e-6) and result.lrs[-1] == pytest.approx(1e-2)
    ratios = np.diff(np.log(result.lrs))
    assert np.allclose(ratios, ratios[0])
    assert 1e-6 <= result.suggestion <= 1e-2


def test_divergence_stops_the_sweep_early():
    X, y = _regression()
    model = nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    result = lr_find(
        model, (X, y), loss_fn=nn.functional.mse_loss, optimizer=opt, end_lr=100, num_steps=200
    )
    assert result.diverged and len(result.lrs) < 200
    last = result.losses[-1]
    assert not math.isfinite(last) or last > 4 * min(result.losses)
    # plain SGD on this quadratic diverges above ~2 / largest Hessian eigenvalue; the suggestion is below it
    hessian = 2 * (X.T @ X / len(X))
    limit = 2 / float(torch.linalg.eigvalsh(hessian).max())
    assert result.suggestion < limit


def test_classification_suggestion_is_in_a_useful_range():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(256, 10, generator=g)
    y = (X[:, 0] + X[:, 1] > 0).long()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 2))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(X, y), batch_size=64, shuffle=True
    )
    result = lr_find(model, loader, loss_fn=nn.functional.cross_entropy, num_steps=80)
    assert 1e-4 <= result.suggestion <= 1.0  # Adam's usable range for this problem
    assert len(result.lrs) == len(result.losses) == len(result.raw_losses)


def test_valley_and_other_rules_on_a_known_curve():
    losses = np.array([5.0, 4.0, 4.5, 3.0, 2.0, 1.0, 1.5, 3.0, 10.0])
    lrs = 10.0 ** np.arange(len(losses))
    # longest decreasing run: 5, 4, 3, 2, 1 (indices 0, 1, 3, 4, 5) -> halfway between 0 and 5 is index 2
    assert _valley(losses) == 2
    assert suggest_lr(lrs, losses) == 100.0
    assert suggest_lr(lrs, losses, "minimum") == pytest.approx(1e5 / 10)
    assert suggest_lr(lrs, losses, "steepest") == lrs[int(np.argmin(np.gradient(losses)))]
    assert suggest_lr([1.0, 2.0], [1.0, 0.5]) is None
    with pytest.raises(ValueError, match="method"):
        suggest_lr(lrs, losses, "best")


def test_plot_writes_a_png(tmp_path):
    result = LRFindResult(
        lrs=(1e-4, 1e-3, 1e-2, 1e-1),
        losses=(1.0, 0.8, 0.5, 2.0),
        raw_losses=(1.0, 0.7, 0.4, 2.5),
        suggestion=1e-3,
        method="valley",
        diverged=True,
    )
    path = result.plot(tmp_path / "plots" / "lr.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"start_lr": 1.0, "end_lr": 0.1}, "start_lr < end_lr"),
        ({"num_steps": 1}, "num_steps"),
        ({"smooth": 1.0}, "smooth"),
        ({"diverge_factor": 1.0}, "diverge_factor"),
        ({"method": "magic"}, "method"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    X, y = _regression(16)
    with pytest.raises(ValueError, match=match):
        lr_find(nn.Linear(5, 1), (X, y), loss_fn=nn.functional.mse_loss, **kwargs)


def test_empty_data_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        lr_find(nn.Linear(5, 1), [], loss_fn=nn.functional.mse_loss)

"""Host reads during ``fit``: a bound per epoch that does not grow with the number of updates per epoch.

On a GPU every read of a device value on the host (``.item()``, ``float(t)``, ``bool(t)``, ``.tolist()``,
``.numpy()``) waits for the queued kernels, so a read per update stalls the pipeline. The CPU test counts the
reads that epochpilot's own code makes (the first caller outside ``torch._tensor`` is an ``epochpilot``
module), from ``fit_start`` to ``fit_end``, for the same run with N and 4N updates per epoch; the counts per
call site must be equal. Reads inside torch itself (the optimizer's CPU step counters) are not epochpilot's
and are left out; the CUDA test, which counts every synchronising call with torch's sync debug mode, covers
them where a GPU exists.
"""

from __future__ import annotations

import collections
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from epochpilot.core.stopping import EarlyStopping
from epochpilot.train import Callback, fit

#: Tensor methods that hand a value to the host (each a device sync on a GPU).
READS = ("item", "tolist", "numpy", "__float__", "__int__", "__index__", "__bool__", "__array__")
#: torch's Python-level Tensor methods that read through one of the above (``f"{t:.4g}"`` calls ``item``):
#: the read is attributed to their caller.
PASS_THROUGH = ("torch._tensor", "torch._tensor_str", "torch.overrides")
#: epochpilot modules whose reads are host tensors by construction: the batch sampler's index lists.
HOST_ONLY = ("epochpilot.train.data",)
#: reads per epoch allowed: the epoch-end totals (one ``tolist``; a non-finite loss shows there too).
MAX_PER_EPOCH = 1
EPOCHS = 3


class Reads:
    """Host reads by epochpilot code while ``active``, per call site ``module:line``."""

    def __init__(self) -> None:
        self.active = False
        self.sites: collections.Counter[str] = collections.Counter()

    def note(self) -> None:
        frame = sys._getframe(2)  # the caller of the patched method
        while frame is not None and frame.f_globals.get("__name__", "") in PASS_THROUGH:
            frame = frame.f_back
        if frame is None:
            return
        module = frame.f_globals.get("__name__", "")
        if module.startswith("epochpilot.") and not module.startswith(HOST_ONLY):
            self.sites[f"{module}:{frame.f_lineno}"] += 1

    @property
    def total(self) -> int:
        return sum(self.sites.values())


@contextmanager
def counting(monkeypatch: pytest.MonkeyPatch) -> Iterator[Reads]:
    """Patch the host-read methods of ``torch.Tensor`` to count into a :class:`Reads` (off until a callback
    switches it on)."""
    reads = Reads()
    with monkeypatch.context() as m:
        for name in READS:
            real = getattr(torch.Tensor, name)

            def patched(self: torch.Tensor, *args: Any, _real: Any = real, **kw: Any) -> Any:
                if reads.active:
                    reads.note()
                return _real(self, *args, **kw)

            m.setattr(torch.Tensor, name, patched)
        yield reads


class Window(Callback):
    """Switches counting on at ``fit_start`` and off at ``fit_end``: the epochs, their ends and the checkpoints."""

    state_key = "sync_window"

    def __init__(self, reads: Reads) -> None:
        self.reads = reads

    def on_fit_start(self, state: Any) -> None:
        self.reads.active = True

    def on_fit_end(self, state: Any) -> None:
        self.reads.active = False


class Noisy(torch.utils.data.Dataset):
    def __init__(self, X: torch.Tensor, y: torch.Tensor) -> None:
        self.X, self.y = X, y

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.X[i], self.y[i]


def _data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    X = rng.normal(size=(n, 4)) + y[:, None] * 1.5
    return torch.tensor(X, dtype=torch.float32), torch.tensor(y)


def _run(
    monkeypatch: pytest.MonkeyPatch, tmp: Path, updates: int, kind: str, device: str = "cpu"
) -> Reads:
    """``fit`` for EPOCHS epochs of ``updates`` updates (batch 8), stopper, checkpoint every epoch, history
    and a metric on; the validation set is the same for every ``updates``."""
    X, y = _data(8 * updates)
    val = _data(48)
    train: Any = (X, y)
    if kind == "dataset":
        train = Noisy(X, y)
    elif kind == "loader":
        train = torch.utils.data.DataLoader(Noisy(X, y), batch_size=8, shuffle=True)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    with counting(monkeypatch) as reads:
        fit(
            model,
            train,
            val,
            batch_size=8,
            max_epochs=EPOCHS,
            seed=0,
            stopper=EarlyStopping("val_loss", "min", patience=100),
            metrics=["accuracy"],
            run_dir=tmp / f"{kind}-{updates}",
            checkpoint_every=1,
            progress=False,
            device=device,
            callbacks=[Window(reads)],
        )
    return reads


def _grown(few: Reads, many: Reads) -> str:
    sites = sorted(set(few.sites) | set(many.sites))
    return "; ".join(
        f"{s}: {few.sites[s]} -> {many.sites[s]}" for s in sites if few.sites[s] != many.sites[s]
    )


@pytest.mark.parametrize("kind", ["tensors", "dataset", "loader"])
def test_host_reads_do_not_grow_with_updates(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kind: str
) -> None:
    """Reads from fit_start to fit_end: the same with 8 and 32 updates per epoch, at most MAX_PER_EPOCH each."""
    few = _run(monkeypatch, tmp_path, 8, kind)
    many = _run(monkeypatch, tmp_path, 32, kind)
    assert few.sites == many.sites, (
        f"host reads grow with the updates per epoch (site: 8 -> 32 updates/epoch): {_grown(few, many)}"
    )
    assert many.total <= MAX_PER_EPOCH * EPOCHS, (
        f"{many.total} host reads in {EPOCHS} epochs: {dict(many.sites)}"
    )


def test_counter_sees_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The counter itself: every read form from an epochpilot module is seen, torch-internal ones are not."""
    t = torch.tensor(1.5)
    with counting(monkeypatch) as reads:
        reads.active = True
        scope = {"__name__": "epochpilot.train.fake", "t": t, "np": np}
        exec(  # noqa: S102 - code run as if it lived in an epochpilot module
            "t.item(); float(t); bool(t); int(t); t.tolist(); t.numpy(); np.asarray(t); f'{t:.3g}'",
            scope,
        )
        seen = reads.total
        torch.optim.Adam([torch.zeros(2, requires_grad=True)]).step()  # reads inside torch only
        reads.active = False
    assert seen >= 8
    assert reads.total == seen


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: torch's sync debug mode")
def test_cuda_syncs_do_not_grow_with_updates(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """On a GPU: every synchronising call (torch's sync debug mode, epochpilot's and torch's own) during fit,
    the same count with 8 and 32 updates per epoch."""

    def syncs(updates: int) -> int:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                _run(monkeypatch, tmp_path, updates, "tensors", device="cuda")
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message).lower() for w in caught)

    few, many = syncs(8), syncs(32)
    assert few == many, f"device syncs grow with the updates per epoch: {few} -> {many}"

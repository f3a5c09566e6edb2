"""The adapter tests run tiny models: one torch thread (the machine is shared), no hub access."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    try:
        import torch
    except ImportError:  # the Keras tests may run on another backend
        return
    torch.set_num_threads(1)

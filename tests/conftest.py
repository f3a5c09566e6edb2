"""Suite-wide settings: one torch thread (tiny test models run faster without thread hand-offs on 2 cores)."""

from __future__ import annotations

import torch

torch.set_num_threads(1)

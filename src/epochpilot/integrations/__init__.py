"""Adapters that put epochpilot's stop policies, schedules, history and report inside other trainers.

Import the one you need; importing this package imports no framework:

- ``epochpilot.integrations.keras.EpochPilot``: a Keras 3 callback (any backend)
- ``epochpilot.integrations.lightning.EpochPilot``: a Lightning callback
- ``epochpilot.integrations.transformers.EpochPilot`` and ``to_hf_scheduler``: a Hugging Face ``TrainerCallback``

Each writes the same run directory as epochpilot's own trainer, so ``epochpilot report RUN_DIR`` works on it.
"""

from __future__ import annotations

__all__: list[str] = []

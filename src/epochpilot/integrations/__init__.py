"""Adapters that put epochpilot's stop policies, schedules, history and report inside other trainers.

Import the one you need; importing this package imports no framework:

- ``epochpilot.integrations.keras.EpochPilot``: a Keras 3 callback (any backend)
- ``epochpilot.integrations.lightning.EpochPilot``: a Lightning callback
- ``epochpilot.integrations.transformers.EpochPilot`` and ``to_hf_scheduler``: a Hugging Face ``TrainerCallback``

All three take ``EpochPilot(policy=None, ..., run_dir=None, restore_best=True, *, verbose=True,
save_model=None, report=True)``: the policy is optional (None is ``epochpilot.fit``'s default; "early" and
"forecast" are accepted too, a budget read from the trainer), one line is printed when training ends, and
each writes the same run directory as epochpilot's own trainer (so ``epochpilot report RUN_DIR`` works on
it) plus the kept model in the framework's format: ``model.keras``, ``model.ckpt``, ``model/``.
"""

from __future__ import annotations

__all__: list[str] = []

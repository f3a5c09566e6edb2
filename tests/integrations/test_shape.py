"""One constructor shape for the three adapters: the policy optional (None is ``epochpilot.fit``'s default),
and the same keywords with the same defaults."""

from __future__ import annotations

import importlib
import inspect
import os

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED = {
    "policy": None,
    "run_dir": None,
    "restore_best": True,
    "verbose": True,
    "save_model": None,
    "report": True,
}
FRAMEWORKS = {"keras": "keras", "lightning": "lightning.pytorch", "transformers": "transformers"}


@pytest.mark.parametrize("adapter", sorted(FRAMEWORKS))
def test_every_adapter_takes_the_same_keywords_with_the_same_defaults(adapter: str) -> None:
    pytest.importorskip(FRAMEWORKS[adapter])
    pilot_class = importlib.import_module(f"epochpilot.integrations.{adapter}").EpochPilot
    params = inspect.signature(pilot_class.__init__).parameters
    assert {name: params[name].default for name in SHARED} == SHARED
    assert next(iter(list(params)[1:])) == "policy"  # the one positional everybody passes first
    for name in ("verbose", "save_model", "report"):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
    pilot = pilot_class()
    assert (pilot.policy.monitor, pilot.policy.patience) == ("val_loss", 10)
    assert pilot.core.spec == "auto" and pilot.save_model is False
    assert pilot_class(run_dir="unused").save_model is True

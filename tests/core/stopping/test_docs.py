"""Every stopping module's docstring examples run and print what they claim."""

from __future__ import annotations

import doctest
import importlib

import pytest

import epochpilot.core.stopping as stopping

MODULES = ["base", "early", "prechelt", "combine", "smoothing"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(f"epochpilot.core.stopping.{name}")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_every_exported_name_is_documented():
    for name in stopping.__all__:
        obj = getattr(stopping, name)
        if callable(obj):
            assert (obj.__doc__ or "").strip(), f"{name} has no docstring"

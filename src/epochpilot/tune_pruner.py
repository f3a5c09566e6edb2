"""Old path of :mod:`epochpilot.select.tune.pruner` (moved in the package layout of issue 16): importing it gives that very module."""

import sys

from epochpilot.select.tune import pruner as _module
from epochpilot.select.tune.pruner import *  # noqa: F403 - its names, for type checkers

sys.modules[__name__] = _module

"""Old path of :mod:`epochpilot.select.tune.make` (moved in the package layout of issue 16): importing it gives that very module."""

import sys

from epochpilot.select.tune import make as _module
from epochpilot.select.tune.make import *  # noqa: F403 - its names, for type checkers

sys.modules[__name__] = _module

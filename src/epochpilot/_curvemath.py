"""Old path of :mod:`epochpilot.core.curves.curvemath` (moved in the package layout of issue 16): importing it gives that very module."""

import sys

from epochpilot.core.curves import curvemath as _module
from epochpilot.core.curves.curvemath import *  # noqa: F403 - its names, for type checkers

sys.modules[__name__] = _module

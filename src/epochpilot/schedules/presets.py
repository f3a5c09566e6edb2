"""Old path of :mod:`epochpilot.core.schedules.presets` (moved in the package layout of issue 16): importing it gives that very module."""

import sys

from epochpilot.core.schedules import presets as _module
from epochpilot.core.schedules.presets import *  # noqa: F403 - its names, for type checkers

sys.modules[__name__] = _module

"""Old path of :mod:`epochpilot.core.budget` (moved in the package layout of issue 16): importing it gives that very module."""

import sys

from epochpilot.core import budget as _module
from epochpilot.core.budget import *  # noqa: F403 - its names, for type checkers

sys.modules[__name__] = _module

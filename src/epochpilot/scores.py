"""Old path of :mod:`epochpilot.core.scores` (moved in the package layout of issue 16): importing it gives that very module."""

import sys

from epochpilot.core import scores as _module
from epochpilot.core.scores import *  # noqa: F403 - its names, for type checkers

sys.modules[__name__] = _module

"""Old path of :mod:`epochpilot.core.stopping._prior` (moved in the package layout of issue 16): importing it gives that very module."""

import sys

from epochpilot.core.stopping import _prior as _module
from epochpilot.core.stopping._prior import *  # noqa: F403 - its names, for type checkers

sys.modules[__name__] = _module

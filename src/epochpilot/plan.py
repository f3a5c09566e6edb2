"""Old path of :mod:`epochpilot.core.plan` (moved in the package layout of issue 16): importing it gives that very module."""

import sys

from epochpilot.core import plan as _module
from epochpilot.core.plan import *  # noqa: F403 - its names, for type checkers

sys.modules[__name__] = _module

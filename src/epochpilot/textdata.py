"""Old path of :mod:`epochpilot.data.text` (moved in the package layout of issue 16): importing it gives that very module."""

import sys

from epochpilot.data import text as _module
from epochpilot.data.text import *  # noqa: F403 - its names, for type checkers

sys.modules[__name__] = _module

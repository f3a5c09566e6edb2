"""Old path of :mod:`epochpilot.data.csvfile` (moved in the package layout of issue 16): importing it gives that very module."""

import sys

from epochpilot.data import csvfile as _module
from epochpilot.data.csvfile import *  # noqa: F403 - its names, for type checkers

sys.modules[__name__] = _module

"""Old path of :mod:`epochpilot.jobs.check` (moved in the package layout of issue 16): importing it gives that very module."""

import sys

from epochpilot.jobs import check as _module
from epochpilot.jobs.check import *  # noqa: F403 - its names, for type checkers

sys.modules[__name__] = _module

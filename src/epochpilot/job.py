"""Old path of :mod:`epochpilot.jobs.spec` (moved in the package layout of issue 16): importing it gives that very module."""

import sys

from epochpilot.jobs import spec as _module
from epochpilot.jobs.spec import *  # noqa: F403 - its names, for type checkers

sys.modules[__name__] = _module

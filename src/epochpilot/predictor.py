"""Old path of :mod:`epochpilot.jobs.predictor` (moved in the package layout of issue 16): importing it gives that very module."""

import sys

from epochpilot.jobs import predictor as _module
from epochpilot.jobs.predictor import *  # noqa: F403 - its names, for type checkers

sys.modules[__name__] = _module

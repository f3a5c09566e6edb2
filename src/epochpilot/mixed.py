"""Old path of :mod:`epochpilot.finetune.mixed` (moved in the package layout of issue 16): importing it gives that very module."""

import sys

from epochpilot.finetune import mixed as _module
from epochpilot.finetune.mixed import *  # noqa: F403 - its names, for type checkers

sys.modules[__name__] = _module

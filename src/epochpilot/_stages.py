"""Old path of :mod:`epochpilot.finetune.stages` (moved in the package layout of issue 16): importing it gives that very module."""

import sys

from epochpilot.finetune import stages as _module
from epochpilot.finetune.stages import *  # noqa: F403 - its names, for type checkers

sys.modules[__name__] = _module

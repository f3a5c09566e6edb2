"""Old path of :mod:`epochpilot.finetune.probe` (moved in the package layout of issue 16): importing it gives that very module."""

import sys

from epochpilot.finetune import probe as _module
from epochpilot.finetune.probe import *  # noqa: F403 - its names, for type checkers

sys.modules[__name__] = _module

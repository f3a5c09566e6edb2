"""Old path of :mod:`epochpilot.data.audit.report` (moved in the package layout of issue 16): importing it gives that very module."""

import sys

from epochpilot.data.audit import report as _module
from epochpilot.data.audit.report import *  # noqa: F403 - its names, for type checkers

sys.modules[__name__] = _module

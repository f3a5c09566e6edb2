"""``python -m epochpilot``: the same as the ``epochpilot`` command."""

import sys

from epochpilot.cli import main

sys.exit(main())

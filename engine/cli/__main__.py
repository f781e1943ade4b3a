"""``python -m engine.cli``: the same as the ``deep-musician`` command."""
from __future__ import annotations

import sys

from engine.cli import main

sys.exit(main())

"""``python -m engine.cli``: the same as the ``deep-musician`` command."""
from __future__ import annotations

from engine.cli import run

run()

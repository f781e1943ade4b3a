"""Deep Musician bridge layer: score types, file formats, wire protocol. Never imports torch."""
from __future__ import annotations

__version__ = "0.1.0"

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def tiny_bach(tmp_path_factory) -> Path:
    """A real, tiny Bach-chorale dataset built from the music21 corpus (first 24 files)."""
    from models.data import corpus as ds

    out = tmp_path_factory.mktemp("data")
    ds.build("bach", out_dir=out, limit=24, jobs=2, progress=False)
    return out / "bach.npz"

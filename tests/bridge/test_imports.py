"""The bridge imports without torch: DAW scripts and clients install only the bridge's light
dependencies, and a torch import would cost them seconds and a gigabyte."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BRIDGE_MODULES = sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for p in (ROOT / "bridge").rglob("*.py")
)

# Imports each module in turn and prints the first one after which torch is loaded, if any.
PROBE = """
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
    if "torch" in sys.modules:
        print(name)
        break
"""


def test_every_bridge_module_imports_without_torch() -> None:
    assert {"bridge", "bridge.midi", "bridge.scorefile", "bridge.synth"} <= set(BRIDGE_MODULES)
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *BRIDGE_MODULES], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "", f"importing {result.stdout.strip()} loads torch; the bridge never may"


def test_the_soundfont_settings_have_one_home() -> None:
    """The synthesiser owns its SoundFont finder and settings; nothing else defines them."""
    root = Path(__file__).resolve().parents[2]
    pattern = re.compile(r"^(def find_soundfont\b|(GAIN|SAMPLE_RATES_HZ|SOUNDFONT_ENV) = )", re.M)
    homes = sorted(str(p.relative_to(root)) for package in ("bridge", "engine", "models")
                   for p in (root / package).rglob("*.py") if pattern.search(p.read_text()))
    assert homes == ["bridge/synth.py"]

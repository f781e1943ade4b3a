"""``arrange --engine`` is a client: it never imports torch (issue 17's "Errors" and "Start-up"
bullets: with no engine listening it took seconds to say so, most of them importing torch), and
what it writes through a real engine is what the embedded run writes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine.test_server import Engine, free_port

ROOT = Path(__file__).resolve().parents[2]
PIANO = ROOT / "examples" / "piano.mid"
PROBE = ("import sys\nfrom engine.cli import main\nrc = main(sys.argv[1:])\n"
         "print('torch imported' if 'torch' in sys.modules else 'no torch', rc)")


def _arrange(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE, "arrange", str(PIANO), *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_with_no_engine_listening_the_client_says_so_without_importing_torch(tmp_path):
    out = tmp_path / "out.mid"
    r = _arrange("-o", str(out), "--engine", f"127.0.0.1:{free_port()}")
    assert r.stdout.strip() == "no torch 2" and "no engine answers at tcp://127.0.0.1:" in r.stderr, r.stderr
    assert not out.exists()


@pytest.mark.timeout(300)
def test_through_a_real_engine_the_client_writes_the_embedded_result_without_torch(tmp_path):
    engine = Engine(tmp_path).wait_ready()
    try:
        served = _arrange("-o", str(tmp_path / "served.mid"), "--engine", engine.endpoint)
    finally:
        engine.stop()
    assert served.stdout.splitlines()[-1] == "no torch 0", served.stderr
    embedded = _arrange("-o", str(tmp_path / "embedded.mid"))
    assert embedded.stdout.splitlines()[-1] == "torch imported 0", embedded.stderr
    assert (tmp_path / "served.mid").read_bytes() == (tmp_path / "embedded.mid").read_bytes()

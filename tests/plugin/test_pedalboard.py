"""pedalboard loads the VST3 fast (the Makefile cuts DPF's 2080 hidden MIDI-CC parameters) and plays
it in Render mode against a real engine, like DawDreamer."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_render import check_rendered

BIN = Path(__file__).resolve().parents[2] / "plugin_stub" / "bin"


@pytest.mark.slow
def test_pedalboard_loads_the_vst3_fast_and_renders(built: Path, monkeypatch: pytest.MonkeyPatch,
                                                     real_engine) -> None:
    pedalboard = pytest.importorskip("pedalboard", reason="pip install pedalboard to load the VST3 with it")
    endpoint, _ = real_engine
    monkeypatch.setenv("DEEP_MUSICIAN_ENDPOINT", endpoint)
    start = time.monotonic()
    # pedalboard plays silence into a plugin for up to initialization_timeout (10 s by default) until
    # its output is not silent; an instrument with no notes yet stays silent, so do not wait.
    plugin = pedalboard.load_plugin(str(BIN / "DeepMusician.vst3"), initialization_timeout=0.1)
    load_s = time.monotonic() - start
    names = list(plugin.parameters)
    cc = [n for n in names if n.startswith("midi_ch")]
    assert not cc, f"DPF's MIDI-CC parameters are back: {cc[:4]}"
    assert {"mode", "ensemble", "offline_wait_for_engine", "render_program"} <= set(names), names
    assert load_s < 3.0, f"pedalboard took {load_s:.1f} s to load the VST3"

    sample_rate_hz, block = 44100, 512
    plugin.mode = "Render"  # the first parameter: DPF 1.6's VST3 wrapper refused it (fixed in the copy)
    plugin.offline_wait_for_engine = True
    assert plugin.mode == "Render"
    notes = [(0.5, 69), (1.25, 76)]
    messages = [m for s, p in notes for m in ((bytes([0x90, p, 100]), s), (bytes([0x80, p, 0]), s + 0.5))]
    audio = plugin(messages, duration=2.5, sample_rate=sample_rate_hz, num_channels=2, buffer_size=block)
    latency = int(plugin.reported_latency_samples)
    assert latency == block  # 6 ms of engine headroom in whole 512-frame blocks
    check_rendered(audio.T, sample_rate_hz, latency, [(int(s * sample_rate_hz), p) for s, p in notes])

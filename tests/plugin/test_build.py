"""The plugin builds in all four formats and runs in a real host, with and without an engine.

The fake engine here is a ROUTER socket that decodes every request with bridge.protocol, so the
C++ side's msgpack headers and note frames are checked by the same code the real engine uses.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from bridge import protocol

ROOT = Path(__file__).resolve().parents[2]
STUB = ROOT / "plugin_stub"
BIN = STUB / "bin"
ARTEFACTS = {
    "vst3": BIN / "DeepMusician.vst3" / "Contents" / "x86_64-linux" / "DeepMusician.so",
    "clap": BIN / "DeepMusician.clap",
    "lv2": BIN / "DeepMusician.lv2" / "DeepMusician.so",
    "lv2 ttl": BIN / "DeepMusician.lv2" / "DeepMusician.ttl",
    "lv2 manifest": BIN / "DeepMusician.lv2" / "manifest.ttl",
    "jack": BIN / "DeepMusician",
}
SAMPLE_RATE_HZ = 44100
BLOCK = 512


def test_make_builds_all_four_formats(built: Path) -> None:
    missing = [f"{kind}: {path}" for kind, path in ARTEFACTS.items() if not path.is_file()]
    assert not missing, f"make -C plugin_stub did not produce {missing}"
    ttl = ARTEFACTS["lv2 ttl"].read_text()
    for symbol in ("mode", "offline_wait", "offline_timeout_ms", "engine_connected"):
        assert f'lv2:symbol "{symbol}"' in ttl, f"the LV2 ttl lacks the {symbol} port"


def _render(monkeypatch: pytest.MonkeyPatch, endpoint: str, offline_wait: bool,
            pitches: list[int], seconds: float = 2.0) -> np.ndarray:
    daw = pytest.importorskip("dawdreamer", reason="pip install dawdreamer to run the plugin in a host")
    monkeypatch.setenv("DEEP_MUSICIAN_ENDPOINT", endpoint)
    engine = daw.RenderEngine(SAMPLE_RATE_HZ, BLOCK)
    plugin = engine.make_plugin_processor("deep_musician", str(BIN / "DeepMusician.vst3"))
    index = {d["name"]: d["index"] for d in plugin.get_parameters_description()}
    plugin.set_parameter(index["Offline: wait for engine"], 1.0 if offline_wait else 0.0)
    for i, pitch in enumerate(pitches):
        plugin.add_midi_note(pitch, 100, 0.25 * i, 0.2)
    engine.load_graph([(plugin, [])])
    engine.render(seconds)
    return engine.get_audio()


@pytest.mark.slow
def test_vst3_runs_silent_without_engine(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing listens on this port: the plugin must keep running and output silence, promptly,
    # even with the offline wait on (an absent engine answers every block at once).
    start = time.monotonic()
    audio = _render(monkeypatch, "tcp://127.0.0.1:9", offline_wait=True, pitches=[60, 64, 67])
    assert time.monotonic() - start < 10
    assert audio.shape == (2, 2 * SAMPLE_RATE_HZ)
    assert not np.any(audio), "the plugin must output silence while no engine runs"


@pytest.mark.slow
def test_vst3_sends_hello_and_live_notes_to_engine(built: Path, monkeypatch: pytest.MonkeyPatch,
                                                   fake_engine) -> None:
    fake = fake_engine
    # A first render connects (each render activates the plugin anew); the second one's notes
    # are checked.
    _render(monkeypatch, fake.endpoint, offline_wait=True, pitches=[60])
    deadline = time.monotonic() + 5
    while not any(m.type == protocol.HELLO for m in fake.received) and time.monotonic() < deadline:
        time.sleep(0.01)
    pitches = [60, 64, 67, 72]
    fake.received.clear()
    _render(monkeypatch, fake.endpoint, offline_wait=True, pitches=pitches)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        live = [m for m in fake.received if m.type == protocol.LIVE_NOTES]
        if sum(len(m.frame("notes")) for m in live) >= len(pitches):
            break
        time.sleep(0.01)
    assert not fake.errors, f"the plugin sent messages bridge.protocol refuses: {fake.errors}"
    types = {m.type for m in fake.received}
    assert protocol.HELLO in types
    live = [m for m in fake.received if m.type == protocol.LIVE_NOTES]
    notes = np.concatenate([m.frame("notes") for m in live]) if live else np.zeros(0)
    assert sorted(notes["pitch"].tolist()) == pitches, f"live_notes carried {notes}"
    assert all(m.fields["session"] for m in live)
    resolution = live[0].fields["resolution"]
    onsets_beats = np.sort(notes["time"]) / resolution
    # DawDreamer plays at 120 qpm: note i starts at 0.25 i s = 0.5 i beats (within one block).
    np.testing.assert_allclose(onsets_beats, 0.5 * np.arange(len(pitches)), atol=BLOCK / SAMPLE_RATE_HZ * 2)


@pytest.mark.slow
def test_vst3_arranges_through_the_real_engine(built: Path, monkeypatch: pytest.MonkeyPatch,
                                               real_engine) -> None:
    # DawDreamer captures no MIDI output, so this checks the engine's side: every block with notes
    # or releases became a live_notes job that the engine's online arranger finished (none refused):
    # each note's on and off fall in different blocks (0.2 s apart).
    endpoint, log_path = real_engine
    before = log_path.read_text().count("type=live_notes outcome=done")
    pitches = [60, 64, 67, 72, 48, 55]  # one per block: 0.25 s apart
    _render(monkeypatch, endpoint, offline_wait=True, pitches=pitches)
    time.sleep(0.3)  # the last job's log line
    text = log_path.read_text()
    assert "client='deep-musician-plugin'" in text, text
    assert text.count("type=live_notes outcome=done") - before == 2 * len(pitches), text
    assert "outcome=error" not in text, text

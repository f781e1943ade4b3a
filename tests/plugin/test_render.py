"""Render mode against a real engine: played notes come back as audio, at the note's position plus
the latency the plugin reports, at the note's pitch, silent before it; in DawDreamer (VST3) and in
clap_host.cpp (CLAP), both offline with the plugin's offline wait on."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from plugin_host import MODE_RENDER, PARAM_HEADROOM_MS, PARAM_MODE, PARAM_OFFLINE_WAIT, play

BIN = Path(__file__).resolve().parents[2] / "plugin_stub" / "bin"
SOUND = 1e-3  # a note has begun once the output passes this (-60 dBFS)
QUIET = 1e-5  # before any note the output stays below this (-100 dBFS)
ATTACK = 256  # frames: the SoundFont piano passes SOUND within this after its note-on


def midi_hz(pitch: int) -> float:
    return 440.0 * 2 ** ((pitch - 69) / 12)


def peak_hz(x: np.ndarray, sample_rate_hz: int) -> float:
    window = x * np.hanning(len(x))
    spectrum = np.abs(np.fft.rfft(window, 8 * len(x)))  # zero-padded: 1/8-bin resolution
    return float(np.argmax(spectrum) * sample_rate_hz / (8 * len(x)))


def check_rendered(audio: np.ndarray, sample_rate_hz: int, latency: int,
                   notes: list[tuple[int, int]]) -> None:
    """`audio` (frames, channels); notes (frame, pitch) in time order, each sounding >= 0.3 s alone."""
    mono = audio.mean(axis=1)
    first = notes[0][0] + latency
    assert np.abs(mono[:first]).max() < QUIET, "sound before the first note's onset plus the latency"
    for frame, pitch in notes:
        at = frame + latency
        starts = np.flatnonzero(np.abs(mono[at - ATTACK:at + ATTACK]) > SOUND)
        assert len(starts), f"no sound near frame {at} (pitch {pitch} at {frame} + latency {latency})"
        onset = at - ATTACK + int(starts[0])
        # a new note may sound over the previous one's release: the onset is checked for the first
        assert frame != notes[0][0] or at <= onset < at + ATTACK, \
            f"pitch {pitch} began at {onset}, expected {at}"
        segment = mono[at + 1024:at + 1024 + 8192]
        got = peak_hz(segment, sample_rate_hz)
        assert abs(got / midi_hz(pitch) - 1) < 0.02, \
            f"pitch {pitch} sounds at {got:.1f} Hz, not {midi_hz(pitch):.1f}"


def vst3_in_render_mode(monkeypatch: pytest.MonkeyPatch, real_engine, sample_rate_hz: int, block: int):
    """(DawDreamer engine, the VST3 in Render mode with the offline wait on, {parameter name: index})."""
    daw = pytest.importorskip("dawdreamer", reason="pip install dawdreamer to run the plugin in a host")
    endpoint, _ = real_engine
    monkeypatch.setenv("DEEP_MUSICIAN_ENDPOINT", endpoint)
    engine = daw.RenderEngine(sample_rate_hz, block)
    plugin = engine.make_plugin_processor("deep_musician", str(BIN / "DeepMusician.vst3"))
    index = {d["name"]: d["index"] for d in plugin.get_parameters_description()}
    plugin.set_parameter(index["Mode"], 0.5)  # normalised: Render of Arrange, Render, Generate
    plugin.set_parameter(index["Offline: wait for engine"], 1.0)
    assert plugin.get_parameter_text(index["Mode"]) == "Render"
    return engine, plugin, index


@pytest.mark.slow
def test_vst3_renders_through_the_real_engine(built: Path, monkeypatch: pytest.MonkeyPatch,
                                              real_engine) -> None:
    sample_rate_hz, block = 44100, 512
    engine, plugin, index = vst3_in_render_mode(monkeypatch, real_engine, sample_rate_hz, block)
    notes = [(0.5, 69), (1.25, 76)]  # (seconds, pitch), half a second each
    for start_s, pitch in notes:
        plugin.add_midi_note(pitch, 100, start_s, 0.5)
    engine.load_graph([(plugin, [])])
    engine.render(2.5)
    audio = engine.get_audio().T
    latency = int(float(plugin.get_parameter_text(index["Reported latency"])))
    assert latency == block, "6 ms of engine headroom rounds up to one block at 44.1 kHz and 512 frames"
    assert audio.shape == (int(2.5 * sample_rate_hz), 2)
    check_rendered(audio, sample_rate_hz, latency, [(int(s * sample_rate_hz), p) for s, p in notes])


def engine_neural_latency(endpoint: str, sample_rate_hz: int, block: int) -> int:
    """The neural live latency the engine states at this rate (one block's `done` stats)."""
    from bridge import protocol
    from bridge.client import Client
    from bridge.score import make_notes

    with Client(endpoint, timeout_s=120.0) as c:
        for reply in c.stream(protocol.LIVE_PERFORM, [make_notes([], [], 960, 90)], session="latency-probe",
                              position_ticks=0, block_samples=block, sample_rate_hz=sample_rate_hz, qpm=120.0,
                              renderer="neural", style="piano", reset=True):
            if reply.type == protocol.DONE:
                return int(reply.fields["stats"]["latency_samples"])
    raise AssertionError("the engine sent no done for the probe block")


@pytest.mark.slow
@pytest.mark.parametrize("choice, value, synth", [("Neural", 0.5, "performer-synth-expressive"),
                                                  ("Neural plain", 1.0, "performer-synth")])
def test_vst3_renders_with_the_neural_performer_through_the_real_engine(
        built: Path, monkeypatch: pytest.MonkeyPatch, real_engine, choice: str, value: float,
        synth: str) -> None:
    # Renderer "Neural" sends renderer: neural with each live_perform block (the engine's default
    # synthesis model; "Neural plain" adds model: performer-synth, the first one); the neural
    # performer renders at its models' 22,050 Hz and the engine resamples to the host's 44,100 Hz.
    # Its audio comes the engine's neural latency later than the SoundFont's (lookahead + crossfade +
    # the resampler's lag: `latency_samples` in each block's done), and the plugin reports that on
    # top of its own headroom latency, so the note sounds at its frame + the reported latency.
    sample_rate_hz, block = 44100, 512
    neural = engine_neural_latency(real_engine[0], sample_rate_hz, block)
    engine, plugin, index = vst3_in_render_mode(monkeypatch, real_engine, sample_rate_hz, block)
    plugin.set_parameter(index["Renderer"], value)  # normalised: of SoundFont, Neural, Neural plain
    assert plugin.get_parameter_text(index["Renderer"]) == choice
    plugin.add_midi_note(69, 100, 1.0, 0.5)
    engine.load_graph([(plugin, [])])
    engine.render(3.0)
    mono = engine.get_audio().T.mean(axis=1)
    # the engine names each synthesis model as it first loads it (the probe above loaded the default;
    # only Neural plain's request loads performer-synth)
    assert f"event=neural_performer synth={synth} " in real_engine[1].read_text()
    assert int(float(plugin.get_parameter_text(index["Engine errors"]))) == 0
    latency = int(float(plugin.get_parameter_text(index["Reported latency"])))
    assert latency == block + neural, \
        f"reported {latency}: expected the headroom's {block} + the engine's {neural}"
    heard = int(1.0 * sample_rate_hz) + latency
    rms = lambda a, b: float(np.sqrt(np.mean(mono[a:b] ** 2)))  # noqa: E731
    before, after = rms(heard - 16384, heard - 1024), rms(heard, heard + 16384)
    assert after > 1e-2 and after > 10 * before, f"RMS {before:.2e} before the note, {after:.2e} after"
    got = peak_hz(mono[heard + 4096:heard + 4096 + 8192], sample_rate_hz)
    print({"rms_before": before, "rms_after": after, "peak_hz": got, "latency": latency, "neural": neural,
           "heard": heard})
    assert abs(got / midi_hz(69) - 1) < 0.03, f"pitch 69 sounds at {got:.1f} Hz"


@pytest.mark.slow
def test_clap_renders_through_the_real_engine(clap_host: Path, real_engine, tmp_path: Path) -> None:
    endpoint, _ = real_engine
    sample_rate_hz, block = 48000, 256
    notes = [(6000, 60, 19000), (30000, 67, 19000), (54000, 72, 19000)]
    played = play(clap_host, endpoint, notes, sample_rate_hz=sample_rate_hz, block=block, blocks=320,
                  realtime=False, params={PARAM_MODE: MODE_RENDER, PARAM_OFFLINE_WAIT: 1},
                  audio=tmp_path / "out.raw")
    # Reported after the first block set the mode: 6 ms of headroom (288 frames) in whole blocks.
    assert played.latency[-1] == 2 * block, played.latency
    assert played.midi == [], "Render mode sends nothing on the MIDI output"
    check_rendered(played.audio, sample_rate_hz, played.latency[-1], [(f, p) for f, p, _ in notes])


@pytest.mark.slow
def test_clap_headroom_sets_the_latency_and_the_audio_follows(clap_host: Path, real_engine,
                                                              tmp_path: Path) -> None:
    # 20 ms of engine headroom at 48 kHz is 960 frames: four 256-frame blocks; the audio moves with it.
    endpoint, _ = real_engine
    sample_rate_hz, block = 48000, 256
    notes = [(6000, 64, 19000), (30000, 71, 19000)]
    params = {PARAM_MODE: MODE_RENDER, PARAM_OFFLINE_WAIT: 1, PARAM_HEADROOM_MS: 20}
    played = play(clap_host, endpoint, notes, sample_rate_hz=sample_rate_hz, block=block, blocks=300,
                  realtime=False, params=params,
                  audio=tmp_path / "out.raw")
    assert played.latency[-1] == 4 * block, played.latency
    check_rendered(played.audio, sample_rate_hz, played.latency[-1], [(f, p) for f, p, _ in notes])


@pytest.mark.slow
def test_clap_renders_in_real_time_within_the_latency(clap_host: Path, real_engine, tmp_path: Path) -> None:
    # No offline wait: the host plays blocks at the pace of the clock and the audio thread never
    # waits; the engine's replies must come back within the reported latency to be heard in place.
    endpoint, _ = real_engine
    sample_rate_hz, block = 48000, 256
    notes = [(6000, 60, 19000), (30000, 67, 19000), (54000, 72, 19000)]
    played = play(clap_host, endpoint, notes, sample_rate_hz=sample_rate_hz, block=block, blocks=320,
                  realtime=True, params={PARAM_MODE: MODE_RENDER, PARAM_OFFLINE_WAIT: 0},
                  audio=tmp_path / "out.raw")
    check_rendered(played.audio, sample_rate_hz, played.latency[-1], [(f, p) for f, p, _ in notes])


@pytest.mark.slow
def test_clap_render_without_engine_is_silent_and_does_not_wait(clap_host: Path, tmp_path: Path) -> None:
    # Nothing listens on this port: with the offline wait on, every block is answered at once
    # (no engine is waited for) and the output is silence; the latency is still reported.
    start = time.monotonic()
    played = play(clap_host, "tcp://127.0.0.1:9", [(6000, 60, 19000)], sample_rate_hz=48000, block=256,
                  blocks=400, realtime=False, params={PARAM_MODE: MODE_RENDER, PARAM_OFFLINE_WAIT: 1},
                  audio=tmp_path / "out.raw")
    assert time.monotonic() - start < 5
    assert played.latency[-1] == 512  # the latency is reported without an engine too
    assert not played.audio.any() and played.midi == []


@pytest.mark.slow
def test_clap_render_sustain_pedal_holds_the_sound_until_it_comes_up(clap_host: Path, real_engine,
                                                                     tmp_path: Path) -> None:
    # A key let go under the pedal sounds on (a piano's decay, not its release) until the pedal
    # comes up; the same key without the pedal is released at once.
    endpoint, _ = real_engine
    sample_rate_hz, block = 48000, 256
    key, pedal_up = (6000, 60, 3000), 40000

    def loudness(events: list[tuple]) -> tuple[float, float]:
        played = play(clap_host, endpoint, events, sample_rate_hz=sample_rate_hz, block=block, blocks=260,
                      realtime=False, params={PARAM_MODE: MODE_RENDER, PARAM_OFFLINE_WAIT: 1},
                      audio=tmp_path / "out.raw")
        mono, latency = played.audio.mean(axis=1), played.latency[-1]
        rms = lambda a, b: float(np.sqrt(np.mean(mono[a + latency:b + latency] ** 2)))  # noqa: E731
        return rms(20000, 36000), rms(pedal_up + 12000, pedal_up + 20000)

    held, held_after = loudness([(3000, "c64=127"), key, (pedal_up, "c64=0")])
    dry, _ = loudness([key])
    assert held > 10 * dry, f"under the pedal {held:.2e} RMS vs released {dry:.2e}"
    assert held_after < held / 10, f"still sounding {held_after:.2e} after the pedal came up ({held:.2e})"

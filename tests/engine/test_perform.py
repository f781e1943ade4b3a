"""The SoundFont performer: real FluidSynth (libfluidsynth) and the Debian GM SoundFont, checked by
where sound starts and which pitch it has."""
from __future__ import annotations

import numpy as np
import pytest

from bridge import synth
from bridge.score import make_notes
from engine.tasks import live_perform
from engine.tasks import perform as PF

pytestmark = pytest.mark.skipif(bool(synth.available()), reason=synth.available() or "")

SR = 48_000


def midi_hz(pitch: int) -> float:
    return 440.0 * 2 ** ((pitch - 69) / 12)


def dominant_hz(audio: np.ndarray, start: int, n: int = 8192) -> float:
    window = audio[0, start:start + n] * np.hanning(n)
    spectrum = np.abs(np.fft.rfft(window))
    return float(np.fft.rfftfreq(n, 1 / SR)[spectrum.argmax()])


def onset(audio: np.ndarray, after: int = 0, level: float = 1e-3) -> int:
    return after + int(np.flatnonzero(np.abs(audio[0, after:]) > level)[0])


def assert_pitch(audio: np.ndarray, start: int, pitch: int) -> None:
    hz = dominant_hz(audio, start)
    # a piano's strongest partial may be the fundamental or an octave above it
    assert min(abs(hz - midi_hz(pitch) * k) / (midi_hz(pitch) * k) for k in (1, 2)) < 0.03, (hz, pitch)


def test_synth_plays_the_right_pitch_at_the_right_time():
    with synth.Synth(SR) as s:
        events = np.array([(1000, 1, 0, 69, 100)], synth.EVENT_DTYPE)
        audio = s.render(SR, events)
    assert audio.shape == (2, SR) and audio.dtype == np.float32
    assert np.abs(audio[:, :1000]).max() < 1e-6  # silence (below -120 dBFS) before the note
    assert 1000 <= onset(audio) < 1000 + 64 + 64  # FluidSynth starts notes on its 64-sample grid
    assert_pitch(audio, 4000, 69)


def test_a_bad_rate_or_soundfont_is_refused_with_a_reason(tmp_path):
    with pytest.raises(ValueError, match="sample_rate_hz must be 8000..96000"):
        synth.Synth(4000)
    with pytest.raises(FileNotFoundError, match="no SoundFont at"):
        synth.Synth(SR, soundfont=tmp_path / "missing.sf2")
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(b"not a soundfont")
    with pytest.raises(synth.SynthUnavailable, match="could not load the SoundFont"):
        synth.Synth(SR, soundfont=bad)


def test_note_events_sort_offs_first_and_give_zero_length_notes_one_sample():
    notes = make_notes([0, 24, 24], [60, 60, 64], [24, 0, 12], 90)
    ev = PF.note_events(notes, np.array([0, 0, 1]), resolution=24, qpm=120, sample_rate_hz=SR)
    assert ev["sample"].tolist() == [0, 24_000, 24_000, 24_000, 24_001, 36_000]
    assert ev["on"].tolist() == [1, 0, 1, 1, 0, 0]  # the first C's off comes before the C struck again
    assert ev["channel"].tolist() == [0, 0, 0, 1, 0, 1]


def test_offline_render_places_each_note_and_ends_after_its_tail():
    notes = make_notes([0, 48], [60, 67], 24, 100)  # two half-second notes, 1 s apart at 120 qpm
    with synth.Synth(SR) as s:
        chunks = list(PF.render_chunks(s, notes, np.zeros(2, np.int64), [0], 24, 120.0, chunk_samples=8192))
    audio = np.concatenate(chunks, axis=1)
    assert chunks[0].shape[1] == PF.FIRST_CHUNK_SAMPLES  # short, so playback can start soon
    assert all(c.shape[1] == 8192 for c in chunks[1:-1])
    assert_pitch(audio, 2000, 60)
    second = onset(audio, after=SR - 10) if np.abs(audio[0, SR - 10:SR]).max() < 1e-3 else SR
    assert SR <= second < SR + 200
    assert_pitch(audio, SR + 2000, 67)
    end = int(1.5 * SR)
    assert end < audio.shape[1] <= end + PF.TAIL_MAX_S * SR + 8192  # the release tail, then stop


def test_programs_choose_the_instrument_per_part():
    notes = make_notes([0, 0], [60, 72], 48, 100)
    with synth.Synth(SR) as s:
        piano = np.concatenate(list(PF.render_chunks(s, notes, np.array([0, 1]), [0, 0], 24, 120.0)), 1)
    with synth.Synth(SR) as s:
        mixed = np.concatenate(list(PF.render_chunks(s, notes, np.array([0, 1]), [0, 40], 24, 120.0)), 1)
    n = min(piano.shape[1], mixed.shape[1])
    assert not np.allclose(piano[:, :n], mixed[:, :n], atol=1e-3)  # a violin is not a piano


def test_parts_beyond_the_channels_or_programs_are_refused():
    with pytest.raises(PF.PerformInputError, match="at most 15 parts"):
        PF.check_parts(np.array([15], np.uint8), 1, [])
    with pytest.raises(PF.PerformInputError, match="lists only 2"):
        PF.check_parts(np.array([0, 2], np.uint8), 2, [0, 40])


def test_live_blocks_sound_the_same_as_the_offline_render():
    """Block by block as a DAW plays (notes sent in the block they start in, note-offs from their
    durations), the session's audio equals the whole-region render sample for sample."""
    rng = np.random.default_rng(3)
    n = 24
    # at 24000 ticks per quarter and 120 qpm a tick is one sample: no rounding on either path
    notes = make_notes(np.sort(rng.integers(0, 3 * SR, n)), rng.integers(48, 84, n),
                       rng.integers(2000, 20000, n), rng.integers(40, 120, n))
    parts = rng.integers(0, 3, n)
    programs = [0, 40, 42]
    with synth.Synth(SR) as s:
        offline = np.concatenate(list(PF.render_chunks(s, notes, parts, programs, 24_000, 120.0)), 1)
    block = 512
    live = live_perform.LivePerformer(synth.Synth(SR), programs)
    out = []
    for k in range(offline.shape[1] // block):
        pos = k * block
        inside = (notes["time"] >= pos) & (notes["time"] < pos + block)
        start, audio = live.push(notes[inside], parts[inside], np.zeros((0, 3), np.int64), pos, 24_000,
                                 120.0, block)
        assert start == pos and audio.shape == (2, block)
        out.append(audio)
    live_audio = np.concatenate(out, 1)
    np.testing.assert_array_equal(live_audio, offline[:, :live_audio.shape[1]])


def test_live_note_offs_come_from_releases_and_late_notes_sound_at_once():
    live = live_perform.LivePerformer(synth.Synth(SR))
    held = make_notes([0], [69], 0, 100)  # duration 0: sounds until released
    _, a = live.push(held, np.zeros(1, np.int64), np.zeros((0, 3), np.int64), 0, 24, 120.0, SR // 2)
    assert_pitch(a, 4000, 69)
    # released at tick 12 = 0.25 s into the next half-second block
    _, b = live.push(held[:0], np.zeros(0, np.int64), np.array([[36, 69, 0]]), 24, 24, 120.0, SR // 2)
    assert np.abs(b[:, :SR // 4 - 200]).max() > 0.01
    tail = np.abs(b[:, -2000:]).max()
    assert tail < np.abs(b[:, :2000]).max() / 4  # released: fading, not sustaining
    late = make_notes([0], [72], 24, 100)  # belongs to tick 0, sent with the block at tick 48
    start, c = live.push(late, np.zeros(1, np.int64), np.zeros((0, 3), np.int64), 48, 24, 120.0, 4096)
    assert start == SR and onset(c) < 128


def test_the_factory_makes_and_frees_every_synth_on_its_keeper_thread():
    # a synth made on one thread and freed on another leaves holes in glibc's per-thread arenas
    import gc
    import threading

    factory = PF.SynthFactory()
    threads = []
    real = synth.Synth.__init__

    def spy_init(self, *args, **kwargs):
        threads.append(("made", threading.current_thread().name))
        real(self, *args, **kwargs)

    synth.Synth.__init__ = spy_init
    try:
        first = factory.new(22_050)  # no spare yet: made on the keeper while this thread waits
        second = factory.new(22_050)  # the spare the first handout refilled
    finally:
        synth.Synth.__init__ = real
    freed = []
    for s in (first, second):
        handoff = s._free_on
        s._free_on = lambda free, handoff=handoff: handoff(
            lambda: (freed.append(threading.current_thread().name), free()))
    first.close()  # explicitly, on this thread
    del s, second  # or collected, wherever the last reference goes
    gc.collect()
    factory._call(lambda: None)  # the keeper has done what was queued before
    assert {name for _, name in threads} == {"synth-keeper"}
    assert freed == ["synth-keeper", "synth-keeper"]

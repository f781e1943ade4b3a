"""The CLAP plugin in a small real host (clap_host.cpp) in Arrange mode: notes go to the engine and
come back, arranged, on the MIDI output, one channel per part, at their positions plus the latency
the plugin reports; each played note-off ends its arranged note on the channel that note went to
(test_arrange_latency.py holds real time to the sample)."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FakeEngine
from plugin_host import PARAM_ENSEMBLE, PARAM_OFFLINE_WAIT, play

from bridge import protocol

SAMPLE_RATE_HZ = 48000
BLOCK = 512
LATENCY = 2 * BLOCK  # Arrange's default 20 ms of engine headroom in whole blocks (960 frames -> 2)

# (frame, pitch, length): the fake engine gives note i of each block part i % 4, so the chord at
# 36000 goes to two parts; 67 is released long before its real-time reply can come back.
NOTES = [(0, 60, 6000), (12000, 64, 9000), (24000, 67, 30), (36000, 72, 12000), (36000, 48, 6000)]


def _play(host: Path, endpoint: str, notes: list[tuple[int, ...]], blocks: int, realtime: bool,
          offline_wait: bool) -> list[tuple[int, int, int, int]]:
    played = play(host, endpoint, notes, sample_rate_hz=SAMPLE_RATE_HZ, block=BLOCK, blocks=blocks,
                  realtime=realtime, params={PARAM_OFFLINE_WAIT: int(offline_wait)})
    assert played.latency == [LATENCY, LATENCY], "Arrange reports its latency through CLAP"
    return played.midi


def _check_note_offs(events: list[tuple[int, int, int, int]]) -> None:
    """Every note-on has exactly one note-off, on its channel and pitch, after it."""
    sounding: dict[tuple[int, int], int] = {}
    for frame, status, pitch, _ in sorted(events, key=lambda e: e[0]):  # stable: on before off at a frame
        key = (status & 0x0F, pitch)
        if status & 0xF0 == 0x90:
            assert key not in sounding, f"pitch {pitch} struck twice on channel {key[0]} without an off"
            sounding[key] = frame
        else:
            assert key in sounding, f"note-off {pitch} on channel {key[0]} at {frame} ends no note: {events}"
            assert frame > sounding.pop(key)
    assert not sounding, f"note-ons never ended: {sounding}"


def _check_arranged(events: list[tuple[int, int, int, int]], exact: bool) -> None:
    ons = sorted((e for e in events if e[1] & 0xF0 == 0x90), key=lambda e: (e[0], e[2]))
    assert sorted(e[2] for e in ons) == sorted(p for _, p, _ in NOTES), f"note-ons {ons}"
    _check_note_offs(events)
    # The fake engine gives note i of each block part i % 4: the channel says the part.
    by_pitch = {e[2]: e for e in ons}
    offs = {e[2]: e for e in events if e[1] & 0xF0 == 0x80}
    assert by_pitch[48][1] & 0x0F != by_pitch[72][1] & 0x0F, "two notes of one chord share a part"
    for frame, pitch, length in NOTES:
        got, off = by_pitch[pitch][0], offs[pitch][0]
        if exact:  # offline wait: back in the same block, out at the position plus the latency
            assert got == frame + LATENCY, f"pitch {pitch} played at {frame}, came back at {got}"
            assert off == frame + length + LATENCY, \
                f"pitch {pitch} released at {frame + length}, ended at {off}"
        else:  # real time: at its place, or later if the engine was late, never early
            assert frame + LATENCY <= got <= frame + LATENCY + 8 * BLOCK, f"pitch {pitch}: {frame} -> {got}"
            assert off == max(frame + length + LATENCY, got + 1), \
                f"pitch {pitch}: on {got}, released {frame + length}, off {off}"


@pytest.mark.slow
def test_clap_offline_wait_returns_every_note_in_place(clap_host: Path, fake_engine) -> None:
    events = _play(clap_host, fake_engine.endpoint, NOTES, blocks=125, realtime=False, offline_wait=True)
    assert not fake_engine.errors
    _check_arranged(events, exact=True)


@pytest.mark.slow
def test_clap_real_time_returns_every_note_once(clap_host: Path, fake_engine) -> None:
    events = _play(clap_host, fake_engine.endpoint, NOTES, blocks=125, realtime=True, offline_wait=False)
    assert not fake_engine.errors
    assert any(m.type == protocol.HELLO for m in fake_engine.received)
    _check_arranged(events, exact=False)


@pytest.mark.slow
def test_clap_without_engine_outputs_nothing_and_keeps_running(clap_host: Path) -> None:
    events = _play(clap_host, "tcp://127.0.0.1:9", NOTES, blocks=125, realtime=False, offline_wait=True)
    assert events == []


@pytest.mark.slow
def test_clap_arranges_through_the_real_engine(clap_host: Path, real_engine) -> None:
    endpoint, _ = real_engine
    notes = [(i * 6000, p, 5000 + 1000 * (i % 3)) for i, p in enumerate([60, 64, 67, 72, 65, 62, 59, 60])]
    events = _play(clap_host, endpoint, notes, blocks=150, realtime=False, offline_wait=True)
    ons = [e for e in events if e[1] & 0xF0 == 0x90]
    assert sorted(e[2] for e in ons) == sorted(p for _, p, _ in notes), f"note-ons {ons}"
    assert all(e[1] & 0x0F < 4 for e in ons), "SATB has four parts: channels 0..3"
    for (frame, pitch, _), on in zip(notes, sorted(ons)):
        assert on[2] == pitch and on[0] == frame + LATENCY, f"{pitch} at {frame} came back as {on}"
    _check_note_offs(events)
    offs = sorted(e[0] for e in events if e[1] & 0xF0 == 0x80)
    assert offs == sorted(frame + length + LATENCY for frame, _, length in notes), \
        "each ends when its played note ends"


@pytest.mark.slow
@pytest.mark.parametrize(("index", "expected"), [(0, "alpha"), (1, "zeta"), (2, None)])
def test_clap_ensemble_index_follows_the_engines_welcome(clap_host: Path, index: int,
                                                         expected: str | None) -> None:
    # The engine lists its online arrangers' ensembles in welcome; the parameter indexes them in
    # name order (satb first when there is one). An index past the list sends nothing (and the plugin
    # says so: Ensemble in use -1).
    models = [{"name": f"arranger-{e}-{mode}", "task": "arrange", "ensemble": e, "mode": mode}
              for e in ("zeta", "alpha") for mode in ("online", "offline")]
    models.append({"name": "offline-only", "task": "arrange", "ensemble": "beta", "mode": "offline"})
    fake = FakeEngine(models)
    try:
        played = play(clap_host, fake.endpoint, [(512, 60, 1000)], sample_rate_hz=SAMPLE_RATE_HZ, block=BLOCK,
                      blocks=10, realtime=False, params={PARAM_OFFLINE_WAIT: 1, PARAM_ENSEMBLE: index},
                      warmup_ms=300)
        live = [m for m in fake.received if m.type == protocol.LIVE_NOTES]
    finally:
        fake.close()
    assert "live ensembles: 0=alpha 1=zeta" in played.stderr, played.stderr
    if expected is None:
        assert live == [] and played.midi == []
    else:
        # two blocks go out: the note's, and its release's (it frees the part in the engine)
        assert [m.fields["ensemble"] for m in live] == [expected, expected]
        assert [len(m.frame("notes")) for m in live] == [1, 0]
        assert [m.frame("releases")[:, 1].tolist() for m in live] == [[], [60]]


@pytest.mark.slow
def test_clap_sustain_pedal_lengthens_arranged_notes(clap_host: Path, real_engine) -> None:
    # A key let go while the pedal is down keeps sounding (its part busy) until the pedal comes up;
    # struck again under the pedal, the old note ends where the new one starts; All Notes Off ends
    # a held key. Every arranged note-off lands where the pedalled score says.
    endpoint, _ = real_engine
    pedal_down, pedal_up, panic = 3000, 30000, 50000
    notes = [(pedal_down, "c64=127"), (6000, 60, 3000), (10000, 64, 1000), (16000, 64, 1000),
             (pedal_up, "c64=0"), (36000, 67, 2000), (40000, 72, 30000), (panic, "c123=0")]
    played = play(clap_host, endpoint, notes, sample_rate_hz=SAMPLE_RATE_HZ, block=BLOCK, blocks=120,
                  realtime=False, params={PARAM_OFFLINE_WAIT: 1})
    events = played.midi
    _check_note_offs(events)
    ons = sorted((e[0], e[2]) for e in events if e[1] & 0xF0 == 0x90)
    offs = sorted((e[0], e[2]) for e in events if e[1] & 0xF0 == 0x80)
    played_ons = [(6000, 60), (10000, 64), (16000, 64), (36000, 67), (40000, 72)]
    assert ons == [(f + LATENCY, p) for f, p in played_ons], ons
    want = sorted([(pedal_up, 60), (16000, 64), (pedal_up, 64), (38000, 67), (panic, 72)])
    assert offs == [(f + LATENCY, p) for f, p in want], offs
    assert [f for f, p in offs if p == 64][0] == ons[2][0], "the old note ends as the new one starts"
    assert not any(e[1] & 0xF0 == 0xB0 for e in events), "the pedal is folded into the notes, not passed on"

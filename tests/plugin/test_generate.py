"""Generate mode in a real host: the CLAP plugin in clap_host.cpp (transport rolling at 120 qpm in
4/4) asks the real engine to compose, and every composed note comes out on its part's channel at its
place on the host's timeline, to the sample: the bars start at the first bar line at least the lead
ahead, and the notes are the ones the same request (same seed, read from the plugin's log) gives
through the Python client. Notes played into the plugin before the trigger are the composition's
context (continuation); a new trigger stops the running job and what it had not yet played."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from plugin_host import (
    MODE_GENERATE,
    PARAM_GENERATE_BARS,
    PARAM_GENERATE_TRIGGER,
    PARAM_GENERATED_NOTES,
    PARAM_LATE_NOTES,
    PARAM_MODE,
    PARAM_OFFLINE_TIMEOUT_MS,
    PARAM_OFFLINE_WAIT,
    play,
)

from bridge.client import Client
from bridge.score import make_notes

SAMPLE_RATE_HZ = 48000
BLOCK = 512
FRAMES_PER_TICK = 25  # 120 qpm (the host's default), 960 ticks per quarter, 48 kHz
BAR_FRAMES = 4 * 24000
OFFLINE = {PARAM_MODE: MODE_GENERATE, PARAM_OFFLINE_WAIT: 1, PARAM_OFFLINE_TIMEOUT_MS: 10000}


def _jobs(stderr: str) -> list[tuple[int, int, int, int]]:
    """(bars, seed, start frame, context notes) of each compose request, from the plugin's log."""
    found = re.findall(r"composing (\d+) bars \(seed (\d+)\) from frame (\d+), (\d+) played notes", stderr)
    return [tuple(int(x) for x in job) for job in found]


def _ons_offs(midi):
    ons = sorted((f, s & 0x0F, p) for f, s, p, v in midi if s & 0xF0 == 0x90 and v > 0)
    offs = sorted((f, s & 0x0F, p) for f, s, p, v in midi if s & 0xF0 == 0x80)
    return ons, offs


def _expected(endpoint: str, bars: int, seed: int, start_frame: int, given=None, context_bars: int = 0,
              qpm: float = 120.0, meter=(4, 4)):
    """The note-ons and note-offs (frame, channel, pitch) the same request gives through the client."""
    with Client(endpoint, timeout_s=60) as client:
        stream = client.compose(bars + context_bars, meter=list(meter), qpm=qpm, temperature=1.0, seed=seed,
                                resolution=960, given=given,
                                given_bars=[0, context_bars] if context_bars else None)
        composed = list(stream)
    frames_per_tick = round(60 / qpm * SAMPLE_RATE_HZ / 960)
    assert frames_per_tick == 60 / qpm * SAMPLE_RATE_HZ / 960, "choose a tempo with whole frames per tick"
    origin = context_bars * meter[0] * 4 * 960 // meter[1]
    ons, offs = [], []
    for bar in composed:
        for note, track in zip(bar.notes, bar.track):
            if note["time"] < origin:  # the other parts of the context bars: the plugin plays from its start
                continue
            on = start_frame + (int(note["time"]) - origin) * frames_per_tick
            ons.append((on, int(track), int(note["pitch"])))
            off = max(on + 1, on + int(note["duration"]) * frames_per_tick)
            offs.append((off, int(track), int(note["pitch"])))
    return sorted(ons), sorted(offs)


@pytest.mark.slow
@pytest.mark.parametrize(("realtime", "qpm", "meter"), [(False, 120.0, (4, 4)), (False, 100.0, (3, 4)),
                                                        (True, 120.0, (4, 4))])
def test_transport_start_composes_the_next_bars_at_their_place(clap_host: Path, real_engine, realtime: bool,
                                                               qpm: float, meter: tuple[int, int]) -> None:
    endpoint, _ = real_engine
    bars = 2
    bar_frames = round(meter[0] * 4 / meter[1] * 60 / qpm * SAMPLE_RATE_HZ)
    # Started at frame 0, the first bar line at least the 500 ms lead ahead is the second bar's; the
    # host plays two bars past the composed ones, for the notes that ring over the last bar line. In
    # real time the engine has the lead (and the bars before each) to answer: no offline wait.
    blocks = (bar_frames * (1 + bars + 2)) // BLOCK
    params = {**OFFLINE, PARAM_GENERATE_BARS: bars}
    if realtime:
        params[PARAM_OFFLINE_WAIT] = 0
    played = play(clap_host, endpoint, [], sample_rate_hz=SAMPLE_RATE_HZ, block=BLOCK, blocks=blocks,
                  realtime=realtime, params=params, tempo=qpm, meter=meter, warmup_ms=500 if realtime else 0)
    jobs = _jobs(played.stderr)
    assert len(jobs) == 1, played.stderr
    got_bars, seed, start, context = jobs[0]
    assert (got_bars, start, context) == (bars, bar_frames, 0)
    ons, offs = _ons_offs(played.midi)
    want_ons, want_offs = _expected(endpoint, bars, seed, start, qpm=qpm, meter=meter)
    assert len(want_ons) > 0
    assert ons == want_ons, "composed notes off their place on the timeline"
    assert offs == want_offs
    assert played.params[PARAM_GENERATED_NOTES] == len(want_ons)
    assert played.params[PARAM_LATE_NOTES] == 0
    assert {c for _, c, _ in ons} <= {0, 1, 2, 3}, "SATB: a channel per part"
    assert played.latency[-1] == 0, "Generate answers no played note: no latency to report"


@pytest.mark.slow
def test_trigger_continues_what_was_played_and_stops_the_running_job(clap_host: Path, real_engine) -> None:
    endpoint, _ = real_engine
    bars = 2
    # A melody in bar 2 (eighth notes), then the Generate trigger just before bar 3's line: the
    # first bar line 500 ms ahead of it is bar 4's (6 s), and the two bars before it, 2 and 3, are the
    # context. The job the transport start began (bars 2-3) stops at the trigger.
    pitches = [60, 62, 64, 65, 67, 65, 64, 62]
    melody = [(BAR_FRAMES + k * 12000, pitch, 6000) for k, pitch in enumerate(pitches)]
    trigger = 371 * BLOCK  # 189,952: a block boundary, 2,048 frames before bar 3
    start = 3 * BAR_FRAMES
    blocks = (start + (bars + 2) * BAR_FRAMES) // BLOCK
    played = play(clap_host, endpoint, [*melody, (trigger, f"p{PARAM_GENERATE_TRIGGER}=1")],
                  sample_rate_hz=SAMPLE_RATE_HZ, block=BLOCK, blocks=blocks, realtime=False,
                  params={**OFFLINE, PARAM_GENERATE_BARS: bars})
    jobs = _jobs(played.stderr)
    want_jobs = [(bars, BAR_FRAMES, 0), (bars, start, len(melody))]
    assert [(b, f, c) for b, _, f, c in jobs] == want_jobs, played.stderr
    seed = jobs[1][1]
    origin = start - 2 * BAR_FRAMES  # the context's first bar line
    given = make_notes([(f - origin) // FRAMES_PER_TICK for f, _, _ in melody], [p for _, p, _ in melody],
                       [n // FRAMES_PER_TICK for _, _, n in melody], [100] * len(melody))
    want_ons, _ = _expected(endpoint, bars, seed, start, given={"soprano": given}, context_bars=2)
    ons, offs = _ons_offs(played.midi)
    assert played.params[PARAM_LATE_NOTES] == 0
    got = [n for n in ons if n[0] >= trigger]
    assert got == want_ons, f"the continuation is not the client's: {got[:6]} against {want_ons[:6]}"
    assert not [n for n in ons if trigger <= n[0] < start], "the stopped job kept playing"
    # every note the stopped job began ends (at the trigger at the latest)
    first = [n for n in ons if n[0] < trigger]
    assert len([o for o in offs if o[0] <= trigger]) >= len(first)


def test_generate_parameters_are_listed(clap_host: Path, fake_engine) -> None:
    played = play(clap_host, fake_engine.endpoint, [], sample_rate_hz=SAMPLE_RATE_HZ, block=BLOCK, blocks=4,
                  realtime=False, params={PARAM_MODE: MODE_GENERATE, PARAM_GENERATE_BARS: 7})
    assert played.params[PARAM_GENERATE_BARS] == 7
    assert played.params[PARAM_GENERATED_NOTES] == 0

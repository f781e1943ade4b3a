"""``live_perform`` with ``renderer: neural`` over a real engine: blocks of exactly the asked length,
the notes heard ``latency_samples`` late, no click at the joins of blocks rendered from sliding
windows; bad requests are error replies and the engine keeps serving."""
from __future__ import annotations

import numpy as np
import pytest

from bridge import protocol as P
from bridge import synth
from bridge.client import Client, EngineError
from bridge.score import make_notes
from models.performer.neural import join_steps
from tests.engine.test_server import Engine

pytestmark = pytest.mark.skipif(bool(synth.available()), reason=synth.available() or "")
SR, BLOCK, QPM, RES = 22_050, 2_048, 120.0, 480


@pytest.mark.timeout(300)
def test_a_neural_live_session_returns_blocks_that_join_without_clicks(tmp_path):
    samples_per_tick = 60.0 * SR / (QPM * RES)
    engine = Engine(tmp_path).wait_ready()
    try:
        with Client(engine.endpoint, timeout_s=120.0) as c:
            blocks, position = [], 0.0
            pitches = [60, 62, 64, 65, 67, 65, 64, 62]
            for k in range(40):  # 3.7 s: eight quarter notes from tick 0, then their release
                lo, hi = int(position), int(position + BLOCK / samples_per_tick)
                due = [i for i in range(len(pitches)) if lo <= i * RES < hi]
                notes = make_notes(np.array([i * RES for i in due], np.int64),
                                   np.array([pitches[i] for i in due], np.uint8), RES, 90)
                start, audio = c.live_perform("n", notes, lo, block_samples=BLOCK, sample_rate_hz=SR, qpm=QPM,
                                              renderer="neural", style="piano", latent_seed=2)
                assert start == k * BLOCK and audio.shape == (2, BLOCK)
                blocks.append(audio[0])
                position += BLOCK / samples_per_tick
            audio = np.concatenate(blocks)
            steps = join_steps(audio, BLOCK)
            print(steps)
            assert steps["joins"] == 39
            assert np.abs(audio).max() > 1e-3  # it plays
            assert steps["max_step_at_joins"] <= 1.5 * steps["max_step_inside"], steps
            # a rate no DAW runs at (others are resampled: test_live_perform_rates.py), a style the
            # models do not know: error replies
            for fields, said in (({"sample_rate_hz": 4_000}, "sample_rate_hz must be 8000..96000"),
                                 ({"style": "banjo"}, "style 'banjo'"),
                                 ({"latent": [0.1]}, "latent must be 8 finite numbers")):
                request = {"sample_rate_hz": SR, "style": "piano", **fields}
                with pytest.raises(EngineError, match=said) as err:
                    c.live_perform("m", make_notes([0], [60], RES, 90), 0, block_samples=BLOCK, qpm=QPM,
                                   renderer="neural", **request)
                assert err.value.code == P.BAD_INPUT
            with pytest.raises(EngineError, match="another renderer") as err:  # one renderer a session
                c.live_perform("n", make_notes([0], [60], RES, 90), 0, block_samples=BLOCK, sample_rate_hz=SR,
                               qpm=QPM)
            c.ping()
    finally:
        engine.stop()


def live_session(c: Client, session: str, notes: np.ndarray, blocks: int) -> np.ndarray:
    """The (2, n) audio of a live neural session that plays ``notes`` (ticks at RES and QPM), each
    note sent with the block its onset falls in."""
    ticks_per_block = BLOCK * QPM * RES / (60.0 * SR)
    out = []
    for k in range(blocks):
        lo, hi = int(k * ticks_per_block), int((k + 1) * ticks_per_block)
        due = notes[(notes["time"] >= lo) & (notes["time"] < hi)]
        _, audio = c.live_perform(session, due, lo, block_samples=BLOCK, sample_rate_hz=SR, qpm=QPM,
                                  resolution=RES, renderer="neural", style="piano", latent_seed=2)
        out.append(audio)
    return np.concatenate(out, 1)


@pytest.mark.timeout(300)
def test_live_neural_blocks_come_at_the_offline_renders_level(tmp_path):
    # The same notes offline (levelled to -18 LUFS) and live: a single line and three-note chords,
    # whose raw levels differ by 13 dB, both come out within 2 dB of the offline render's loudness.
    from bridge.loudness import LoudnessMeter

    def lufs(audio: np.ndarray) -> float:
        meter = LoudnessMeter(SR)
        meter.add(audio)
        return meter.integrated_lufs()

    line = make_notes(np.arange(8) * RES, np.array([60, 62, 64, 65, 67, 65, 64, 62], np.uint8), RES, 90)
    chords = make_notes(np.repeat(np.arange(8) * RES, 3),
                        np.array([48, 55, 64, 50, 57, 65, 52, 59, 67, 53, 60, 69] * 2, np.uint8), RES, 80)
    engine = Engine(tmp_path).wait_ready()
    try:
        with Client(engine.endpoint, timeout_s=120.0) as c:
            for name, notes in (("line", line), ("chords", chords)):
                offline = c.perform(notes, SR, resolution=RES, qpm=QPM, renderer="neural", style="piano",
                                    latent_seed=2)
                raw = c.perform(notes, SR, resolution=RES, qpm=QPM, renderer="neural", style="piano",
                                latent_seed=2, raw_level=True)
                live = live_session(c, name, notes, 40)  # 3.7 s: the notes and their release
                print(name, {"offline": round(lufs(offline.audio), 2), "raw": round(lufs(raw.audio), 2),
                             "live": round(lufs(live), 2), "offline_gain_db": offline.stats["gain_db"]})
                assert offline.stats["gain_db"] > 10  # the raw level is far below the offline one
                assert abs(lufs(live) - lufs(offline.audio)) < 2.0, name
    finally:
        engine.stop()

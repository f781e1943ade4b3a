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
            # a rate the models were not trained at, a style they do not know: error replies
            for fields, said in (({"sample_rate_hz": 48_000}, "renders at 22050 Hz"),
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

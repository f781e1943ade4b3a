"""``live_perform`` with ``renderer: neural`` at a DAW's sample rate (44,100 and 48,000 Hz): the
neural performer renders at its models' 22,050 Hz and the engine resamples block by block. Blocks
come back at the host's length, the resampled stream is the 22,050 Hz session's audio at the
reported latency, an A4 sounds as A4, the joins have no clicks; the resampler alone keeps exact
block lengths for any block sizes."""
from __future__ import annotations

import numpy as np
import pytest

from bridge import protocol as P
from bridge import synth
from bridge.client import Client
from bridge.score import make_notes
from engine.tasks.perform_neural import BlockResampler
from models.performer.neural import DEFAULT_SYNTH, join_steps
from tests.engine.test_server import Engine

MODEL_HZ, QPM, RES, BLOCK = 22_050, 120.0, 480, 1_024
A4_AT_S, A4_FOR_S, SESSION_S = 1.0, 0.5, 3.0


def test_the_block_resampler_returns_exact_blocks_of_one_continuous_stream():
    # Blocks of any size, even shorter than one input sample: each exactly as long as asked, and
    # together the whole signal resampled at once, `lag` samples late (no seams, no underruns).
    soxr = pytest.importorskip("soxr")
    rng = np.random.default_rng(0)
    for out_hz in (44_100, 48_000):
        x = (0.5 * np.sin(2 * np.pi * 440.0 * np.arange(2 * MODEL_HZ) / MODEL_HZ)).astype(np.float32)
        resampler = BlockResampler(MODEL_HZ, out_hz)
        out, fed, done = [], 0, 0
        while done < 2 * out_hz - 4_096:
            n = int(rng.choice([1, 7, 64, 333, 1_024, 4_096]))
            end = round((done + n) * MODEL_HZ / out_hz)
            block = resampler(x[fed:end], n)
            assert block.shape == (n,) and block.dtype == np.float32
            out.append(block)
            fed, done = end, done + n
        got = np.concatenate(out)[resampler.lag:]
        want = soxr.resample(x, MODEL_HZ, out_hz, quality="LQ")[:len(got)]
        middle = slice(out_hz // 4, len(got) - out_hz // 4)
        assert resampler.underruns == 0
        assert np.abs(got[middle] - want[middle]).max() < 1e-3, out_hz


def session(c: Client, name: str, rate_hz: int, blocks: list[int],
            vocoder: str | None = None, model: str | None = None) -> tuple[np.ndarray, int]:
    """(mono audio, the done stats' latency_samples) of a live neural session at ``rate_hz`` with
    blocks of these lengths, playing one A4 at A4_AT_S for A4_FOR_S (through ``vocoder``, None: the
    live default)."""
    a4_tick = int(A4_AT_S * QPM / 60 * RES)
    out, start, latency = [], 0, set()
    for n in blocks:
        lo = int(start * QPM * RES / (60.0 * rate_hz))
        hi = int((start + n) * QPM * RES / (60.0 * rate_hz))
        notes = make_notes([a4_tick], [69], RES, 90) if lo <= a4_tick < hi else make_notes([], [], RES, 90)
        notes["duration"] = int(A4_FOR_S * QPM / 60 * RES)
        audio, stats = None, {}
        for reply in c.stream(P.LIVE_PERFORM, [notes], session=name, position_ticks=lo, block_samples=n,
                              sample_rate_hz=rate_hz, qpm=QPM, resolution=RES, renderer="neural",
                              style="piano", latent_seed=2, **({"vocoder": vocoder} if vocoder else {}),
                              **({"model": model} if model else {})):
            if reply.type == P.AUDIO:
                assert reply.fields["start_sample"] == start and reply.fields["sample_rate_hz"] == rate_hz
                audio = reply.frame("audio")
            elif reply.type == P.DONE:
                stats = reply.fields["stats"]
        assert audio is not None and audio.shape == (2, n), (None if audio is None else audio.shape)
        out.append(audio[0])
        latency.add(stats["latency_samples"])
        assert stats["model"] == (model or DEFAULT_SYNTH.stem), stats  # the synthesis model it played
        start += n
    assert len(latency) == 1, f"the latency changed within the session: {latency}"
    return np.concatenate(out), latency.pop()


def peak_hz(x: np.ndarray, rate_hz: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), 8 * len(x)))
    return float(np.argmax(spectrum) * rate_hz / (8 * len(x)))


def check_rate(c: Client, rate_hz: int) -> None:
    import soxr

    blocks = [BLOCK] * int(SESSION_S * rate_hz / BLOCK)
    host, latency = session(c, f"host-{rate_hz}", rate_hz, blocks)
    # The same notes at the models' rate, in the blocks the engine renders them in there.
    ends = [round(k * BLOCK * MODEL_HZ / rate_hz) for k in range(len(blocks) + 1)]
    model, model_latency = session(c, f"model-{rate_hz}", MODEL_HZ, np.diff(ends).tolist())
    # The host stream is the 22,050 Hz one resampled, moved by the difference of the two
    # latencies: the reported figure is where the audio is, to the sample.
    want = soxr.resample(model, MODEL_HZ, rate_hz, quality="LQ")
    shift = latency - round(model_latency * rate_hz / MODEL_HZ)
    a, b = int(0.5 * rate_hz), int(2.5 * rate_hz)
    errors = {d: float(np.sum((host[a + shift + d:b + shift + d] - want[a:b]) ** 2)) for d in range(-64, 65)}
    best = min(errors, key=errors.get)
    relative = (errors[0] / np.sum(want[a:b] ** 2)) ** 0.5
    a4 = int(A4_AT_S * rate_hz) + latency
    ms = rate_hz // 1000
    before = float(np.sqrt(np.mean(host[a4 - 300 * ms:a4 - 30 * ms] ** 2)))
    after = float(np.sqrt(np.mean(host[a4:a4 + 300 * ms] ** 2)))
    heard = peak_hz(host[a4 + 50 * ms:a4 + 350 * ms], rate_hz)
    steps = join_steps(host, BLOCK)
    print(rate_hz, {"latency": latency, "best_shift": best, "relative_rms_diff": round(relative, 4),
                    "rms_before": before, "rms_after": after, "a4_hz": heard, **steps})
    assert best == 0 and relative < 0.02, (best, relative)
    assert after > 1e-2 and after > 10 * before, (before, after)  # the onset at the latency
    assert abs(heard / 440.0 - 1) < 0.05, heard  # the models' own error: 2-4 % flat
    assert steps["max_step_at_joins"] <= 1.5 * steps["max_step_inside"], steps


@pytest.mark.skipif(bool(synth.available()), reason=synth.available() or "")
@pytest.mark.timeout(600)
def test_a_live_neural_session_at_44100_and_48000_hz(tmp_path):
    pytest.importorskip("soxr")
    engine = Engine(tmp_path).wait_ready()
    try:
        with Client(engine.endpoint, timeout_s=120.0) as c:
            for rate_hz in (44_100, 48_000):
                check_rate(c, rate_hz)
    finally:
        engine.stop()


@pytest.mark.timeout(300)
def test_a_live_session_through_the_phase_gradient_vocoder_plays_the_a4_the_score_names(tmp_path):
    """The live default, the phase-gradient vocoder, hears the window's notes: the A4 comes out at
    440 Hz (carried Griffin-Lim, the live default before, plays from the mel alone: 447 Hz here)."""
    engine = Engine(tmp_path).wait_ready()
    try:
        with Client(engine.endpoint, timeout_s=120.0) as c:
            blocks = [BLOCK] * int(SESSION_S * MODEL_HZ / BLOCK)
            audio, latency = session(c, "default", MODEL_HZ, blocks)
            # and with the first synthesis model named for the session (``model``)
            other, _ = session(c, "pghi-first", MODEL_HZ, blocks, vocoder="performer-vocoder-pghi",
                               model="performer-synth")
            c.ping()
    finally:
        engine.stop()
    a4 = int(A4_AT_S * MODEL_HZ) + latency
    ms = MODEL_HZ // 1000
    for played in (audio, other):
        assert float(np.sqrt(np.mean(played[a4:a4 + 300 * ms] ** 2))) > 1e-2
        heard = peak_hz(played[a4 + 50 * ms:a4 + 350 * ms], MODEL_HZ)
        assert abs(heard / 440.0 - 1) < 0.01, heard
    assert np.abs(audio - other).max() > 1e-3  # another model played it

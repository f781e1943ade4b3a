"""The neural renderer's side of perform and live_perform (``renderer: "neural"``): the engine's one
neural performer (models.performer.neural: the synthesis model's log-mel through the vocoder, found
by the model registry as tasks ``perform_synth`` and ``perform_vocoder``), a request's style and
latent fields checked against it, and its offline chunks in the shape the SoundFont's come in.

It renders mono at the models' own sample rate (22,050 Hz), sent as two equal channels. Offline
renders are refused at any other rate; a live session at another rate (every DAW's 44,100 or 48,000
Hz) is rendered at the models' rate and resampled block by block (``BlockResampler``). ``style``
picks a performer it was trained on, and the style latent comes as ``latent`` (numbers, as many as
the model's latent size: 8 for the shipped model) or as ``latent_seed`` (the seed it is drawn from).
The notes play at their own times and velocities (no alignment model: a DAW region is already a
timeline).

Bad options raise ``ValueError`` with a sentence saying what is allowed (``PerformInputError`` of
engine/tasks/perform.py is one too), so a caller catches both as one.
"""
from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import numpy as np

from bridge import protocol, synth
from engine.scheduler import JobError
from engine.tasks import EngineContext

# soxr's low-quality recipe: flat to 8 kHz (-0.06 dB; the mel spectrogram the vocoder renders stops
# at 8 kHz), images of the 22,050 Hz render at least 119 dB down, and it holds back far fewer samples
# than HQ (at 44,100 / 48,000 Hz: 980 / 46 against 1,852 / 2,014), which the live latency pays for.
RESAMPLE_QUALITY = "LQ"
RESAMPLE_MARGIN = 16  # host samples of buffering beyond the largest shortfall measured


def neural_options(renderer, sample_rate_hz: int, style: str | None,
                   latent: list[float] | int | None, resampled: bool = False) -> tuple[int, object]:
    """(performer index, latent z) for a neural render, or a ValueError saying what is allowed.
    ``resampled``: the caller resamples (live sessions), so any rate a DAW runs at is accepted."""
    lo, hi = synth.SAMPLE_RATES_HZ
    if resampled and not lo <= sample_rate_hz <= hi:
        raise ValueError(f"sample_rate_hz must be {lo}..{hi} for a live neural session (it is rendered "
                         f"at {renderer.sample_rate_hz} Hz and resampled), got {sample_rate_hz}")
    if not resampled and sample_rate_hz != renderer.sample_rate_hz:
        raise ValueError(f"the neural performer renders at {renderer.sample_rate_hz} Hz, the rate its "
                         f"models were trained at; got sample_rate_hz {sample_rate_hz}: ask for "
                         f"{renderer.sample_rate_hz} and resample afterwards")
    return renderer.performer_id(style), renderer.latent(latent)


def neural_fields(renderer, fields: dict, resampled: bool = False) -> tuple[int, object]:
    """(performer index, latent z) of a request's ``sample_rate_hz``, ``style`` and ``latent`` or
    ``latent_seed`` (at most one of the two), or a ValueError (``resampled``: as neural_options)."""
    latent = fields.get("latent")
    if latent is not None and fields.get("latent_seed") is not None:
        raise ValueError("give the style latent as latent (numbers) or as latent_seed (a seed), not both")
    if latent is None:
        latent = fields.get("latent_seed")
    return neural_options(renderer, fields["sample_rate_hz"], fields.get("style"), latent, resampled)


@lru_cache(maxsize=16)
def resampler_lag(in_rate_hz: int, out_rate_hz: int) -> int:
    """Output samples a ``BlockResampler`` keeps in hand so a block never waits on soxr: soxr
    aligns its output with its input but releases it in bursts, holding back up to a filter length
    and a buffer. The largest shortfall, measured over 2 s of 32-sample blocks (smaller blocks fall
    shortest; it does not grow with time), plus ``RESAMPLE_MARGIN``."""
    import soxr

    stream = soxr.ResampleStream(in_rate_hz, out_rate_hz, 1, dtype="float32", quality=RESAMPLE_QUALITY)
    fed = produced = worst = 0
    for end in range(32, 2 * out_rate_hz, 32):
        n = round(end * in_rate_hz / out_rate_hz) - fed
        produced += len(stream.resample_chunk(np.zeros(n, np.float32)))
        fed += n
        worst = max(worst, end - produced)
    return worst + RESAMPLE_MARGIN


class BlockResampler:
    """Mono audio at ``in_rate_hz`` in, blocks of exactly the asked length at ``out_rate_hz`` out,
    ``lag`` output samples late (``resampler_lag``): the stream keeps its filter state across
    blocks, so the joins are as smooth as one resampled whole. A block that still falls short is
    padded at its end and counted in ``underruns`` (it would shift what follows; none is expected)."""

    def __init__(self, in_rate_hz: int, out_rate_hz: int) -> None:
        import soxr

        self.stream = soxr.ResampleStream(in_rate_hz, out_rate_hz, 1, dtype="float32",
                                          quality=RESAMPLE_QUALITY)
        self.lag = resampler_lag(in_rate_hz, out_rate_hz)
        self.underruns = 0
        self._held = np.zeros(self.lag, np.float32)  # output not yet returned

    def __call__(self, audio: np.ndarray, out_samples: int) -> np.ndarray:
        """(n,) float32 at the input rate -> (out_samples,) float32 at the output rate."""
        held = np.concatenate([self._held, self.stream.resample_chunk(audio.astype(np.float32, copy=False))])
        if len(held) < out_samples:
            self.underruns += 1
            held = np.concatenate([held, np.zeros(out_samples - len(held), np.float32)])
        block, self._held = held[:out_samples], held[out_samples:]
        return block


def neural_chunks(renderer, notes: np.ndarray, parts: np.ndarray, resolution: int, qpm: float,
                  performer: int, z) -> Iterator[np.ndarray]:
    """Offline, neural: the performance of bridge notes (ticks at ``qpm``) from tick 0 and its
    release, as (2, n) float32 chunks (the mono render on both channels)."""
    from models.performer.expression import from_score_notes

    marked = from_score_notes(notes, parts, resolution)
    for mono in renderer.render_chunks(marked, qpm, performer, z.tolist()):
        yield np.stack([mono, mono])


def neural_performer(ctx: EngineContext):
    """The neural performer of the registry's synthesis and vocoder models (the first of each),
    made once per engine and shared by offline and live perform; a JobError when either is missing."""
    def make():
        from models.performer.neural import NeuralRenderer

        found = {task: ctx.registry.usable(task) for task in ("perform_synth", "perform_vocoder")}
        missing = [task for task, entries in found.items() if not entries]
        if missing:
            return f"this engine has no {' or '.join(missing)} model for the neural performer"
        synth_entry, vocoder_entry = found["perform_synth"][0], found["perform_vocoder"][0]
        if not (ctx.registry.use(synth_entry) and ctx.registry.use(vocoder_entry)):
            problem = synth_entry.error or vocoder_entry.error
            return f"the neural performer's models do not load: {problem}"
        try:
            return NeuralRenderer(synth_entry.module, synth_entry.metadata, vocoder_entry.module,
                                  vocoder_entry.metadata)
        except ValueError as exc:
            return str(exc)

    renderer = ctx.shared("neural_performer", make)
    if isinstance(renderer, str):
        raise JobError(protocol.NO_MODEL, renderer)
    return renderer

"""The neural renderer's side of perform and live_perform (``renderer: "neural"``): the engine's one
neural performer (models.performer.neural: the synthesis model's log-mel through the vocoder, found
by the model registry as tasks ``perform_synth`` and ``perform_vocoder``), a request's style and
latent fields checked against it, and its offline chunks in the shape the SoundFont's come in.

It renders mono at the models' own sample rate (22,050 Hz), sent as two equal channels. At any
other rate from 8,000 to 96,000 Hz (every DAW's 44,100 or 48,000) the render is resampled with
soxr: offline as one stream over the render's chunks (``resampled``: HQ; the samples of resampling
the whole, in constant memory), live block by block (``BlockResampler``: LQ, for its latency).
``model`` names the synthesis model (default ``models.performer.neural.DEFAULT_SYNTH``'s) and
``vocoder`` the vocoder model that plays its mels (default
``models.performer.neural.DEFAULT_VOCODER``'s, live ``DEFAULT_LIVE_VOCODER``'s), ``style``
picks a performer it was trained on, and the style latent comes as ``latent`` (numbers, as many as
the model's latent size: 8 for the shipped model) or as ``latent_seed`` (the seed it is
drawn from). The notes play at their own times and velocities (no alignment model: a DAW region is
already a timeline).

Bad options raise ``ValueError`` with a sentence saying what is allowed (``PerformInputError`` of
engine/tasks/perform.py is one too), so a caller catches both as one.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from functools import lru_cache

import numpy as np

from bridge import protocol, synth
from engine.scheduler import JobError
from engine.tasks import EngineContext

log = logging.getLogger("engine.tasks.perform_neural")

# soxr's low-quality recipe: flat to 8 kHz (-0.06 dB; the mel spectrogram the vocoder renders stops
# at 8 kHz), images of the 22,050 Hz render at least 119 dB down, and it holds back far fewer samples
# than HQ (at 44,100 / 48,000 Hz: 980 / 46 against 1,852 / 2,014), which the live latency pays for.
RESAMPLE_QUALITY = "LQ"
RESAMPLE_MARGIN = 16  # host samples of buffering beyond the largest shortfall measured
# offline there is no latency to pay for: soxr's default recipe, flat to 10 kHz, images >= 137 dB down;
# 26 / 43 ms of CPU per minute of audio at 44,100 / 48,000 Hz here, 1-2 % of the neural render's own
OFFLINE_RESAMPLE_QUALITY = "HQ"


def neural_options(renderer, sample_rate_hz: int, style: str | None,
                   latent: list[float] | int | None) -> tuple[int, object]:
    """(performer index, latent z) for a neural render, or a ValueError saying what is allowed.
    Any rate a DAW runs at is accepted: the render is resampled to it."""
    lo, hi = synth.SAMPLE_RATES_HZ
    if not lo <= sample_rate_hz <= hi:
        raise ValueError(f"sample_rate_hz must be {lo}..{hi} for the neural performer (it renders at "
                         f"{renderer.sample_rate_hz} Hz and resamples), got {sample_rate_hz}")
    return renderer.performer_id(style), renderer.latent(latent)


def neural_fields(renderer, fields: dict) -> tuple[int, object]:
    """(performer index, latent z) of a request's ``sample_rate_hz``, ``style`` and ``latent`` or
    ``latent_seed`` (at most one of the two), or a ValueError."""
    latent = fields.get("latent")
    if latent is not None and fields.get("latent_seed") is not None:
        raise ValueError("give the style latent as latent (numbers) or as latent_seed (a seed), not both")
    if latent is None:
        latent = fields.get("latent_seed")
    return neural_options(renderer, fields["sample_rate_hz"], fields.get("style"), latent)


def _mono_stream(in_rate_hz: int, out_rate_hz: int, quality: str):
    """A soxr stream resampling mono float32 audio, its filter state kept across chunks."""
    import soxr

    return soxr.ResampleStream(in_rate_hz, out_rate_hz, 1, dtype="float32", quality=quality)


def resampled(chunks: Iterator[np.ndarray], in_rate_hz: int, out_rate_hz: int) -> Iterator[np.ndarray]:
    """Offline: mono chunks at ``in_rate_hz`` resampled to ``out_rate_hz`` as one stream (soxr
    ``OFFLINE_RESAMPLE_QUALITY``, its state kept across chunks and flushed at the end): the chunks
    joined are exactly ``soxr.resample`` of the whole, round(n * out / in) samples, in constant
    memory. A chunk soxr holds back entirely is not yielded."""
    stream = _mono_stream(in_rate_hz, out_rate_hz, OFFLINE_RESAMPLE_QUALITY)
    for chunk in chunks:
        out = stream.resample_chunk(chunk.astype(np.float32, copy=False))
        if len(out):
            yield out
    out = stream.resample_chunk(np.zeros(0, np.float32), last=True)
    if len(out):
        yield out


@lru_cache(maxsize=16)
def resampler_lag(in_rate_hz: int, out_rate_hz: int) -> int:
    """Output samples a ``BlockResampler`` keeps in hand so a block never waits on soxr: soxr
    aligns its output with its input but releases it in bursts, holding back up to a filter length
    and a buffer. The largest shortfall, measured over 2 s of 32-sample blocks (smaller blocks fall
    shortest; it does not grow with time), plus ``RESAMPLE_MARGIN``."""
    stream = _mono_stream(in_rate_hz, out_rate_hz, RESAMPLE_QUALITY)
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
        self.stream = _mono_stream(in_rate_hz, out_rate_hz, RESAMPLE_QUALITY)
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
                  performer: int, z, sample_rate_hz: int | None = None,
                  markings: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Offline, neural: the performance of bridge notes (ticks at ``qpm``) from tick 0 and its
    release, as (2, n) float32 chunks (the mono render on both channels) at ``sample_rate_hz``
    (None: the models' own; another is ``resampled``). With a score's ``markings`` (one row per
    note) the model hears them and the notes are played by them (``expression.play_plainly``)."""
    from models.performer.expression import from_score_notes, play_plainly
    from models.performer.neural import FIRST_CHUNK_FRAMES

    marked = from_score_notes(notes, parts, resolution, markings)
    if markings is not None:
        marked = play_plainly(marked, qpm)
    monos = renderer.render_chunks(marked, qpm, performer, z.tolist(), first_chunk_frames=FIRST_CHUNK_FRAMES)
    if sample_rate_hz not in (None, renderer.sample_rate_hz):
        monos = resampled(monos, renderer.sample_rate_hz, sample_rate_hz)
    for mono in monos:
        yield np.stack([mono, mono])


def pick_vocoder(entries: list, name: str | None, live: bool = False):
    """The vocoder entry of ``name``; with None, the shipped default's (``DEFAULT_VOCODER``, live
    ``DEFAULT_LIVE_VOCODER``) where the registry has it, else the first; a ValueError naming the
    choices for a name it does not have."""
    from models.performer.neural import DEFAULT_LIVE_VOCODER, DEFAULT_VOCODER

    return _pick("vocoder", entries, name, (DEFAULT_LIVE_VOCODER if live else DEFAULT_VOCODER).stem)


def pick_synth(entries: list, name: str | None):
    """The synthesis model entry of ``name`` (a request's ``model``); with None, the shipped
    default's (``DEFAULT_SYNTH``) where the registry has it, else the first."""
    from models.performer.neural import DEFAULT_SYNTH

    return _pick("synthesis model", entries, name, DEFAULT_SYNTH.stem)


def _pick(kind: str, entries: list, name: str | None, default: str):
    by_name = {e.name: e for e in entries}
    if name is None:
        return by_name.get(default, entries[0])
    if name not in by_name:
        raise ValueError(f"unknown {kind} {name!r}; this engine has {', '.join(sorted(by_name))}")
    return by_name[name]


def neural_performer(ctx: EngineContext, vocoder: str | None = None, live: bool = False,
                     synth: str | None = None):
    """The neural performer of the synthesis model named (None: the shipped default, ``pick_synth``)
    and the vocoder named (None: the default for offline or ``live`` rendering, ``pick_vocoder``),
    made once per engine and pair and shared by offline and live perform; a JobError when a model
    is missing or a name is unknown."""
    found = {task: ctx.registry.usable(task) for task in ("perform_synth", "perform_vocoder")}
    missing = [task for task, entries in found.items() if not entries]
    if missing:
        raise JobError(protocol.NO_MODEL, f"this engine has no {' or '.join(missing)} model for the neural "
                                          "performer")
    try:
        vocoder_entry = pick_vocoder(found["perform_vocoder"], vocoder, live)
        synth_entry = pick_synth(found["perform_synth"], synth)
    except ValueError as exc:
        raise JobError(protocol.BAD_INPUT, str(exc)) from None

    def make():
        from models.performer.neural import NeuralRenderer

        if not (ctx.registry.use(synth_entry) and ctx.registry.use(vocoder_entry)):
            problem = synth_entry.error or vocoder_entry.error
            return f"the neural performer's models do not load: {problem}"
        try:
            renderer = NeuralRenderer(synth_entry.module, synth_entry.metadata, vocoder_entry.module,
                                      vocoder_entry.metadata)
        except ValueError as exc:
            return str(exc)
        log.info("event=neural_performer synth=%s vocoder=%s rise_limit=%s hairpin_gain=%s legato_rate=%s",
                 synth_entry.name, vocoder_entry.name, renderer.rise_limit, renderer.hairpin_gain,
                 renderer.legato_rate)
        return renderer

    renderer = ctx.shared(f"neural_performer:{synth_entry.name}:{vocoder_entry.name}", make)
    if isinstance(renderer, str):
        raise JobError(protocol.NO_MODEL, renderer)
    return renderer

"""The neural renderer's side of perform and live_perform (``renderer: "neural"``): the engine's one
neural performer (models.performer.neural: the synthesis model's log-mel through the vocoder, found
by the model registry as tasks ``perform_synth`` and ``perform_vocoder``), a request's style and
latent fields checked against it, and its offline chunks in the shape the SoundFont's come in.

It renders mono at the models' own sample rate (22,050 Hz; any other rate is refused), sent as two
equal channels; ``style`` picks a performer it was trained on, and the style latent comes as
``latent`` (numbers, as many as the model's latent size: 8 for the shipped model) or as
``latent_seed`` (the seed it is drawn from). The notes play at their own times and velocities (no
alignment model: a DAW region is already a timeline).

Bad options raise ``ValueError`` with a sentence saying what is allowed (``PerformInputError`` of
engine/tasks/perform.py is one too), so a caller catches both as one.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from bridge import protocol
from engine.scheduler import JobError
from engine.tasks import EngineContext


def neural_options(renderer, sample_rate_hz: int, style: str | None,
                   latent: list[float] | int | None) -> tuple[int, object]:
    """(performer index, latent z) for a neural render, or a ValueError saying what is allowed."""
    if sample_rate_hz != renderer.sample_rate_hz:
        raise ValueError(f"the neural performer renders at {renderer.sample_rate_hz} Hz, the rate its "
                         f"models were trained at; got sample_rate_hz {sample_rate_hz}: ask for "
                         f"{renderer.sample_rate_hz} and resample afterwards")
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

"""The arrange task: assign every note of a solo (e.g. piano) part to an ensemble part.

Every input note comes out unchanged (onset, pitch, duration, velocity, at the input's own tick
resolution); the model only decides which part it goes to.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bridge.score import Score, Track, sort_order
from engine.registry import ModelEntry
from models.arranger import decoding
from models.arranger.features import FeatureConfig
from models.arranger.inference import decode_stepwise, log_probs

MODES = ("online", "offline")


class ArrangeInputError(ValueError):
    """The input cannot be arranged; the message says why and what to do."""


@dataclass
class ArrangeOptions:
    constrained: bool = True  # one sounding note per monophonic part
    entries_beats: dict[str, float] = field(default_factory=dict)  # part name -> entry beat
    pitch_hints: dict[str, int] = field(default_factory=dict)  # part name -> typical MIDI pitch


def parse_hints(items: list[str], part_names: list[str]) -> tuple[dict[str, float], dict[str, int]]:
    """Parse ``PART:entry=BEAT,pitch=MIDI`` items (part names case-insensitive)."""
    lookup = {p.lower(): p for p in part_names}
    entries, pitches = {}, {}
    for item in items:
        part, _, body = item.partition(":")
        name = lookup.get(part.strip().lower())
        if name is None or not body:
            raise ArrangeInputError(
                f"hint {item!r} must look like PART:entry=BEAT or PART:pitch=MIDI with PART one of "
                f"{', '.join(part_names)}")
        for kv in body.split(","):
            key, _, value = kv.partition("=")
            try:
                if key.strip() == "entry":
                    entries[name] = float(value)
                elif key.strip() == "pitch":
                    pitches[name] = int(value)
                else:
                    raise ValueError
            except ValueError:
                raise ArrangeInputError(f"hint {item!r}: {kv!r} is not entry=BEAT (a number) or "
                                        "pitch=MIDI (0..127)") from None
    return entries, pitches


def to_model_ticks(notes: np.ndarray, resolution: int, fcfg: FeatureConfig) -> np.ndarray:
    """A copy of ``notes`` at the model's tick resolution (durations at least one tick); the
    input's own notes are never changed."""
    factor = fcfg.resolution / resolution
    scaled = notes.copy()
    scaled["time"] = np.round(notes["time"] * factor).astype(np.int64)
    scaled["duration"] = np.maximum(np.round(notes["duration"] * factor).astype(np.int64), 1)
    return scaled


def entry_ticks(parts: list[dict], options: ArrangeOptions, first_onset: int,
                fcfg: FeatureConfig) -> np.ndarray:
    """Each part's entry (model ticks): the user's hint, else the first note of the input."""
    return np.array([round(options.entries_beats[p["name"]] * fcfg.resolution)
                     if p["name"] in options.entries_beats else first_onset for p in parts], np.int64)


def pitch_hint_vector(parts: list[dict], options: ArrangeOptions) -> np.ndarray:
    """(P,) typical pitch of each part scaled to 0..1: the user's hint, else the part's mid-range."""
    return np.array([options.pitch_hints.get(p["name"], (p["low"] + p["high"]) / 2) / 127.0
                     for p in parts], np.float32)


def input_notes(score: Score) -> np.ndarray:
    """All pitched notes of the input in (onset, pitch, duration) order; refuses unusable input."""
    if not score.tracks or score.n_notes == 0:
        raise ArrangeInputError("the input has no notes; give a MIDI or MusicXML file with a piano "
                                "(or other solo) part")
    notes, _ = score.merged(include_drums=False)
    if len(notes) == 0:
        raise ArrangeInputError("the input has only drum notes (MIDI channel 10), which cannot be "
                                "arranged; give a pitched part")
    return notes


def arrange(score: Score, model: ModelEntry, options: ArrangeOptions | None = None) -> Score:
    """A new score with one track per ensemble part holding the input's notes."""
    options = options or ArrangeOptions()
    meta = model.metadata
    parts = meta["parts"]
    n_parts = len(parts)
    notes = input_notes(score)
    fcfg = FeatureConfig(**meta["features"])
    # the model works at its own resolution; the notes themselves keep the input's
    scaled = to_model_ticks(notes, score.resolution, fcfg)
    order = sort_order(scaled)
    scaled, notes = scaled[order], notes[order]
    entries = entry_ticks(parts, options, int(scaled["time"][0]), fcfg)
    pitch_hints = pitch_hint_vector(parts, options)
    constrained = options.constrained and meta.get("monophonic_parts", True)
    if fcfg.use_voice_state:  # the model reads its own past choices: one note at a time
        labels = decode_stepwise(model.module, scaled, fcfg, n_parts, entries, pitch_hints, constrained,
                                 model.device)
    else:
        logp = log_probs(model.module, scaled, fcfg, n_parts, entries, pitch_hints, model.device)
        decode = decoding.DECODERS[meta["decoder"]] if constrained else decoding.argmax
        labels = decode(scaled, logp)
    tracks = [Track(name=p["name"], program=int(p["program"]), notes=notes[labels == k], role=p["name"])
              for k, p in enumerate(parts)]
    return Score(score.resolution, tracks, score.tempos.copy(), score.meters.copy(),
                 score.keys.copy(), score.title)

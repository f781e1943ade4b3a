"""Causal decoding, one chord at a time, with the model's ``step`` method: the one incremental
decoder. It carries what a causal decode needs from chord to chord (the LSTM state, the voice
tracker of models that read their own past choices, the parts' busy times) and serves both the
offline step-wise decode (``decode_stepwise``) and the engine's live sessions
(engine/tasks/live_arrange.py), so a live session labels a piece as the offline decode does by
construction.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from models.arranger.decoding import PartLimits, PartState, chord_spans
from models.arranger.features import VOICE_FEATURES, FeatureConfig, VoiceTracker, entry_hints, note_features


class IncrementalDecoder:
    def __init__(self, module, fcfg: FeatureConfig, n_parts: int, decoder: str = "chordwise",
                 constrained: bool = True, device: str | torch.device = "cpu",
                 limits: PartLimits | None = None) -> None:
        self.module, self.fcfg, self.n_parts = module, fcfg, n_parts
        self.decoder, self.constrained = decoder, constrained
        self.device = torch.device(device)
        # own copies: a frozen module may hand out one folded constant to every caller, and _step
        # writes the state in place
        self.h, self.c = (s.to(self.device).clone() for s in module.initial_state())
        self.parts = PartState(n_parts, limits)  # ranges and notes at once of each part
        self.tracker = VoiceTracker(n_parts, fcfg.resolution)
        self.pitch_hints = torch.zeros(1, n_parts, device=self.device)  # (1, P), 0..1
        self._zero_voice = torch.zeros(1, 1, n_parts * VOICE_FEATURES, device=self.device)

    def reset(self, pitch_hints: np.ndarray | None = None) -> None:
        """Back to the start of a piece, in this object's own memory (live sessions are reused)."""
        h, c = self.module.initial_state()
        self.h.copy_(h)
        self.c.copy_(c)
        self.parts.reset()
        self.tracker.end.fill(-1)
        self.tracker.onset.fill(-1)
        self.tracker.pitch.fill(-1.0)
        self.set_pitch_hints(pitch_hints)

    def set_pitch_hints(self, pitch_hints: np.ndarray | None) -> None:
        """(P,) typical pitch of each part scaled to 0..1 (zeros: no hint)."""
        values = np.zeros(self.n_parts, np.float32) if pitch_hints is None else pitch_hints
        values = np.asarray(values, np.float32)
        self.pitch_hints.copy_(torch.from_numpy(values).unsqueeze(0))

    def busy(self, part: int, ends_ticks: list[int]) -> None:
        """Part ``part`` sounds notes ending at ``ends_ticks`` (model ticks): held or released live
        notes."""
        self.parts.hold(part, ends_ticks)
        self.tracker.end[part] = max(ends_ticks, default=-1)

    @torch.no_grad()
    def chord(self, chord: np.ndarray, entries: np.ndarray | None = None) -> np.ndarray:
        """Labels of one chord: notes sharing an onset, at the model's resolution, in (onset,
        pitch, duration) order, after every chord before it."""
        ints = torch.from_numpy(note_features(chord, self.fcfg)).unsqueeze(0).to(self.device)  # (1, k, 5)
        eh = (entry_hints(chord, entries) if entries is not None
              else np.zeros((len(chord), self.n_parts), np.float32))
        eh = torch.from_numpy(eh).unsqueeze(0).to(self.device)  # (1, k, P)
        if self.fcfg.use_voice_state:  # each note reads the choices made before it
            labels = np.zeros(len(chord), np.int64)
            for i, n in enumerate(chord):
                state = self.tracker.features(int(n["time"]), int(n["pitch"]))
                voice = torch.from_numpy(state).view(1, 1, -1).to(self.device)
                logits = self._step(ints[:, i:i + 1], eh[:, i:i + 1], voice)
                if self.constrained:
                    logits = logits - self.parts.penalty(chord[i:i + 1])[0]
                best = int(logits.argmax())
                labels[i] = self.parts.take(best, n) if self.constrained else best
                if labels[i] < self.n_parts:  # not the extra keyboard part, which the model does not know
                    self.tracker.update(int(n["time"]), int(n["pitch"]), int(n["duration"]), int(labels[i]))
            return labels
        logp = np.stack([self._step(ints[:, i:i + 1], eh[:, i:i + 1], self._zero_voice)
                         for i in range(len(chord))])
        logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
        if not self.constrained:
            labels = logp.argmax(-1)
            for i, n in enumerate(chord):
                self.parts.occupy(int(labels[i]), int(n["time"] + n["duration"]))
            return labels
        if self.decoder == "chordwise":
            return self.parts.chord(chord, logp)
        return self.parts.note(chord, logp)

    def _step(self, ints: torch.Tensor, eh: torch.Tensor, voice: torch.Tensor) -> np.ndarray:
        logits, h, c = self.module.step(ints, eh, self.pitch_hints, voice, self.h, self.c)
        # into the decoder's own tensors: a new state pair per note, kept until the next note,
        # fragments the heap of a long-running engine (a soak's RSS crept while malloc's in-use
        # bytes stayed flat)
        self.h.copy_(h)
        self.c.copy_(c)
        return logits[0, 0].cpu().numpy().astype(np.float64)


def decode_stepwise(module, notes: np.ndarray, fcfg: FeatureConfig, n_parts: int,
                    entries: np.ndarray | None = None, pitch_hints: np.ndarray | None = None,
                    constrained: bool = True, device: str | torch.device = "cpu",
                    limits: PartLimits | None = None, check: Callable[[], None] | None = None) -> np.ndarray:
    """Labels from an online model that sees its own past choices, chord by chord as live;
    notes sorted by (onset, pitch, duration) at the model's resolution. ``check`` is called before
    every chord (the engine's cancellation check)."""
    decoder = IncrementalDecoder(module, fcfg, n_parts, "chordwise", constrained, device, limits)
    decoder.set_pitch_hints(pitch_hints)
    labels = np.zeros(len(notes), np.int64)
    for a, b in chord_spans(notes["time"]):
        if check is not None:
            check()
        labels[a:b] = decoder.chord(notes[a:b], entries)
    return labels

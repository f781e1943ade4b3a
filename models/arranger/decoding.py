"""Turning per-note part probabilities into labels that players can play: each part sounds at most
as many notes at once as it can (one for a voice or a violin line), and gets only notes in its
range, unless no part can take a note otherwise (the policy below).

- ``notewise``: greedy, note by note; causal in note order (what the paper calls online).
- ``chordwise``: the notes sharing an onset are assigned jointly (Hungarian algorithm); causal in
  time, so usable live once a chord's onset has arrived, and the offline models' decoder.
- ``chordwise-ordered``: as chordwise, but within a chord higher notes take higher parts. Parts
  are ordered top voice first (soprano, alto, ...; violin I, violin II, ...).

The policy for a note no part can take as asked (every part that has it in range is already
sounding as many notes as it can, or no part has it in range): it goes where the model prefers
among, first, parts that have it in range (a *divisi*: the part plays two notes at once, marked in
the score), then parts that do not (an *out-of-range* note); with ``PartLimits.extra`` set (the
``--keep-extras`` keyboard part) it goes to that part instead. No note is ever moved or dropped:
these rules only choose a part. ``playability`` counts each kind afterwards.

Each decoder takes an optional ``check``, called before every chord (notewise: every note): the
engine passes its job's cancellation check, so a long region stops within a chord of a cancel.

A monophonic stretch (one note at a time, nothing else sounding) stays in the part that took its
previous note while that part has the note in range: a melody is not scattered across parts.
Offline, ``prefer_one_part`` first draws the whole stretch to the part whose range holds most of it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from itertools import combinations

import numpy as np

BUSY_PENALTY = 30.0  # nats; large enough to rule out a sounding part unless every part is sounding
RANGE_PENALTY = 100.0  # nats; larger than BUSY_PENALTY: a divisi in range beats a note out of range
STRETCH_BONUS = 50.0  # nats; below RANGE_PENALTY: a stretch's part, unless a note is out of its range
PLAYABLE, DIVISI, OUT_OF_RANGE, EXTRA = 0, 1, 2, 3  # what ``playability`` says of each note


@cache
def linear_sum_assignment():
    """scipy's exact assignment solver (the Hungarian step), loaded from its C extension alone:
    importing the ``scipy.optimize`` package takes ~0.3 s, a fifth of a one-shot ``arrange``
    (benchmarks/RESULTS.md), and this function is all it is imported for. The same compiled code,
    so the same answers; where the extension is not where scipy keeps it, the public import."""
    import importlib.machinery
    import importlib.util
    from pathlib import Path

    scipy = importlib.util.find_spec("scipy")  # finds the package without importing it
    for folder in (scipy.submodule_search_locations or []) if scipy else []:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = Path(folder) / "optimize" / f"_lsap{suffix}"
            if path.is_file():
                try:
                    spec = importlib.util.spec_from_file_location("scipy.optimize._lsap", path)
                    module = importlib.util.module_from_spec(spec)
                    spec.loader.exec_module(module)
                    return module.linear_sum_assignment
                except (ImportError, AttributeError, OSError):
                    break
    from scipy.optimize import linear_sum_assignment as solve

    return solve


def argmax(notes: np.ndarray, logp: np.ndarray, limits: PartLimits | None = None,
           check: Callable[[], None] | None = None) -> np.ndarray:
    return logp.argmax(-1).astype(np.int64)


def chord_spans(onsets: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index spans of the notes sharing an onset (onsets sorted)."""
    n = len(onsets)
    if n == 0:
        return []
    starts = np.flatnonzero(np.concatenate([[True], onsets[1:] != onsets[:-1]]))
    bounds = np.concatenate([starts, [n]])
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


@dataclass(frozen=True)
class PartLimits:
    """What each of a model's P parts can play: sounding range and notes at once; and where notes
    go that no part can take (``extra``: the index of an added keyboard part, P, or None)."""

    low: np.ndarray  # (P,) lowest MIDI pitch
    high: np.ndarray  # (P,) highest MIDI pitch
    polyphony: np.ndarray  # (P,) notes at once
    extra: int | None = None

    @classmethod
    def free(cls, n_parts: int, polyphony: int = 1) -> PartLimits:
        """Every pitch in every part; ``polyphony`` notes at once (the models' training setting)."""
        return cls(np.zeros(n_parts, np.int64), np.full(n_parts, 127, np.int64),
                   np.full(n_parts, polyphony, np.int64))

    @classmethod
    def of(cls, parts, keep_extras: bool = False) -> PartLimits:
        """From ensemble parts (anything with ``low``, ``high`` and ``polyphony``)."""
        return cls(np.array([p.low for p in parts], np.int64), np.array([p.high for p in parts], np.int64),
                   np.array([p.polyphony for p in parts], np.int64), len(parts) if keep_extras else None)

    @property
    def n_parts(self) -> int:
        return len(self.low)

    def range_penalty(self, pitches: np.ndarray) -> np.ndarray:
        """(k, P) nats: RANGE_PENALTY plus one per semitone outside a part's range, 0 inside (a
        note no part has in range goes to the nearest range)."""
        pitches = np.asarray(pitches, np.int64)[:, None]
        below = np.maximum(self.low[None, :] - pitches, 0)
        above = np.maximum(pitches - self.high[None, :], 0)
        return RANGE_PENALTY * ((below + above) > 0) + (below + above)

    def in_range(self, pitches: np.ndarray) -> np.ndarray:
        """(k, P) whether each part has each pitch in its range."""
        pitches = np.asarray(pitches, np.int64)[:, None]
        return (pitches >= self.low[None, :]) & (pitches <= self.high[None, :])


class PartState:
    """When each part's sounding notes end: the one piece of history the decoders need. Kept across
    calls by live sessions, which decode a chord at a time as the DAW plays."""

    def __init__(self, n_parts: int, limits: PartLimits | None = None) -> None:
        self.limits = limits or PartLimits.free(n_parts)
        if self.limits.n_parts != n_parts:
            raise ValueError(f"limits are for {self.limits.n_parts} parts, the model has {n_parts}")
        self.n_parts = n_parts
        self.ends = np.full((n_parts, int(self.limits.polyphony.max())), -1, np.int64)  # (P, S) ticks
        self.solo = -1  # the part of a monophonic stretch's latest note, -1 outside one

    @property
    def busy_until(self) -> np.ndarray:
        """(P,) when each part's last sounding note ends."""
        return self.ends.max(axis=1)

    def reset(self) -> None:
        self.ends.fill(-1)
        self.solo = -1

    def full(self, onset: int) -> np.ndarray:
        """(P,) parts already sounding as many notes as they can at ``onset``."""
        return (self.ends > onset).sum(axis=1) >= self.limits.polyphony

    def penalty(self, chord: np.ndarray) -> np.ndarray:
        """(k, P) nats taken off each note's log-probability of each part: sounding parts and parts
        without the note in range rank last (the policy in this module's docstring)."""
        onset = int(chord["time"][0])
        return BUSY_PENALTY * self.full(onset)[None, :] + self.limits.range_penalty(chord["pitch"])

    def _solo_part(self, chord: np.ndarray) -> int:
        """The part a lone note must take to keep a monophonic stretch in one part, or -1."""
        onset = int(chord["time"][0])
        if len(chord) != 1 or self.solo < 0:
            return -1
        others = np.delete(self.ends, self.solo, axis=0)
        if (others > onset).any() or self.full(onset)[self.solo]:
            return -1
        return self.solo if self.limits.in_range(chord["pitch"])[0, self.solo] else -1

    def _after(self, chord: np.ndarray) -> None:
        onset = int(chord["time"][0])
        alone = len(chord) == 1 and int((self.ends > onset).sum()) == 1  # only the note just taken
        self.solo = self.solo if alone and self.solo >= 0 else -1

    def note(self, notes: np.ndarray, logp: np.ndarray,
             check: Callable[[], None] | None = None) -> np.ndarray:
        """Greedy, note by note: the best part among those that can take the note."""
        labels = np.zeros(len(notes), np.int64)
        t = notes["time"]
        for i in range(len(notes)):
            if check is not None:
                check()
            one = notes[i:i + 1]
            lone = (i == 0 or t[i - 1] != t[i]) and (i == len(notes) - 1 or t[i + 1] != t[i])
            p = self._solo_part(one) if lone else -1
            if p < 0:
                p = int((logp[i] - self.penalty(one)[0]).argmax())
            labels[i] = self.take(p, notes[i])
            self._after(one)
        return labels

    def chord(self, notes: np.ndarray, logp: np.ndarray, ordered: bool = False) -> np.ndarray:
        """Notes sharing one onset, assigned jointly with the highest total log-probability: each
        part takes as many of them as it can play at once before a divisi is considered (with
        ``ordered``: distinct parts, higher notes in higher parts)."""
        k = len(notes)
        if ordered and k > self.n_parts:
            return self.note(notes, logp)
        solo = self._solo_part(notes)
        if solo >= 0:
            labels = np.array([solo])
        elif ordered:  # ascending pitch -> descending part index: which k parts, in reverse order
            score = logp - self.penalty(notes)
            best, best_total = None, -np.inf
            for chosen in combinations(range(self.n_parts), k):
                cols = np.array(chosen[::-1])
                total = score[np.arange(k), cols].sum()
                if total > best_total:
                    best, best_total = cols, total
            labels = best
        else:
            # k slots per part: slot j of part p is the (j+1)-th note it takes in this chord, a
            # divisi once the part already sounds as many notes as it can
            onset = int(notes["time"][0])
            sounding = (self.ends > onset).sum(axis=1)  # (P,)
            slots = np.arange(k)[:, None] + sounding[None, :]  # (k, P) notes sounding with slot j
            full = slots >= self.limits.polyphony[None, :]
            base = logp - self.limits.range_penalty(notes["pitch"])  # (k, P)
            score = base[:, None, :] - BUSY_PENALTY * full[None, :, :]  # (k notes, k slots, P)
            rows, cols = linear_sum_assignment()(-score.reshape(k, k * self.n_parts))
            labels = np.zeros(k, np.int64)
            labels[rows] = cols % self.n_parts
        labels = np.array([self.take(int(labels[i]), notes[i]) for i in range(k)], np.int64)
        self._after(notes)
        return labels

    def take(self, part: int, note) -> int:
        """Give ``note`` to ``part`` and return the part it went to: the extra part instead when
        ``part`` cannot play it (full or out of range) and the limits have one."""
        onset, pitch = int(note["time"]), int(note["pitch"])
        extra = self.limits.extra
        playable = self.limits.low[part] <= pitch <= self.limits.high[part] and not self.full(onset)[part]
        if extra is not None and not playable:
            self.solo = -1
            return extra
        self.occupy(part, onset + int(note["duration"]))
        self.solo = part
        return part

    def occupy(self, part: int, end: int) -> None:
        """``part`` sounds one more note, until ``end`` (ticks)."""
        # a free slot, else the one ending soonest (a divisi); a one-note part keeps its latest end
        slot = 0 if self.limits.polyphony[part] == 1 else int(self.ends[part].argmin())
        self.ends[part, slot] = max(self.ends[part, slot], end)

    def hold(self, part: int, ends: list[int]) -> None:
        """Part ``part`` sounds notes ending at ``ends`` (ticks): what a live session knows."""
        self.ends[part].fill(-1)
        latest = sorted(ends, reverse=True)[:self.ends.shape[1]]
        self.ends[part, :len(latest)] = latest


def playability(notes: np.ndarray, labels: np.ndarray, limits: PartLimits) -> np.ndarray:
    """(N,) PLAYABLE, DIVISI, OUT_OF_RANGE or EXTRA for each note (notes in onset order): what the
    summary counts and the score marks."""
    flags = np.zeros(len(notes), np.int64)
    if limits.extra is not None:
        flags[labels == limits.extra] = EXTRA
    state = PartState(limits.n_parts, PartLimits(limits.low, limits.high, limits.polyphony))
    for a, b in chord_spans(notes["time"]):
        taken = (state.ends > notes["time"][a]).sum(axis=1)  # (P,) notes sounding in each part
        for i in range(a, b):
            if flags[i] == EXTRA:
                continue
            part = int(labels[i])
            if not limits.low[part] <= int(notes["pitch"][i]) <= limits.high[part]:
                flags[i] = OUT_OF_RANGE
            elif taken[part] >= limits.polyphony[part]:
                flags[i] = DIVISI
            taken[part] += 1
        for i in range(a, b):
            if flags[i] != EXTRA:
                state.occupy(int(labels[i]), int(notes["time"][i] + notes["duration"][i]))
    return flags


def monophonic_stretches(notes: np.ndarray) -> list[np.ndarray]:
    """Index arrays of the runs of at least two notes (onset order) that each sound alone: the only
    note at its onset, starting once every earlier note has ended."""
    t = notes["time"]
    ends = t + notes["duration"]
    reach = np.concatenate([[np.iinfo(np.int64).min], np.maximum.accumulate(ends)[:-1]])  # (N,)
    single = np.ones(len(notes), bool)
    same = t[1:] == t[:-1]
    single[1:] &= ~same
    single[:-1] &= ~same
    alone = single & (reach <= t)
    runs, start = [], None
    for i, a in enumerate(np.append(alone, False)):
        if a and start is None:
            start = i
        elif not a and start is not None:
            if i - start >= 2:
                runs.append(np.arange(start, i))
            start = None
    return runs


def prefer_one_part(notes: np.ndarray, logp: np.ndarray, limits: PartLimits) -> np.ndarray:
    """``logp`` with each monophonic stretch drawn to one part: the part that has the most of its
    notes in range (the model's total preference breaks ties). Not causal: offline decoding only."""
    logp = logp.copy()
    for run in monophonic_stretches(notes):
        fits = limits.in_range(notes["pitch"][run])  # (n, P)
        count = fits.sum(axis=0)
        candidates = np.flatnonzero(count == count.max())
        best = int(candidates[logp[run][:, candidates].sum(axis=0).argmax()])
        logp[run, best] += STRETCH_BONUS
    return logp


def notewise(notes: np.ndarray, logp: np.ndarray, limits: PartLimits | None = None,
             check: Callable[[], None] | None = None) -> np.ndarray:
    """Causal in note order (the paper's online setting)."""
    return PartState(logp.shape[1], limits).note(notes, logp, check)


def chordwise(notes: np.ndarray, logp: np.ndarray, limits: PartLimits | None = None,
              ordered: bool = False, check: Callable[[], None] | None = None) -> np.ndarray:
    """Causal in time: each chord decided from the past and itself."""
    state = PartState(logp.shape[1], limits)
    labels = np.zeros(len(notes), np.int64)
    for a, b in chord_spans(notes["time"]):
        if check is not None:
            check()
        labels[a:b] = state.chord(notes[a:b], logp[a:b], ordered)
    return labels


def chordwise_ordered(notes: np.ndarray, logp: np.ndarray, limits: PartLimits | None = None,
                      check: Callable[[], None] | None = None) -> np.ndarray:
    return chordwise(notes, logp, limits, ordered=True, check=check)


DECODERS = {"argmax": argmax, "notewise": notewise, "chordwise": chordwise,
            "chordwise-ordered": chordwise_ordered}


def default_decoder(causal: bool, chord_context: bool) -> str:
    """A note-causal model (online, no chord context) can only be decoded note by note."""
    return "notewise" if causal and not chord_context else "chordwise"


def lead_parts(notes: np.ndarray, lengthless: np.ndarray, labels: np.ndarray,
               tracks: np.ndarray | None = None) -> np.ndarray:
    """(M,) the part of each note of no length (``lengthless``; a grace note, a zero-length MIDI
    note): the part of the note it leads to, the nearest in pitch among the notes with a length at
    the next onset (the last onset before it, at the end), of its own source track where ``tracks``
    (N,) says and that track has one. ``labels`` holds the parts of the notes with a length. Grace
    notes stay with the note they ornament and never count as a chord's extra note."""
    tracks = np.zeros(len(notes), np.int64) if tracks is None else np.asarray(tracks)
    out = []
    for g in np.flatnonzero(lengthless):
        candidates = ~lengthless & (tracks == tracks[g])
        if not candidates.any():
            candidates = ~lengthless
        after = candidates & (notes["time"] >= notes["time"][g])
        onset = notes["time"][after].min() if after.any() else notes["time"][candidates].max()
        same = np.flatnonzero(candidates & (notes["time"] == onset))
        nearest = same[np.argmin(np.abs(notes["pitch"][same].astype(np.int64) - int(notes["pitch"][g])))]
        out.append(labels[nearest])
    return np.array(out, np.int64)

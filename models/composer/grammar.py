"""Grammar and range masks for sampling ``ours`` tokens: at every step only the tokens that keep
the sequence a valid score for the request.

A ``Plan`` is what the request fixes: the instruments (tracks, in vocabulary order), the number of
bars, each bar's condition tokens (``BAR``, meter, key, chords), each instrument's pitch window (its
playable range, narrowed by a user's range control) and how many notes may start together on one
track. ``OursGrammar`` walks the tokens: forced ones (header, bar conditions, the next ``TRACK``)
come out as a single allowed token; elsewhere the mask allows a later onset in the bar, a higher
pitch at the same onset inside the window, a duration, or moving on to the next track, bar or the
end. ``check_score`` says what is wrong with a decoded score, for tests and the engine's guard.

With a tokenizer that writes DENSITY tokens, each track bar opens with one (sampled, or forced by
the request's density control) and the mask then holds the track to that many notes: no new onset
past the bucket's most, no moving on before its fewest (unless the bar has no room left). A track's
rhythm control narrows its onsets to a grid (``onset_steps``: every beat, every half beat).

The study's MMT and REMI tokenisations are sampled unconstrained there; their decoders skip
malformed groups.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from models.composer.representations import OursTokenizer
from models.composer.tokens import GRID_TICKS, MAX_DURATION_STEPS, TokenScore, density_bounds


@dataclass
class Plan:
    instruments: list[int]  # tokenizer instrument indices, ascending (the tracks' order)
    bar_conditions: list[list[int]]  # per bar: BAR, [METER], [KEY], [CPOS CHORD]* token ids
    bar_steps: list[int]  # grid steps per bar
    windows: dict[int, tuple[int, int]] = field(default_factory=dict)  # instrument -> (low, high)
    max_onset_notes: dict[int, int] = field(default_factory=dict)  # instrument -> notes per onset
    given: dict[tuple[int, int], list[int]] = field(default_factory=dict)  # (instrument, bar) -> kept tokens
    density: dict[int, int] = field(default_factory=dict)  # instrument -> DENSITY bucket in every bar
    onset_steps: dict[int, int] = field(default_factory=dict)  # instrument -> onsets on multiples of it
    register: dict[int, list[int]] = field(default_factory=dict)  # instrument -> per bar target mean pitch
    # per bar: the order its tracks are written in (a permutation of ``instruments``); None, or a
    # bar past the list, is ``instruments``' order. Only for tokenizers with ``reorder_tracks``.
    track_orders: list[list[int]] | None = None

    @property
    def n_bars(self) -> int:
        return len(self.bar_conditions)

    def order(self, bar: int) -> list[int]:
        """The tracks of ``bar`` in the order they are written."""
        if self.track_orders is None or not 0 <= bar < len(self.track_orders):
            return self.instruments
        return self.track_orders[bar]


class OursGrammar:
    """The allowed next tokens after a prefix that this grammar wrote (or was fed) itself."""

    def __init__(self, tok: OursTokenizer, plan: Plan) -> None:
        if not plan.instruments or plan.instruments != sorted(set(plan.instruments)):
            raise ValueError(f"Plan.instruments must be distinct and ascending, got {plan.instruments}")
        for b, order in enumerate(plan.track_orders or ()):
            if sorted(order) != plan.instruments:
                raise ValueError(f"Plan.track_orders[{b}] must order the plan's instruments "
                                 f"{plan.instruments}, got {order}")
        if plan.track_orders and not tok.cfg.reorder_tracks:
            raise ValueError("Plan.track_orders needs a tokenizer trained with reordered tracks "
                             "(TokenizerConfig.reorder_tracks); this one writes them in one order")
        self.tok, self.plan = tok, plan
        v = tok.vocab
        self.V = len(v)
        self.pos0 = v.kinds["POS"][0]
        self.dur0 = v.kinds["DUR"][0]
        self.npitch = v.span("NPITCH")
        self.density0 = v.kinds["DENSITY"][0] if "DENSITY" in v.kinds else -1
        self.n_density = v.kinds["DENSITY"][1] if "DENSITY" in v.kinds else 0
        self.track_id = {i: v.id("TRACK", i) for i in plan.instruments}
        self.queue = [v.id("BOS")] + [v.id("INST", i) for i in plan.instruments]
        self.bar = -1
        self.k = -1  # index into plan.order(bar) of the current track; -1 = none yet
        # forced | density (after TRACK) | free (after TRACK/DENSITY/DUR) | pitch (after POS) | dur | end
        self.expect = "forced"
        self.last_pos = -1
        self.last_pitch = -1
        self.onset_notes = 0
        self.track_notes = 0  # notes written on the current track in this bar
        self.note_bounds = (0, 1 << 30)  # (fewest, most) the track's DENSITY token allows
        self.tokens: list[int] = []  # every token taken, in order
        self.notes: list[tuple[int, int, int, int, int]] = []  # (bar, pos, pitch, dur steps, instrument)

    # the mask

    def allowed(self) -> torch.Tensor:
        """(V,) bool: the tokens that may come next."""
        mask = torch.zeros(self.V, dtype=torch.bool)
        if self.queue:
            mask[self.queue[0]] = True
            return mask
        if self.expect == "forced":
            raise RuntimeError("the grammar has nothing queued where the request dictates a token")
        if self.expect == "end":
            return mask
        inst = self.plan.order(self.bar)[self.k]
        if self.expect == "dur":
            mask[self.dur0:self.dur0 + MAX_DURATION_STEPS] = True
            return mask
        if self.expect == "density":
            mask[self.density0:self.density0 + self.n_density] = True
            return mask
        low, high = self._window(inst)
        room = self.expect == "pitch" or self.track_notes < self.note_bounds[1]
        if room and self.expect in ("pitch", "free"):
            if self.last_pos >= 0 and self.onset_notes < self.plan.max_onset_notes.get(inst, 1 << 30):
                lo = max(low, self.last_pitch + 1)
                if lo <= high:
                    mask[self.tok.pitch_id(inst, lo):self.tok.pitch_id(inst, high) + 1] = True
        if self.expect == "free":
            steps, grid = self.plan.bar_steps[self.bar], self.plan.onset_steps.get(inst, 1)
            first = (self.last_pos + grid) // grid * grid  # the next onset on the track's grid
            # leave as many onsets after it as the notes still owed need
            owed = self.note_bounds[0] - self.track_notes
            per_onset = min(self.plan.max_onset_notes.get(inst, 1 << 30), high - low + 1)
            stop = steps - (max(owed, 1) + per_onset - 1) // per_onset * grid + grid
            stop = stop if first < stop else min(first + 1, steps)  # no room: the first one left
            if room and first < steps:
                mask[self.pos0 + first:self.pos0 + stop:grid] = True
            # the fewest notes the DENSITY token asked for, unless the bar has no room for more
            if self.track_notes >= self.note_bounds[0] or not mask.any():
                mask[self._next_section()] = True
        return mask

    def _window(self, inst: int) -> tuple[int, int]:
        low, high = self.tok.cfg.ranges[inst]
        wlow, whigh = self.plan.windows.get(inst, (low, high))
        return max(low, wlow), min(high, whigh)

    def _next_section(self) -> int:
        if self.k + 1 < len(self.plan.instruments):
            return self.track_id[self.plan.order(self.bar)[self.k + 1]]
        if self.bar + 1 < self.plan.n_bars:
            return self.plan.bar_conditions[self.bar + 1][0]
        return self.tok.vocab.id("EOS")

    # walking

    def advance(self, token: int) -> None:
        """Take the next token; a token the mask did not allow is a ValueError. Forced tokens come
        from ``queue`` (the header, a bar's conditions, the first track, a given track's notes)."""
        if not bool(self.allowed()[token]):
            raise ValueError(f"token {self.tok.vocab.names[token]} is not allowed here")
        kind = self.tok.kind_names[self.tok.kind_of[token]]
        self.tokens.append(token)
        if self.queue:
            self.queue.pop(0)
        if kind in ("BOS", "INST"):
            if not self.queue:  # header done: the first bar is forced
                self.queue = [self.plan.bar_conditions[0][0]]
        elif kind == "BAR":
            self.bar += 1
            self.k = -1
            first = self.track_id[self.plan.order(self.bar)[0]]
            self.queue = list(self.plan.bar_conditions[self.bar][1:]) + [first]
            self.expect = "forced"
        elif kind == "TRACK":
            self.k += 1
            self.last_pos, self.last_pitch, self.onset_notes = -1, -1, 0
            self.track_notes, self.note_bounds = 0, (0, 1 << 30)
            inst = self.plan.order(self.bar)[self.k]
            self.expect = "density" if self.n_density else "free"
            given = self.plan.given.get((inst, self.bar))
            if given is not None:
                self.queue = list(given) + [self._next_section()]
            elif self.n_density and inst in self.plan.density:
                self.queue = [self.density0 + self.plan.density[inst]]
        elif kind == "DENSITY":
            self.note_bounds = density_bounds(token - self.density0)
            self.expect = "free"
        elif kind == "POS":
            self.last_pos, self.last_pitch, self.onset_notes = token - self.pos0, -1, 0
            self.expect = "pitch"
        elif kind == "NPITCH":
            self.last_pitch = self.tok.pitch_of(token)[1]
            self.onset_notes += 1
            self.expect = "dur"
        elif kind == "DUR":
            inst = self.plan.order(self.bar)[self.k]
            self.notes.append((self.bar, self.last_pos, self.last_pitch, token - self.dur0 + 1, inst))
            self.track_notes += 1
            self.expect = "free"
        elif kind == "EOS":
            self.expect = "end"

    @property
    def done(self) -> bool:
        return self.expect == "end"

    @property
    def forced(self) -> int | None:
        """The one allowed token when the request dictates it, else None."""
        return self.queue[0] if self.queue else None


def check_score(score: TokenScore, plan: Plan, ranges: tuple[tuple[int, int], ...]) -> list[str]:
    """Problems that make ``score`` invalid for ``plan`` (empty when it is valid)."""
    problems = []
    notes, track = score.notes, score.track.astype(np.int64)
    if len(notes) and not set(track.tolist()) <= set(plan.instruments):
        problems.append(f"tracks {sorted(set(track.tolist()) - set(plan.instruments))} were not requested")
    for i in set(track.tolist()):
        low, high = ranges[i]
        wlow, whigh = plan.windows.get(i, (low, high))
        p = notes["pitch"][track == i]
        if len(p) and (p.min() < max(low, wlow) or p.max() > min(high, whigh)):
            problems.append(f"{score.instruments[i]} leaves its range {low}..{high}: {p.min()}..{p.max()}")
    if len(notes) and ((notes["duration"] <= 0).any() or (notes["time"] % GRID_TICKS).any()):
        problems.append("a note is off the grid or has no length")
    end = sum(plan.bar_steps) * GRID_TICKS
    if len(notes) and notes["time"].max() >= end:
        problems.append(f"a note starts after the {plan.n_bars} requested bars")
    if len(score.bar_starts) != plan.n_bars:
        problems.append(f"{len(score.bar_starts)} bars written, {plan.n_bars} requested")
    return problems

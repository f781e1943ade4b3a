"""Composing with an exported composer (``.pt`` TorchScript or ``.pt2``): bars as they are written.

    composer = Composer.load("models/pretrained/composer-satb.pt")
    for bar in composer.compose(ComposeRequest(bars=8, chords="C G Am F", key="C", seed=1)):
        ...  # bar.notes (NOTE_DTYPE, absolute ticks), bar.track (index into bar.instruments)
    score = composer.compose_score(ComposeRequest(bars=8))

Modes: from scratch, over a chord progression, and with ``given`` notes kept note for note
(accompaniment of a given track; continuation with ``given_bars=(0, k)``: the given notes hold the
first k bars and the decoder writes on; infilling with ``infill={"alto": (2, 4)}``: those cells are
written, every other given cell kept). Given cells are fed as forced tokens, so the decoder writes
around them; it is causal, so a filled cell sees the bars before it and the tracks before it in its
bar. A model trained with reordered tracks (``TokenizerConfig.reorder_tracks``, composer-satb v3)
writes the given tracks of each bar first, so a filled cell sees every given track of its bar; an
older model writes tracks in vocabulary order and a filled alto sees only the soprano of its bar.

The same request and seed give the same notes: sampling draws from one seeded ``torch.Generator``
and the caches start empty for every request.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bridge.chords import CHORD_INTERVALS, CHORD_QUALITIES, parse_progression
from bridge.score import NOTE_DTYPE, Score, Track, make_notes
from models.composer.grammar import OursGrammar, Plan
from models.composer.representations import OursTokenizer
from models.composer.tokens import (
    GRID_TICKS,
    N_CHORD_QUALITIES,
    RESOLUTION,
    VELOCITY,
    TokenizerConfig,
    chord_qualities,
    density_bucket,
    meter_ticks,
)

MAX_BARS = 256
MAX_DENSITY = 64  # notes per bar on one track a density control may ask for
# Harmony adherence: nats added to the logit of every pitch whose pitch class belongs to the chord
# sounding at the note's onset, where the request's bars carry chords (0 = the model alone). The
# default is calibrated on the validation chorales so that notes written over their chords are chord
# tones as often as Bach's are (benchmarks/RESULTS.md, "Compose: harmony adherence").
HARMONY = 2.0
# the register control tilts a track's pitches toward a target mean: the tilt's slope is the distance
# of the track's recent mean from the target over REGISTER_SCALE squared (nats per semitone, capped);
# 3.5 chosen on 24 requests against 3 and 4 (benchmarks/RESULTS.md, "Compose: the register control")
REGISTER_SCALE = 3.5
REGISTER_MAX_SLOPE = 0.5
MAX_HARMONY = 10.0
# A track's rhythm control: the finest onset grid, in beats (None: any 32nd-note step).
# "keep" (preserve rhythm, infilling only) keeps a filled voice's given onsets and durations.
RHYTHMS = {"plain": 1.0, "moderate": 0.5, "busy": None, "keep": None}
GRID_RHYTHMS = ("plain", "moderate", "busy")  # the levels any track may take
_NOTE_NAMES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def _pc(letter: str, accidental: str) -> int:
    return (_NOTE_NAMES[letter] + {"#": 1, "b": -1, "": 0}[accidental]) % 12


def parse_key(text: str) -> tuple[int, int]:
    """"C", "Am", "F#m", "Bb" -> (fifths, minor)."""
    m = re.fullmatch(r"([A-G])([#b]?)(m|min|minor|maj|major)?", text.strip())
    if not m:
        raise ValueError(f"key {text!r} is not a key name; write a tonic and an optional m, such as "
                         "C, Am, F#m or Bb")
    minor = int(m.group(3) in ("m", "min", "minor"))
    major_tonic = (_pc(m.group(1), m.group(2)) + 3 * minor) % 12
    return (major_tonic * 7 + 6) % 12 - 6, minor


def parse_chords(text: str, meter: tuple[int, int], qualities: list[str], key: str | None = None,
                 bars: int | None = None) -> np.ndarray:
    """Chord symbols, one bar each ("C G Am F"; "|" separates bars holding several: "C G | Am"), or
    roman numerals with a key ("I V vi IV"), as CHORD_DTYPE records at 24 ticks per quarter, quality
    indexed into ``qualities`` (the model's); ``bars`` repeats the progression to fill them."""
    chords = parse_progression(text, key=key, bars=bars, meter=meter, resolution=RESOLUTION)
    for c in chords:
        name = CHORD_QUALITIES[int(c["quality"])]
        if name not in qualities:
            raise ValueError(f"this model knows the chord qualities {', '.join(qualities)}; "
                             f"{name!r} is not one of them")
        c["quality"] = qualities.index(name)
    return chords


@dataclass(frozen=True)
class ComposeRequest:
    bars: int = 8
    meter: tuple[int, int] = (4, 4)
    key: str | None = None  # "C", "Am"...; None = no key condition
    qpm: float = 100.0
    chords: str | None = None  # "C G Am F": one bar each, repeated to fill the bars
    instruments: tuple[str, ...] | None = None  # None = every instrument the model knows
    temperature: float = 1.0
    top_p: float = 0.95
    seed: int = 0
    given: dict[str, np.ndarray] = field(default_factory=dict)  # instrument -> NOTE_DTYPE to keep
    given_bars: tuple[int, int] | None = None  # [start, stop) the given notes hold (continuation)
    infill: dict[str, tuple[int, int]] = field(default_factory=dict)  # instrument -> [start, stop) to write
    ranges: dict[str, tuple[int, int]] = field(default_factory=dict)  # narrower pitch windows
    # per-track controls (instrument -> value): notes per bar (the model's DENSITY bucket holding it,
    # in every bar; models with DENSITY tokens only), most notes starting together, and rhythm (see
    # RHYTHMS: onsets on the beat, on half beats, or anywhere)
    density: dict[str, int] = field(default_factory=dict)
    polyphony: dict[str, int] = field(default_factory=dict)
    rhythm: dict[str, str] = field(default_factory=dict)
    harmony: float | None = None  # chord-tone bias in nats (None: HARMONY); only bars with chords
    # instrument -> target mean MIDI pitch: one for every bar, or one per bar (0: none in that bar)
    register: dict[str, int | list[int]] = field(default_factory=dict)

    def validate(self, instruments: list[str]) -> None:
        """Raise ValueError naming the field, the value and what is allowed."""
        if not 1 <= self.bars <= MAX_BARS:
            raise ValueError(f"bars must be 1..{MAX_BARS}, got {self.bars}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be above 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 10 <= self.qpm <= 400:
            raise ValueError(f"qpm must be 10..400 quarter notes per minute, got {self.qpm}")
        controls = [*self.ranges, *self.density, *self.polyphony, *self.rhythm, *self.register]
        for name in list(self.instruments or ()) + list(self.given) + controls:
            if name not in instruments:
                raise ValueError(f"instrument {name!r} is not one this model writes; choose from "
                                 f"{', '.join(instruments)}")
        for name, (start, stop) in [*self.infill.items(), *([("given_bars", self.given_bars)]
                                                             if self.given_bars else [])]:
            if not 0 <= start < stop <= self.bars:
                raise ValueError(f"{'given_bars' if name == 'given_bars' else 'infill of ' + name} "
                                 f"covers bars {start}..{stop - 1}, outside the request's 0..{self.bars - 1}")
        for name, n in self.density.items():
            if not 0 <= n <= MAX_DENSITY:
                raise ValueError(f"density of {name} must be 0..{MAX_DENSITY} notes per bar, got {n}")
        for name, n in self.polyphony.items():
            if not 1 <= n <= 16:
                raise ValueError(f"polyphony of {name} must be 1..16 notes starting together, got {n}")
        for name, level in self.rhythm.items():
            if level not in RHYTHMS:
                raise ValueError(f"rhythm of {name} must be one of {', '.join(RHYTHMS)}, got {level!r}")
        if self.harmony is not None and not 0 <= self.harmony <= MAX_HARMONY:
            raise ValueError(f"harmony must be 0..{MAX_HARMONY:g} (0: no pull toward chord tones), "
                             f"got {self.harmony}")
        for name, target in self.register.items():
            per_bar = target if isinstance(target, list) else [target]
            if isinstance(target, list) and len(target) != self.bars:
                raise ValueError(f"register of {name} lists {len(target)} pitches for {self.bars} bars; give "
                                 "one pitch, or one per bar")
            if not all(0 <= t <= 127 for t in per_bar):
                raise ValueError(f"register of {name} must be MIDI pitches 1..127 (0: no target in that "
                                 f"bar), got {target!r}")
        if self.instruments is not None and len(self.instruments) == 0:
            raise ValueError(f"instruments is empty; name at least one of {', '.join(instruments)}")


@dataclass
class Bar:
    """One written bar: ``notes`` (NOTE_DTYPE, absolute ticks at 24 per quarter, sorted by time,
    pitch) and each note's ``track``, an index into ``instruments``."""

    index: int
    start_tick: int
    notes: np.ndarray
    track: np.ndarray
    instruments: list[str]


def sample(logits: torch.Tensor, allowed: torch.Tensor, temperature: float, top_p: float,
           generator: torch.Generator, bias: torch.Tensor | None = None) -> int:
    """One token from logits (V,) restricted to ``allowed`` (V,) bool: an additive ``bias`` (V,),
    grammar mask, temperature, nucleus (top-p), in that order."""
    logits = logits.float() if bias is None else logits.float() + bias
    logits = logits.masked_fill(~allowed, float("-inf")) / temperature
    probs = torch.softmax(logits, -1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < top_p  # the smallest set reaching top_p
        probs = torch.zeros_like(probs).scatter(0, order, sorted_p * keep)
    return int(torch.multinomial(probs / probs.sum(), 1, generator=generator))


class Composer:
    """An exported composer and its metadata; ``compose`` yields bars."""

    def __init__(self, module, metadata: dict) -> None:
        self.module = module
        self.metadata = metadata
        self.tok = OursTokenizer(TokenizerConfig.from_dict(metadata["tokenizer"]))
        if len(self.tok) != metadata["model"]["vocab_size"]:
            raise ValueError(f"the model's vocabulary ({metadata['model']['vocab_size']}) differs from "
                             f"its tokenizer's ({len(self.tok)}); re-export it with this version")
        self.qualities = list(metadata.get("chord_qualities", chord_qualities()))
        pitches = self.tok.vocab.span("NPITCH")
        self.pitch_class = torch.full((len(self.tok),), -1, dtype=torch.long)  # -1: not a pitch token
        self.pitch_class[pitches.start:pitches.stop] = torch.tensor([self.tok.pitch_of(t)[1] % 12
                                                                     for t in pitches])
        m = metadata["model"]
        self.block_size = int(m["block_size"])
        self.cache_shape = [m["n_layers"], 1, m["n_heads"], self.block_size, m["d_model"] // m["n_heads"]]

    @staticmethod
    def load(path: str | Path, device: str = "cpu", infiller=None) -> Composer:
        """The composer in ``path``; ``infiller`` (a ``VoiceInfiller`` or its file) writes whole voices
        of bars around given ones (see ``compose``); None finds a companion paired with this composer
        beside its file (``voice_infill.COMPANION_FILE``); False attaches none."""
        from models.composer.voice_infill import attach_infiller
        from models.format import load_for_inference, validate

        module, meta = load_for_inference(path, device)
        problem = validate(meta, Path(path))
        if problem or meta["task"] != "compose":
            raise ValueError(problem or f"{path} is a {meta['task']} model, not a compose one")
        composer = Composer(module, meta)
        composer.infiller = attach_infiller(meta, infiller, Path(path).parent, device)
        return composer

    @property
    def instruments(self) -> list[str]:
        return list(self.tok.cfg.instruments)

    def plan(self, request: ComposeRequest) -> Plan:
        request.validate(self.instruments)
        meter = tuple(request.meter)
        self.tok.request_conditions(meter, None, None, 1)  # an unsupported meter says so first
        chords = parse_chords(request.chords, meter, self.qualities, request.key,
                              request.bars) if request.chords else None
        key = parse_key(request.key) if request.key else None
        names = request.instruments or self.instruments
        insts = sorted({self.instruments.index(n) for n in names} |
                       {self.instruments.index(n) for n in request.given})
        windows = {}
        for name, (low, high) in request.ranges.items():
            i = self.instruments.index(name)
            rlow, rhigh = self.tok.cfg.ranges[i]
            if max(low, rlow) > min(high, rhigh):
                raise ValueError(f"range {low}..{high} for {name} misses its playable range {rlow}..{rhigh}")
            windows[i] = (low, high)
        steps = meter_ticks(meter) // GRID_TICKS
        at_once = {i: 1 for i in insts if self._monophonic(i)}
        for name, n in request.polyphony.items():
            i = self.instruments.index(name)
            at_once[i] = min(n, at_once.get(i, n))
        plan = Plan(insts, self.tok.request_conditions(meter, key, chords, request.bars),
                    [steps] * request.bars, windows, at_once)
        plan.given = self._given(request, meter)
        if self.tok.cfg.reorder_tracks and plan.given:
            # a model trained with reordered tracks writes each bar's given tracks first, so a
            # filled cell sees every given voice of its bar (in vocabulary order it saw only those above)
            plan.track_orders = [[i for i in insts if (i, b) in plan.given] +
                                 [i for i in insts if (i, b) not in plan.given] for b in range(request.bars)]
        if request.density and not self.tok.cfg.density:
            raise ValueError("this composer has no density control (it was trained without DENSITY "
                             "tokens); leave density out or use a model that has it")
        plan.density = {self.instruments.index(n): density_bucket(k) for n, k in request.density.items()}
        beat_steps = steps // meter[0]  # a beat is the meter's denominator
        plan.onset_steps = {self.instruments.index(n): max(1, int(beat_steps * RHYTHMS[level]))
                            for n, level in request.rhythm.items() if RHYTHMS[level]}
        plan.register = {self.instruments.index(n): list(t) if isinstance(t, list)
                         else [int(t)] * request.bars
                         for n, t in request.register.items()}
        if "keep" in request.rhythm.values():
            from models.composer.voice_infill import can_fill

            if not can_fill(self.companion(), request, self.instruments):
                raise ValueError("rhythm keep (preserve rhythm) writes new pitches on a filled voice's own "
                                 "rhythm: it needs the voice infiller, whole voices filled (infill) around "
                                 "every other voice given, keep on every filled voice, and no chords, "
                                 "density or given_bars")
        return plan

    def _monophonic(self, inst: int) -> bool:
        return self.instruments[inst] in self.metadata.get("monophonic", ())

    def _given(self, request: ComposeRequest, meter: tuple[int, int]) -> dict[tuple[int, int], list[int]]:
        """(instrument, bar) -> the tokens of that track's notes in that bar, kept as given."""
        given: dict[tuple[int, int], list[int]] = {}
        bar_ticks = meter_ticks(meter)
        for name, notes in request.given.items():
            i = self.instruments.index(name)
            low, high = self.tok.cfg.ranges[i]
            if len(notes) and (notes["pitch"].min() < low or notes["pitch"].max() > high):
                raise ValueError(f"the given {name} part leaves its range {low}..{high}; transpose it")
            notes = notes[np.lexsort((notes["duration"], notes["pitch"], notes["time"]))]
            keep = range(*(request.given_bars or (0, request.bars)))
            hidden = range(*request.infill.get(name, (0, 0)))
            for b in (b for b in keep if b not in hidden):
                sel = notes[(notes["time"] >= b * bar_ticks) & (notes["time"] < (b + 1) * bar_ticks)]
                ids, last = [self.tok.density_id(len(sel))] if self.tok.cfg.density else [], -1
                for n in sel:
                    pos = (int(n["time"]) - b * bar_ticks) // GRID_TICKS
                    if pos != last:
                        ids.append(self.tok.vocab.id("POS", pos))
                        last = pos
                    dur = min(max(int(n["duration"]) // GRID_TICKS, 1), 128)
                    ids += [self.tok.pitch_id(i, int(n["pitch"])), self.tok.vocab.id("DUR", dur - 1)]
                given[(i, b)] = ids
        return given

    def companion(self):
        """The voice infiller attached by ``load``; for a composer built from a module (the engine),
        the shipped companion paired with it, found once; None without one."""
        if not hasattr(self, "infiller"):
            from models.composer.voice_infill import companion_for

            self.infiller = companion_for(self.metadata)
        return self.infiller

    def compose(self, request: ComposeRequest) -> Iterator[Bar]:
        """Yield each bar once all its tracks are written (a generator: the engine streams them;
        closing it stops the decoding).

        A request that fills whole voices of bars around given ones (every voice of the infiller
        given, the filled ones in ``infill``) goes to the bidirectional infiller when one is attached
        (``load``; a composer built from a module finds the shipped companion paired with it): it
        writes those cells seeing the given voices before and after them, and the decoder streams
        them as given notes. The infiller honours the voice ranges, narrower ``ranges``, polyphony
        (its voices are monophonic), temperature, top-p and seed; a request that also asks for
        chords, density, rhythm, ``given_bars`` or instruments it has no voice for is written by the
        decoder alone (``voice_infill.fill_request``). The rhythm control ``keep`` on the filled
        voices (preserve rhythm) keeps their given notes' onsets and durations and writes pitches."""
        from models.composer.voice_infill import fill_request

        plan = self.plan(request)
        infiller = self.companion()
        filled = fill_request(infiller, request, self.instruments) if infiller else None
        if filled is not None:
            request = filled
            plan = self.plan(request)
        return self._compose(request, plan, OursGrammar(self.tok, plan))

    def chord_tones(self, plan: Plan) -> list[list[tuple[int, torch.Tensor]]]:
        """Per bar, the chords its condition tokens carry: (grid step, (12,) bool pitch classes)."""
        v, kinds = self.tok.vocab, self.tok.kind_names
        cpos0, chord0 = v.kinds["CPOS"][0], v.kinds["CHORD"][0]
        bars = []
        for conditions in plan.bar_conditions:
            chords = []
            for a, b in zip(conditions, conditions[1:]):
                if kinds[self.tok.kind_of[a]] == "CPOS" and kinds[self.tok.kind_of[b]] == "CHORD":
                    root, quality = divmod(b - chord0, N_CHORD_QUALITIES)
                    tones = torch.zeros(12, dtype=torch.bool)
                    tones[[(root + i) % 12 for i in CHORD_INTERVALS[self.qualities[quality]]]] = True
                    chords.append((a - cpos0, tones))
            bars.append(chords)
        return bars

    def _harmony_bias(self, chords: list[list[tuple[int, torch.Tensor]]], grammar: OursGrammar,
                      strength: float, logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor | None:
        """(V,) logit bias where pitches may come next: ``strength`` on the pitch tokens of the chord
        sounding at the grammar's onset (the last chord at or before it, from this bar or an earlier
        one), a lift for chord tones the model holds down, and ``-strength`` on a pitch another track
        starts at the same onset; None where no chord sounds."""
        if strength == 0 or grammar.expect not in ("pitch", "free") or grammar.last_pos < 0:
            return None
        tones = None
        for b in range(grammar.bar, -1, -1):
            here = [t for step, t in chords[b] if b < grammar.bar or step <= grammar.last_pos]
            if here:
                tones = here[-1]
                break
        if tones is None:
            return None
        inst = grammar.plan.order(grammar.bar)[grammar.k]
        low, high = self.tok.cfg.ranges[inst]
        first = self.tok.pitch_id(inst, low)  # the instrument's pitch tokens: one run, low to high
        span = slice(first, first + high - low + 1)
        may = allowed[span]
        if not bool(may.any()):
            return None
        pcs = self.pitch_class[span]
        in_chord = tones[pcs]
        local = in_chord.float() * strength
        # a chord tone the model's key holds down (the third of a secondary dominant) is lifted toward
        # the chord's likeliest tone, by at most ``strength`` more, in the one octave the model likes
        # best for it (every octave lifted widened the parts' range): pulled alike, Bach's chromatic
        # chord tones stayed rare and the pitch-class entropy fell below his
        probs = torch.softmax(logits[span].float().masked_fill(~may, float("-inf")), -1) * in_chord
        mass = torch.zeros(12).index_add_(0, pcs, probs)
        top = float(mass.max())
        for pc in torch.nonzero(tones & (mass > 0)).flatten().tolist():
            best = int(torch.where(pcs == pc, probs, torch.zeros_like(probs)).argmax())
            local[best] += min(strength, float(torch.log(top / mass[pc])))
        # a voice leader's rule beside it: no unison with a pitch another track starts at this onset
        # (the pull makes voices meet on the chord's few pitches far more often than Bach's do)
        for bar, pos, pitch, _, other in reversed(grammar.notes):  # this bar's notes are the last ones
            if bar < grammar.bar:
                break
            if pos == grammar.last_pos and other != inst and low <= pitch <= high:
                local[pitch - low] -= strength
        bias = torch.zeros(len(allowed))
        bias[span] = local
        return bias

    def _register_bias(self, grammar: OursGrammar, logits: torch.Tensor, allowed: torch.Tensor,
                       bias: torch.Tensor | None) -> torch.Tensor | None:
        """``bias`` plus, where a pitch may come next on a track with a register target in this bar, a
        tilt of its pitch tokens toward the target: log-odds linear in the pitch, with a slope of
        (target - mean) / REGISTER_SCALE**2 nats per semitone (at most REGISTER_MAX_SLOPE), where mean
        is that of the track's notes in this bar and the one before (before any, the pitch the model
        expects here). A tilt moves the notes without narrowing their spread, as a Gaussian pull did
        (8-bar voices spanned 9.3 semitones against Bach's 12.6); renormalised so the pitches together
        keep their probability: the control moves where the notes lie, not how many there are."""
        if grammar.expect not in ("pitch", "free") or not grammar.plan.register:
            return bias
        inst = grammar.plan.order(grammar.bar)[grammar.k]
        targets = grammar.plan.register.get(inst)
        if not targets or grammar.bar >= len(targets) or not targets[grammar.bar]:
            return bias
        low, high = self.tok.cfg.ranges[inst]
        first = self.tok.pitch_id(inst, low)
        span = slice(first, first + high - low + 1)
        may = allowed[span]
        if not bool(may.any()):
            return bias
        out = torch.zeros(len(allowed)) if bias is None else bias.clone()
        here = (logits[span].float() + out[span]).masked_fill(~may, float("-inf"))
        pitches = torch.arange(low, high + 1, dtype=torch.float32)
        recent = []
        for bar, _, pitch, _, other in reversed(grammar.notes):  # this bar's notes and the last bar's
            if bar < grammar.bar - 1:
                break
            if other == inst:
                recent.append(pitch)
        mean = sum(recent) / len(recent) if recent else float((torch.softmax(here, 0) * pitches).sum())
        target = float(targets[grammar.bar])
        slope = max(-REGISTER_MAX_SLOPE, min(REGISTER_MAX_SLOPE, (target - mean) / REGISTER_SCALE ** 2))
        pull = slope * (pitches - target)
        out[span] += pull - torch.logsumexp(here + pull, 0) + torch.logsumexp(here, 0)
        return out

    @torch.no_grad()
    def _compose(self, request: ComposeRequest, plan: Plan, grammar: OursGrammar) -> Iterator[Bar]:
        gen = torch.Generator().manual_seed(int(request.seed))
        chords = self.chord_tones(plan)
        strength = HARMONY if request.harmony is None else float(request.harmony)
        k_cache, v_cache = torch.zeros(self.cache_shape), torch.zeros(self.cache_shape)
        history: list[int] = []
        pending: list[int] = []
        pos, done_bars = 0, 0
        while True:
            while grammar.forced is not None:
                pending.append(grammar.forced)
                grammar.advance(pending[-1])
            while done_bars < grammar.bar or (grammar.done and done_bars < plan.n_bars):
                yield self._bar(grammar, done_bars, plan)
                done_bars += 1
            if grammar.done:
                return
            half = self.block_size // 2
            for start in range(0, len(pending), half):  # a long forced run goes in halves
                chunk = pending[start:start + half]
                if pos + len(chunk) > self.block_size:  # slide: keep the last half of the context
                    context = history[-half:]
                    k_cache.zero_()
                    v_cache.zero_()
                    _, k_cache, v_cache = self._step(context, 0, k_cache, v_cache)
                    pos = len(context)
                logits, k_cache, v_cache = self._step(chunk, pos, k_cache, v_cache)
                history += chunk
                pos += len(chunk)
            allowed = grammar.allowed()
            bias = self._harmony_bias(chords, grammar, strength, logits[0], allowed)
            bias = self._register_bias(grammar, logits[0], allowed, bias)
            token = sample(logits[0], allowed, request.temperature, request.top_p, gen, bias)
            grammar.advance(token)
            pending = [token]

    def _step(self, tokens: list[int], pos: int, k_cache: torch.Tensor, v_cache: torch.Tensor):
        return self.module(torch.tensor([tokens]), torch.tensor(pos), k_cache, v_cache)

    def _bar(self, grammar: OursGrammar, b: int, plan: Plan) -> Bar:
        start = sum(plan.bar_steps[:b]) * GRID_TICKS
        rows = [n for n in grammar.notes if n[0] == b]
        notes = make_notes([start + r[1] * GRID_TICKS for r in rows], [r[2] for r in rows],
                           [r[3] * GRID_TICKS for r in rows], VELOCITY) if rows else np.zeros(0, NOTE_DTYPE)
        track = np.array([r[4] for r in rows], np.int16)
        order = np.lexsort((track, notes["pitch"], notes["time"]))
        return Bar(b, start, notes[order], track[order], self.instruments)

    def compose_score(self, request: ComposeRequest) -> Score:
        """Every bar of ``compose`` as a Score (see ``score_from_bars``)."""
        return self.score_from_bars(list(self.compose(request)), request)

    def score_from_bars(self, bars: list[Bar], request: ComposeRequest) -> Score:
        """Bars as a Score: one track per requested instrument, the request's tempo, meter, key."""
        from bridge.score import KEY_DTYPE, METER_DTYPE, TEMPO_DTYPE

        notes = np.concatenate([b.notes for b in bars]) if bars else np.zeros(0, NOTE_DTYPE)
        track = np.concatenate([b.track for b in bars]) if bars else np.zeros(0, np.int16)
        programs = self.tok.cfg.programs
        names = set(request.instruments or self.instruments) | set(request.given)
        tracks = [Track(name, int(programs[i]), notes=notes[track == i], role=name)
                  for i, name in enumerate(self.instruments) if name in names]
        key = parse_key(request.key) if request.key else None
        return Score(RESOLUTION, tracks, tempos=np.array([(0, request.qpm)], TEMPO_DTYPE),
                     meters=np.array([(0, *request.meter)], METER_DTYPE),
                     keys=np.array([(0, *key)] if key else [], KEY_DTYPE), title="composed")

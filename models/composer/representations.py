"""The three tokenisations compared in docs/representations.md: MMT note-level, REMI+/MMM
track-concatenated, and ours (see ``models.composer.tokens`` for what they share and how the
per-note NLL compares across them).
"""
from __future__ import annotations

import numpy as np

from models.composer.tokens import (
    DENSITY_BUCKETS,
    GRID_TICKS,
    KEYS,
    MAX_BAR_STEPS,
    MAX_BEATS,
    MAX_DURATION_STEPS,
    METERS,
    N_CHORD_QUALITIES,
    RESOLUTION,
    STEPS_PER_BEAT,
    Tokenizer,
    TokenizerConfig,
    TokenScore,
    _BarTokenizer,
    _Events,
    chord_index,
    density_bucket,
    meter_ticks,
)


class MMTTokenizer(Tokenizer):
    rep = "mmt"

    def _build(self) -> None:
        v = self.vocab
        v.add("BEAT", range(MAX_BEATS))
        v.add("POS", range(STEPS_PER_BEAT))
        v.add("PITCH", range(128))
        v.add("DUR", range(1, MAX_DURATION_STEPS + 1))
        v.add("NOTEINST", self.cfg.instruments)

    def encode(self, piece) -> np.ndarray:
        ev, v = self.events(piece), self.vocab
        ids = self._header(ev)
        for t, p, d, i in zip(ev.time.tolist(), ev.pitch.tolist(), ev.dur.tolist(), ev.inst.tolist()):
            if t // STEPS_PER_BEAT >= MAX_BEATS:
                break
            ids += [v.id("BEAT", t // STEPS_PER_BEAT), v.id("POS", t % STEPS_PER_BEAT),
                    v.id("PITCH", p), v.id("DUR", d - 1), v.id("NOTEINST", i)]
        return np.array(ids + [v.id("EOS")], np.int64)

    def decode(self, ids) -> TokenScore:
        v, rows, field = self.vocab, [], {}
        order = ("BEAT", "POS", "PITCH", "DUR", "NOTEINST")
        for tok in np.asarray(ids, np.int64).tolist():
            kind = self.kind_names[self.kind_of[tok]]
            if kind not in order:
                continue
            k = order.index(kind)
            if k != len(field):  # out of order: drop the partial note, restart at a BEAT
                field = {}
                if k != 0:
                    continue
            field[kind] = tok - v.kinds[kind][0]
            if len(field) == len(order):
                t = (field["BEAT"] * STEPS_PER_BEAT + field["POS"]) * GRID_TICKS
                rows.append((t, field["PITCH"], (field["DUR"] + 1) * GRID_TICKS, field["NOTEINST"]))
                field = {}
        end = max((r[0] for r in rows), default=0)
        return self._score(rows, list(range(0, end + 1, 4 * RESOLUTION)))


class REMITokenizer(_BarTokenizer):
    rep = "remi"

    def encode(self, piece) -> np.ndarray:
        ev, v = self.events(piece), self.vocab
        ids = self._header(ev)
        for i in sorted(set(ev.inst.tolist())):
            ids.append(v.id("TRACK", i))
            for b in range(len(ev.bar_starts)):
                ids += [v.id("BAR")] + self._meter(ev, b) + self._bar_notes(ev, b, i)
        return np.array(ids + [v.id("EOS")], np.int64)

    def decode(self, ids) -> TokenScore:
        return self._read(ids, reset_on_track=True)


class OursTokenizer(_BarTokenizer):
    rep = "ours"

    def _build(self) -> None:
        super()._build()
        v = self.vocab
        v.add("KEY", [f"{f}{'m' if m else 'M'}" for f, m in KEYS])
        v.add("CPOS", range(MAX_BAR_STEPS))
        v.add("CHORD", [f"{r}q{q}" for r in range(12) for q in range(N_CHORD_QUALITIES)])
        if self.cfg.density:  # added last: the ids before it are those of a model without it
            v.add("DENSITY", DENSITY_BUCKETS)

    def density_id(self, n_notes: int) -> int:
        """The DENSITY token of a track bar holding ``n_notes`` notes."""
        return self.vocab.id("DENSITY", density_bucket(n_notes))

    def _pitch_tokens(self) -> None:
        labels, self.pitch_base = [], []
        for name, (low, high) in zip(self.cfg.instruments, self.cfg.ranges):
            self.pitch_base.append(len(labels) - low)
            labels += [f"{name}{p}" for p in range(low, high + 1)]
        self.vocab.add("NPITCH", labels)
        start = self.vocab.kinds["NPITCH"][0]
        self.pitch_table = np.zeros((len(labels), 2), np.int64)  # token - start -> (instrument, pitch)
        for i, (low, high) in enumerate(self.cfg.ranges):
            for p in range(low, high + 1):
                self.pitch_table[self.pitch_base[i] + p] = (i, p)
        self._npitch_start = start

    def pitch_id(self, inst: int, pitch: int) -> int:
        low, high = self.cfg.ranges[inst]
        if not low <= pitch <= high:
            raise ValueError(f"pitch {pitch} is outside {self.cfg.instruments[inst]}'s range {low}..{high}")
        return self._npitch_start + self.pitch_base[inst] + pitch

    def pitch_of(self, tok: int) -> tuple[int, int]:
        i, p = self.pitch_table[tok - self._npitch_start]
        return int(i), int(p)

    def factors(self, harmony: bool = False) -> dict[str, np.ndarray]:
        """Per-token factor ids for the model's factorised embedding: a pitch token's embedding is
        its own plus its MIDI pitch's plus its instrument's (0 = none), so the instruments share
        what a pitch is while each keeps its own. ``harmony`` adds a pitch-class table shared by
        pitch tokens, chord roots and key tonics, and a chord-quality table: a CHORD token is then
        mostly its root plus its quality, so what C major asks of a pitch carries over to the other
        11 roots (each CHORD token alone is seen in a twelfth of the transposed crops)."""
        V = len(self.vocab)
        pitch, inst = np.zeros(V, np.int64), np.zeros(V, np.int64)
        span = self.vocab.span("NPITCH")
        pitch[span.start:span.stop] = self.pitch_table[:, 1] + 1
        inst[span.start:span.stop] = self.pitch_table[:, 0] + 1
        for kind in ("TRACK", "INST"):
            s = self.vocab.span(kind)
            inst[s.start:s.stop] = np.arange(len(s)) + 1
        out = {"pitch": pitch, "instrument": inst}
        if harmony:
            pc, quality = np.zeros(V, np.int64), np.zeros(V, np.int64)
            pc[span.start:span.stop] = self.pitch_table[:, 1] % 12 + 1
            chords = self.vocab.span("CHORD")
            pc[chords.start:chords.stop] = np.arange(len(chords)) // N_CHORD_QUALITIES + 1
            quality[chords.start:chords.stop] = np.arange(len(chords)) % N_CHORD_QUALITIES + 1
            keys = self.vocab.span("KEY")
            pc[keys.start:keys.stop] = [(f * 7 + 9 * m) % 12 + 1 for f, m in KEYS]  # the tonic
            out |= {"pitch_class": pc, "chord_quality": quality}
        return out

    def bar_conditions(self, ev: _Events, b: int) -> list[int]:
        v = self.vocab
        ids = [v.id("BAR")] + self._meter(ev, b)
        if ev.bar_keys[b] >= 0 and (b == 0 or ev.bar_keys[b] != ev.bar_keys[b - 1]
                                    or self.cfg.repeat_conditions):
            ids.append(v.id("KEY", int(ev.bar_keys[b])))
        for pos, chord in sorted(set(ev.chords[b])):
            ids += [v.id("CPOS", pos), v.id("CHORD", chord)]
        return ids

    def request_conditions(self, meter: tuple[int, int], key: tuple[int, int] | None, chords,
                           n_bars: int) -> list[list[int]]:
        """Each bar's condition tokens (``BAR [METER] [KEY] [CPOS CHORD]*``) for a request: one
        meter, an optional key (fifths, minor), chords as CHORD_DTYPE records (ticks)."""
        if meter not in METERS:
            raise ValueError(f"meter {meter[0]}/{meter[1]} is not supported; choose a meter of up to "
                             f"{MAX_BAR_STEPS * GRID_TICKS // RESOLUTION} quarters, such as 4/4 or 6/8")
        starts = np.arange(n_bars, dtype=np.int64) * meter_ticks(meter)
        keys = np.full(n_bars, KEYS.index(key) if key is not None else -1, np.int64)
        per_bar: list[list[tuple[int, int]]] = [[] for _ in range(n_bars)]
        for c in chords if chords is not None else ():
            b = int(c["time"]) // meter_ticks(meter)
            if 0 <= b < n_bars:
                per_bar[b].append(((int(c["time"]) - int(starts[b])) // GRID_TICKS,
                                   chord_index(int(c["root"]), int(c["quality"]))))
        empty = np.zeros(0, np.int64)
        ev = _Events(empty, empty, empty, empty, empty, empty, starts,
                     np.full(n_bars, METERS.index(meter), np.int64), keys, per_bar)
        return [self.bar_conditions(ev, b) for b in range(n_bars)]

    def encode(self, piece, last: tuple[int, ...] = (),
               fixed_bars: frozenset[int] = frozenset()) -> np.ndarray:
        """Token ids of a piece. ``last``: instruments (tokenizer indices) written after the others in
        every bar but ``fixed_bars`` (each group in vocabulary order), as a request writes the tracks
        it is given before those it fills; empty = vocabulary order everywhere."""
        ev, v = self.events(piece), self.vocab
        ids = self._header(ev)
        declared = sorted(set(ev.inst.tolist()))
        moved = [i for i in declared if i not in last] + [i for i in declared if i in last]
        for b in range(len(ev.bar_starts)):
            ids += self.bar_conditions(ev, b)
            for i in declared if b in fixed_bars else moved:
                ids.append(v.id("TRACK", i))
                if self.cfg.density:
                    ids.append(self.density_id(int(((ev.bar == b) & (ev.inst == i)).sum())))
                ids += self._bar_notes(ev, b, i)
        return np.array(ids + [v.id("EOS")], np.int64)

    def decode(self, ids) -> TokenScore:
        return self._read(ids, reset_on_track=False)


TOKENIZERS = {"mmt": MMTTokenizer, "remi": REMITokenizer, "ours": OursTokenizer}


def make_tokenizer(cfg: TokenizerConfig) -> Tokenizer:
    return TOKENIZERS[cfg.rep](cfg)

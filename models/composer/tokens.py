"""What the tokenisations of a multitrack piece share: the grid, the vocabulary, a piece's events,
the condition mask, bar-laid decoding. The three (MMT note-level, REMI+/MMM track-concatenated, and
ours: bar-major, instrument-tied pitch tokens, chord/meter/key conditions at bar starts) live in
``models.composer.representations``.

Each tokenizer turns a MultiPiece-like object (``notes``, ``track``, ``instruments``, ``meters``,
``keys``, ``chords``, ``resolution``; see ``models.data.multitrack``) into token ids and back, and is
lossless on its grid: onsets and durations on ``GRID_TICKS`` (a 32nd note at 24 ticks per quarter),
durations up to ``MAX_DURATION_STEPS`` grid steps, pitches inside each instrument's range.

Token kinds marked as conditions (the instrument header, meter, key and chords) are given by the
request, not predicted: per-note NLL sums the NLL of every other token and divides by the number of
notes (one ``DUR`` token per note in all three), so the three compare.

- ``mmt``: Dong et al. (ICASSP 2023) flattened: per note ``BEAT POS PITCH DUR INST`` (beat absolute,
  position within the beat), sorted by time; the instrument comes after the pitch, so the pitch
  cannot depend on it.
- ``remi``: REMI+ in MMM's track-concatenated order: per track ``TRACK``, then per bar ``BAR [METER]``
  and per note ``[POS] PITCH DUR`` (``POS`` only when the onset changes).
- ``ours``: bar-major: per bar ``BAR [METER] [KEY] [CPOS CHORD]*``, then each declared instrument in
  turn ``TRACK`` and its notes ``[POS] PITCH_<instrument>_<pitch> DUR``. Every track of a bar is
  written after the bar's conditions and the tracks before it, and a pitch token names its
  instrument, so only playable pitches exist in the vocabulary.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from bridge.chords import CHORD_INTERVALS, chord_at
from bridge.score import NOTE_DTYPE, make_notes
from models.data.instruments import INSTRUMENTS

RESOLUTION = 24  # ticks per quarter the tokenizers read (models.data's grid)
GRID_TICKS = 3  # a 32nd note
STEPS_PER_BEAT = RESOLUTION // GRID_TICKS
MAX_BAR_STEPS = 64  # 8 quarters: 4/2, 12/8 and everything shorter
MAX_DURATION_STEPS = 128  # 16 quarters; longer notes are cut to it
MAX_BEATS = 1024  # MMT's absolute beat; notes after it are dropped
VELOCITY = 80  # tokens carry no dynamics
METERS = tuple((n, d) for d in (2, 4, 8) for n in range(1, 13) if n * 32 // d <= MAX_BAR_STEPS)
KEYS = tuple((f, m) for m in (0, 1) for f in range(-7, 8))  # (fifths, minor)
N_CHORD_QUALITIES = 16  # bridge.chords.CHORD_QUALITIES indexes into at most this many
REPRESENTATIONS = ("mmt", "remi", "ours")
# Notes per bar on one track, as the DENSITY token's buckets (lower bounds; the last is open): the
# decoder writes one after each TRACK (ours, ``density=True``) and then that many notes.
DENSITY_BUCKETS = (0, 1, 2, 3, 4, 5, 6, 7, 9, 13)
CONDITION_KINDS = ("INST", "METER", "KEY", "CPOS", "CHORD")


def chord_qualities() -> dict[str, tuple[int, ...]]:
    """Chord quality name -> intervals, in the order CHORD_DTYPE's ``quality`` indexes."""
    return dict(CHORD_INTERVALS)


def instrument_table() -> dict[str, tuple[int, int, int]]:
    """name -> (GM program, lowest, highest playable MIDI pitch)."""
    return {name: (int(i.program), int(i.low), int(i.high)) for name, i in INSTRUMENTS.items()}


@dataclass(frozen=True)
class TokenizerConfig:
    rep: str
    instruments: tuple[str, ...]  # the vocabulary's instruments, in track order
    ranges: tuple[tuple[int, int], ...]  # (low, high) MIDI per instrument
    programs: tuple[int, ...]
    # ours only (both off in the study and the first shipped model): meter and key at every bar, not
    # only where they change (a crop of a long piece then still says its meter), and a DENSITY token
    # after each TRACK (the track's notes in the bar, bucketed), which a request may force
    repeat_conditions: bool = False
    density: bool = False
    # ours only: trained with the tracks of a bar in other orders too (a subset moved to the end of
    # the bar, see ``models.composer.data.Sequences``), so a request may write the tracks it is
    # given first and those it writes last (the instrument is in every TRACK and pitch token)
    reorder_tracks: bool = False

    def __post_init__(self) -> None:
        if self.rep not in REPRESENTATIONS:
            raise ValueError(f"TokenizerConfig.rep must be one of {REPRESENTATIONS}, got {self.rep!r}")
        if not (len(self.instruments) == len(self.ranges) == len(self.programs)) or not self.instruments:
            raise ValueError("TokenizerConfig needs one range and one program per instrument, and at "
                             f"least one instrument; got {len(self.instruments)} instruments, "
                             f"{len(self.ranges)} ranges, {len(self.programs)} programs")

    @staticmethod
    def for_instruments(rep: str, names: list[str] | tuple[str, ...], repeat_conditions: bool = False,
                        density: bool = False, reorder_tracks: bool = False) -> TokenizerConfig:
        table = instrument_table()
        unknown = [n for n in names if n not in table]
        if unknown:
            raise ValueError(f"unknown instrument {unknown[0]!r}; choose from {', '.join(sorted(table))}")
        return TokenizerConfig(rep, tuple(names), tuple((table[n][1], table[n][2]) for n in names),
                               tuple(table[n][0] for n in names), repeat_conditions, density, reorder_tracks)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> TokenizerConfig:
        return TokenizerConfig(d["rep"], tuple(d["instruments"]), tuple(tuple(r) for r in d["ranges"]),
                               tuple(d["programs"]), bool(d.get("repeat_conditions", False)),
                               bool(d.get("density", False)), bool(d.get("reorder_tracks", False)))


class Vocab:
    """Token names grouped by kind; a kind is a contiguous id range."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.kinds: dict[str, tuple[int, int]] = {}  # kind -> (first id, count)

    def add(self, kind: str, labels) -> None:
        labels = list(labels)
        self.kinds[kind] = (len(self.names), len(labels))
        self.names += [f"{kind}_{label}" if kind != label else kind for label in labels]

    def id(self, kind: str, i: int = 0) -> int:
        start, n = self.kinds[kind]
        if not 0 <= i < n:
            raise ValueError(f"{kind} token index {i} is outside 0..{n - 1}")
        return start + i

    def span(self, kind: str) -> range:
        start, n = self.kinds[kind]
        return range(start, start + n)

    def kind_ids(self) -> np.ndarray:
        """(V,) int: the index of each token's kind in ``list(self.kinds)``."""
        out = np.zeros(len(self.names), np.int64)
        for k, (start, n) in enumerate(self.kinds.values()):
            out[start:start + n] = k
        return out

    def __len__(self) -> int:
        return len(self.names)


@dataclass
class TokenScore:
    """What tokens decode to: notes (NOTE_DTYPE, sorted by time, pitch) and each note's track,
    an index into ``instruments``; ``bar_starts`` in ticks as the tokens laid the bars out."""

    notes: np.ndarray
    track: np.ndarray
    instruments: list[str]
    bar_starts: np.ndarray


def bar_grid(meters: np.ndarray | None, end_tick: int) -> tuple[np.ndarray, np.ndarray]:
    """Bar starts (ticks) covering [0, end_tick) and each bar's meter index into ``METERS``, laid
    from the meter map (4/4 without one). A meter not in ``METERS`` is a ValueError."""
    changes = [(0, (4, 4))] if meters is None or len(meters) == 0 else \
        [(int(m["time"]), (int(m["numerator"]), int(m["denominator"]))) for m in meters]
    if changes[0][0] > 0:
        changes.insert(0, (0, changes[0][1]))
    starts, kinds, t, k = [], [], 0, 0
    while t < max(end_tick, 1):
        while k + 1 < len(changes) and changes[k + 1][0] <= t:
            k += 1
        meter = changes[k][1]
        if meter not in METERS:
            raise ValueError(f"meter {meter[0]}/{meter[1]} is not supported; bars of up to "
                             f"{MAX_BAR_STEPS * GRID_TICKS // RESOLUTION} quarters are")
        starts.append(t)
        kinds.append(METERS.index(meter))
        t += meter_ticks(meter)
    return np.array(starts, np.int64), np.array(kinds, np.int64)


def chords_per_bar(piece):
    """The piece with one chord per bar: the one sounding at each bar start (bars laid as the
    tokenizers lay them); a training augmentation (``models.composer.train``)."""
    if not len(piece.chords):
        return piece
    end = int(max((piece.notes["time"] + piece.notes["duration"]).max(initial=0), piece.chords["time"].max()))
    starts, _ = bar_grid(piece.meters, end + 1)
    chords = piece.chords[chord_at(piece.chords, starts)].copy()
    chords["time"] = starts
    chords["duration"] = np.diff(np.append(starts, starts[-1] + (starts[-1] - starts[-2] if len(starts) > 1
                                                                else 96)))
    return type(piece)(**{**vars(piece), "chords": chords})


CHORD_VARIANTS = {"full": lambda p: p, "none": lambda p: type(p)(**{**vars(p), "chords": p.chords[:0]}),
                  "bar": chords_per_bar}


def chord_index(root: int, quality: int) -> int:
    """A CHORD token's index: root pitch class and quality (qualities past the table share the last)."""
    return root % 12 * N_CHORD_QUALITIES + min(quality, N_CHORD_QUALITIES - 1)


def density_bucket(n_notes: int) -> int:
    """The DENSITY bucket of a track's note count in one bar."""
    return int(np.searchsorted(DENSITY_BUCKETS, n_notes, side="right")) - 1


def density_bounds(bucket: int) -> tuple[int, int]:
    """(fewest, most) notes a DENSITY bucket allows; the last bucket's most is 1 << 30."""
    high = DENSITY_BUCKETS[bucket + 1] - 1 if bucket + 1 < len(DENSITY_BUCKETS) else 1 << 30
    return DENSITY_BUCKETS[bucket], high


def meter_ticks(meter: tuple[int, int]) -> int:
    return meter[0] * 4 * RESOLUTION // meter[1]


@dataclass
class _Events:
    """A piece's notes on the grid, with the bar each falls in; columns sorted by time, pitch."""

    bar: np.ndarray
    pos: np.ndarray  # grid steps from the bar start
    pitch: np.ndarray
    dur: np.ndarray  # grid steps, 1..MAX_DURATION_STEPS
    inst: np.ndarray  # index into the tokenizer's instruments
    time: np.ndarray  # grid steps from the start
    bar_starts: np.ndarray
    bar_meters: np.ndarray
    bar_keys: np.ndarray  # key index per bar, -1 unknown
    chords: list[list[tuple[int, int]]]  # per bar: (pos, chord index)


class Tokenizer:
    """Shared by the three: vocabulary, events and the condition mask; each subclass writes and
    reads its own order."""

    rep = ""

    def __init__(self, cfg: TokenizerConfig) -> None:
        self.cfg = cfg
        self.vocab = Vocab()
        self.vocab.add("PAD", ["PAD"])
        self.vocab.add("BOS", ["BOS"])
        self.vocab.add("EOS", ["EOS"])
        self.vocab.add("INST", cfg.instruments)
        self._build()
        kinds = list(self.vocab.kinds)
        kind_of = self.vocab.kind_ids()
        self.kind_of = kind_of
        self.kind_names = kinds
        cond = [kinds.index(k) for k in CONDITION_KINDS if k in self.vocab.kinds]
        self.condition = np.isin(kind_of, cond + [kinds.index("PAD"), kinds.index("BOS")])
        self.note_token = np.zeros(len(self.vocab), bool)
        self.note_token[list(self.vocab.span("DUR"))] = True

    def _build(self) -> None:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, piece) -> np.ndarray:
        raise NotImplementedError

    def decode(self, ids) -> TokenScore:
        raise NotImplementedError

    def count_notes(self, ids) -> int:
        return int(self.note_token[np.asarray(ids, np.int64)].sum())

    def events(self, piece) -> _Events:
        if int(piece.resolution) != RESOLUTION:
            raise ValueError(f"tokenizers read {RESOLUTION} ticks per quarter, got {piece.resolution}")
        index = {name: i for i, name in enumerate(self.cfg.instruments)}
        missing = [n for n in piece.instruments if n not in index]
        if missing:
            raise ValueError(f"instrument {missing[0]!r} is not in this tokenizer's vocabulary "
                             f"({', '.join(self.cfg.instruments)})")
        notes = piece.notes
        inst = np.array([index[n] for n in piece.instruments], np.int64)[np.asarray(piece.track, np.int64)] \
            if len(notes) else np.zeros(0, np.int64)
        time = (notes["time"] + GRID_TICKS // 2) // GRID_TICKS
        dur = np.clip((notes["duration"] + GRID_TICKS // 2) // GRID_TICKS, 1, MAX_DURATION_STEPS)
        pitch = notes["pitch"].astype(np.int64)
        low = np.array([r[0] for r in self.cfg.ranges])[inst]
        high = np.array([r[1] for r in self.cfg.ranges])[inst]
        pitch = np.where(pitch < low, pitch + 12 * ((low - pitch + 11) // 12), pitch)  # octave-fold
        pitch = np.where(pitch > high, pitch - 12 * ((pitch - high + 11) // 12), pitch)
        chords_in = getattr(piece, "chords", ())
        # bars cover every onset and every chord change (a chord may change after the last onset)
        end = max(int(time.max() * GRID_TICKS) if len(notes) else 0,
                  int(chords_in["time"].max()) if len(chords_in) else 0) + 1
        starts, meters = bar_grid(getattr(piece, "meters", None), end)
        bar = np.searchsorted(starts, time * GRID_TICKS, side="right") - 1
        pos = time - starts[bar] // GRID_TICKS
        order = np.lexsort((inst, dur, pitch, time))
        keys = np.full(len(starts), -1, np.int64)
        for k in getattr(piece, "keys", ()):
            key = (int(k["fifths"]), int(k["minor"]))
            if key in KEYS:  # from the bar the change falls in onwards
                b = max(int(np.searchsorted(starts, int(k["time"]), side="right")) - 1, 0)
                keys[b:] = KEYS.index(key)
        chords: list[list[tuple[int, int]]] = [[] for _ in starts]
        for c in chords_in:
            t = int(c["time"]) // GRID_TICKS * GRID_TICKS
            b = int(np.searchsorted(starts, t, side="right") - 1)
            q = int(c["quality"])
            if 0 <= b < len(starts):
                chords[b].append(((t - int(starts[b])) // GRID_TICKS, chord_index(int(c["root"]), q)))
        return _Events(bar[order], pos[order], pitch[order], dur[order], inst[order], time[order],
                       starts, meters, keys, chords)

    def _score(self, rows: list[tuple[int, int, int, int]], bar_starts: list[int]) -> TokenScore:
        """rows of (time ticks, pitch, duration ticks, instrument) -> a TokenScore."""
        if rows:
            a = np.array(rows, np.int64)
            order = np.lexsort((a[:, 3], a[:, 2], a[:, 1], a[:, 0]))
            a = a[order]
            notes = make_notes(a[:, 0], a[:, 1], a[:, 2], VELOCITY)
            track = a[:, 3].astype(np.int16)
        else:
            notes, track = np.zeros(0, NOTE_DTYPE), np.zeros(0, np.int16)
        return TokenScore(notes, track, list(self.cfg.instruments), np.array(bar_starts, np.int64))

    def _header(self, ev: _Events) -> list[int]:
        return [self.vocab.id("BOS")] + [self.vocab.id("INST", i) for i in sorted(set(ev.inst.tolist()))]


class _BarTokenizer(Tokenizer):
    """What REMI and ours share: bars laid from METER tokens, ``[POS] PITCH DUR`` notes."""

    def _build(self) -> None:
        v = self.vocab
        v.add("BAR", ["BAR"])
        v.add("METER", [f"{n}/{d}" for n, d in METERS])
        v.add("TRACK", self.cfg.instruments)
        v.add("POS", range(MAX_BAR_STEPS))
        self._pitch_tokens()
        v.add("DUR", range(1, MAX_DURATION_STEPS + 1))

    def _pitch_tokens(self) -> None:
        self.vocab.add("PITCH", range(128))

    def pitch_id(self, inst: int, pitch: int) -> int:
        return self.vocab.id("PITCH", pitch)

    def pitch_of(self, tok: int) -> tuple[int, int]:
        """(instrument or -1, MIDI pitch) of a pitch token."""
        return -1, tok - self.vocab.kinds["PITCH"][0]

    def _bar_notes(self, ev: _Events, b: int, inst: int | None) -> list[int]:
        v, ids, last = self.vocab, [], -1
        sel = ev.bar == b if inst is None else (ev.bar == b) & (ev.inst == inst)
        for p, pitch, d, i in zip(ev.pos[sel].tolist(), ev.pitch[sel].tolist(), ev.dur[sel].tolist(),
                                  ev.inst[sel].tolist()):
            if p != last:
                ids.append(v.id("POS", p))
                last = p
            ids += [self.pitch_id(i, pitch), v.id("DUR", d - 1)]
        return ids

    def _meter(self, ev: _Events, b: int) -> list[int]:
        if b == 0 or ev.bar_meters[b] != ev.bar_meters[b - 1] or self.cfg.repeat_conditions:
            return [self.vocab.id("METER", int(ev.bar_meters[b]))]
        return []

    def _read(self, ids, reset_on_track: bool) -> TokenScore:
        """Decode bar-laid tokens; a partial note (no DUR yet) is dropped."""
        v, rows = self.vocab, []
        bar_start, bar_len, meter, pos, pitch, track = -1, 0, (4, 4), 0, None, 0
        starts: list[int] = []
        for tok in np.asarray(ids, np.int64).tolist():
            kind = self.kind_names[self.kind_of[tok]]
            if kind == "TRACK":
                track, pos, pitch = tok - v.kinds["TRACK"][0], 0, None
                if reset_on_track:
                    bar_start, bar_len = -1, 0
            elif kind == "BAR":
                bar_start = bar_start + bar_len if bar_start >= 0 else 0
                bar_len, pos, pitch = meter_ticks(meter), 0, None
                if not starts or bar_start > starts[-1]:
                    starts.append(bar_start)
            elif kind == "METER":
                meter = METERS[tok - v.kinds["METER"][0]]
                bar_len = meter_ticks(meter)
            elif kind == "POS":
                pos = tok - v.kinds["POS"][0]
            elif kind in ("PITCH", "NPITCH"):
                inst, p = self.pitch_of(tok)
                pitch = (p, track if inst < 0 else inst)
            elif kind == "DUR" and pitch is not None and bar_start >= 0:
                rows.append((bar_start + pos * GRID_TICKS, pitch[0],
                             (tok - v.kinds["DUR"][0] + 1) * GRID_TICKS, pitch[1]))
                pitch = None
        return self._score(rows, starts)

"""Chord symbols, progressions and chord identification, as ``CHORD_DTYPE`` arrays.

A chord is (root pitch class, quality index into ``CHORD_QUALITIES``, bass pitch class). The user
writes chords as symbols (``"Am7"``, ``"C/E"``, ``"F#dim"``) or as roman numerals in a key
(``"I V vi IV"`` with ``key="C"``); ``parse_progression`` turns a progression into timed chords on
the tick grid. ``identify_chords`` names the chords a note array sounds (a fast chordify): the
training data's chords where no roman-numeral analysis exists, and the chord-tone metric's chords.
The bridge layer owns this so the CLI, the engine and the models share one reading of a symbol.
"""
from __future__ import annotations

import re

import numpy as np

CHORD_DTYPE = np.dtype(
    [("time", "<i8"), ("duration", "<i8"), ("root", "u1"), ("quality", "u1"), ("bass", "u1")]
)

# Quality -> intervals above the root in semitones. "other" is a chord the vocabulary does not
# name (clusters, quartal chords): only its root is known.
CHORD_INTERVALS: dict[str, tuple[int, ...]] = {
    "maj": (0, 4, 7),
    "min": (0, 3, 7),
    "dim": (0, 3, 6),
    "aug": (0, 4, 8),
    "7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11),
    "min7": (0, 3, 7, 10),
    "hdim7": (0, 3, 6, 10),
    "dim7": (0, 3, 6, 9),
    "sus4": (0, 5, 7),
    "sus2": (0, 2, 7),
    "other": (0,),
}
CHORD_QUALITIES: tuple[str, ...] = tuple(CHORD_INTERVALS)

# Suffix spellings -> quality, longest first when matching. Extensions (9, 11, 13, add9, 6) keep
# the seventh chord or triad they extend: the vocabulary is at seventh-chord level.
_SUFFIXES: dict[str, str] = {
    "": "maj", "maj": "maj", "M": "maj", "major": "maj", "6": "maj", "add9": "maj", "add2": "maj",
    "69": "maj", "5": "maj",
    "m": "min", "min": "min", "-": "min", "minor": "min", "m6": "min", "madd9": "min", "mi": "min",
    "dim": "dim", "o": "dim", "°": "dim",
    "aug": "aug", "+": "aug", "#5": "aug",
    "7": "7", "9": "7", "11": "7", "13": "7", "7b9": "7", "7#9": "7", "7b5": "7", "7#11": "7",
    "dom7": "7",
    "maj7": "maj7", "M7": "maj7", "Δ": "maj7", "Δ7": "maj7", "maj9": "maj7", "ma7": "maj7",
    "m7": "min7", "min7": "min7", "-7": "min7", "m9": "min7", "m11": "min7", "mi7": "min7",
    "m7b5": "hdim7", "ø": "hdim7", "ø7": "hdim7", "hdim7": "hdim7", "-7b5": "hdim7",
    "dim7": "dim7", "o7": "dim7", "°7": "dim7",
    "sus4": "sus4", "sus": "sus4", "7sus4": "sus4", "sus2": "sus2",
}
_LETTERS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_NOTE = r"([A-Ga-g])([#b♯♭]*)"
_SYMBOL = re.compile(rf"^{_NOTE}(.*?)(?:/{_NOTE})?$")
_ACCEPTED = ("a root A-G with optional # or b, a quality such as m, 7, maj7, m7, dim, dim7, m7b5, "
             "aug, sus4, sus2 (or none for major), and an optional /bass, e.g. Am7, F#dim, C/E")


def _pitch_class(letter: str, accidentals: str) -> int:
    sharps = accidentals.count("#") + accidentals.count("♯") - accidentals.count("b") - accidentals.count("♭")
    return (_LETTERS[letter.upper()] + sharps) % 12


def chord_pitch_classes(root: int, quality: int) -> tuple[int, ...]:
    """The pitch classes of a chord: ``chord_pitch_classes(9, CHORD_QUALITIES.index("min7"))``
    is (9, 0, 4, 7)."""
    return tuple((root + i) % 12 for i in CHORD_INTERVALS[CHORD_QUALITIES[quality]])


def parse_chord(symbol: str) -> tuple[int, int, int]:
    """(root pitch class, quality index, bass pitch class) of a chord symbol: ``"Am7"`` is
    (9, index of "min7", 9), ``"C/E"`` is (0, index of "maj", 4)."""
    text = str(symbol).strip()
    m = _SYMBOL.match(text)
    if m is None or m.group(1).upper() not in _LETTERS or m.group(3) not in _SUFFIXES:
        raise ValueError(f"unknown chord symbol {symbol!r}; write {_ACCEPTED}")
    root = _pitch_class(m.group(1), m.group(2))
    quality = CHORD_QUALITIES.index(_SUFFIXES[m.group(3)])
    bass = _pitch_class(m.group(4), m.group(5)) if m.group(4) else root
    return root, quality, bass


_ROMAN = re.compile(r"^([#b♯♭]*)(iii|vii|ii|iv|vi|v|i|III|VII|II|IV|VI|V|I)(.*)$")
_ROMAN_DEGREES = {"i": 0, "ii": 1, "iii": 2, "iv": 3, "v": 4, "vi": 5, "vii": 6}
_MAJOR_STEPS = (0, 2, 4, 5, 7, 9, 11)
_MINOR_STEPS = (0, 2, 3, 5, 7, 8, 10)  # natural minor; V and vii° of minor are written as such
_ROMAN_SUFFIXES = {"": None, "7": "7", "maj7": "maj7", "M7": "maj7", "o": "dim", "°": "dim", "o7": "dim7",
                   "°7": "dim7", "ø": "hdim7", "ø7": "hdim7", "+": "aug", "6": None, "64": None,
                   "65": "7", "43": "7", "42": "7", "sus4": "sus4", "sus2": "sus2"}
_INVERSION_STEP = {"6": 1, "65": 1, "64": 2, "43": 2, "42": 3}  # chord tone in the bass


def parse_key(key: str) -> tuple[int, bool]:
    """(tonic pitch class, minor) of a key name: "C", "a" (lower case is minor), "F# minor", "Bbm"."""
    text = str(key).strip()
    m = re.match(rf"^{_NOTE}\s*(m|min|minor|maj|major|M)?$", text)
    if m is None:
        raise ValueError(f"unknown key {key!r}; write a tonic A-G with optional # or b, lower case or "
                         "'m'/'minor' for minor, e.g. C, a, F#m, Bb major")
    minor = m.group(3) in ("m", "min", "minor") or (m.group(3) is None and m.group(1).islower())
    return _pitch_class(m.group(1), m.group(2)), minor


def parse_roman(numeral: str, key: str) -> tuple[int, int, int]:
    """(root, quality index, bass) of a roman numeral in a key: "vi" in C is A minor, "V7" in "a"
    is E7, "ii65" in C is Dm7 over F."""
    tonic, minor = parse_key(key)
    m = _ROMAN.match(str(numeral).strip())
    suffix = m.group(3) if m else None
    if m is None or suffix not in _ROMAN_SUFFIXES:
        raise ValueError(f"unknown roman numeral {numeral!r} in {key!r}; write I-VII (upper case major, "
                         "lower case minor) with optional b/# before, and o, ø, +, 7, maj7 or an "
                         "inversion figure (6, 64, 65, 43, 42) after, e.g. I V6 vi ii7 viio7")
    degree = _ROMAN_DEGREES[m.group(2).lower()]
    shift = sum({"#": 1, "♯": 1, "b": -1, "♭": -1}[c] for c in m.group(1))
    root = (tonic + (_MINOR_STEPS if minor else _MAJOR_STEPS)[degree] + shift) % 12
    upper = m.group(2).isupper()
    quality = _ROMAN_SUFFIXES[suffix]
    if quality is None:
        quality = "maj" if upper else "min"
    elif quality == "7":
        quality = "7" if upper else "min7"
    if suffix in ("65", "43", "42") and not upper:
        quality = "min7"
    q = CHORD_QUALITIES.index(quality)
    tones = chord_pitch_classes(root, q)
    bass = tones[min(_INVERSION_STEP.get(suffix, 0), len(tones) - 1)]
    return root, q, bass


def parse_progression(text: str, key: str | None = None, bars: int | None = None,
                      meter: tuple[int, int] = (4, 4), resolution: int = 24) -> np.ndarray:
    """Timed chords (``CHORD_DTYPE``) of a progression. ``"C G Am F"``: one chord per bar;
    ``"C G | Am F"``: bars split by ``|``, the chords of a bar sharing it equally; roman numerals
    (``"I V vi IV"``) need ``key`` ("C", "a" for A minor). ``bars`` repeats the progression (or
    cuts it) to that many bars."""
    numerator, denominator = meter
    if numerator <= 0 or denominator <= 0 or denominator & (denominator - 1):
        raise ValueError(f"meter must be (beats, beat unit) with a power-of-two unit, got {meter}")
    if resolution <= 0:
        raise ValueError(f"resolution must be a positive number of ticks per quarter, got {resolution}")
    if bars is not None and bars <= 0:
        raise ValueError(f"bars must be a positive number of bars, got {bars}")
    groups = [g.split() for g in text.split("|")] if "|" in text else [[s] for s in text.split()]
    if any(not g for g in groups):
        raise ValueError(f"empty bar in chord progression {text!r}; put at least one chord between bars")
    if not groups:
        raise ValueError("empty chord progression; write chords such as 'C G Am F' or 'I V vi IV' with a key")

    def one(symbol: str) -> tuple[int, int, int]:
        if _ROMAN.match(symbol) and not _SYMBOL.match(symbol):
            if key is None:
                raise ValueError(f"roman numeral {symbol!r} needs a key; pass key='C' (or 'a' for A minor)")
            return parse_roman(symbol, key)
        return parse_chord(symbol)

    parsed = [[one(s) for s in g] for g in groups]
    if bars is not None:
        parsed = [parsed[i % len(parsed)] for i in range(bars)]
    bar_ticks = numerator * 4 * resolution // denominator
    rows = []
    for b, chords in enumerate(parsed):
        edges = [b * bar_ticks + round(i * bar_ticks / len(chords)) for i in range(len(chords) + 1)]
        rows += [(edges[i], edges[i + 1] - edges[i], *c) for i, c in enumerate(chords)]
    return np.array(rows, CHORD_DTYPE)


# Chord identification: each quality's template over the 12 pitch classes, for every root.
_TEMPLATES = np.zeros((12 * (len(CHORD_QUALITIES) - 1), 12))
for _q, _name in enumerate(CHORD_QUALITIES[:-1]):
    for _root in range(12):
        _TEMPLATES[_q * 12 + _root, [(_root + i) % 12 for i in CHORD_INTERVALS[_name]]] = 1.0
_TEMPLATE_SIZE = _TEMPLATES.sum(1)
_TEMPLATE_ORDER = np.repeat(np.arange(len(CHORD_QUALITIES) - 1), 12) * 1e-6  # ties: simpler first


def identify_chords(notes: np.ndarray, resolution: int, end: int | None = None,
                    step_ticks: int | None = None) -> np.ndarray:
    """The chords a note array (``NOTE_DTYPE``) sounds, one per ``step_ticks`` window (default a
    quarter note) merged where consecutive windows agree, covering 0..``end`` without gaps
    (silent windows hold the previous chord).

    Each window's pitch classes are weighted by how long they sound in it, the bass note double;
    the template scoring chord tones minus non-chord tones minus missing tones wins, simpler
    qualities first on ties; a window whose best chord covers under half its weight is "other".
    """
    step = int(step_ticks or resolution)
    if end is None:
        end = int((notes["time"] + notes["duration"]).max()) if len(notes) else step
    n_win = max(1, -(-int(end) // step))
    weights = np.zeros((n_win, 12))
    lowest = np.full(n_win, 255)
    if len(notes):
        start = notes["time"].astype(np.int64)
        stop = start + notes["duration"].astype(np.int64)
        first, last = start // step, np.minimum((stop - 1) // step, n_win - 1)
        span = np.maximum(last - first + 1, 0)
        idx = np.repeat(np.arange(len(notes)), span)
        win = first[idx] + (np.arange(len(idx)) - np.repeat(np.cumsum(span) - span, span))
        overlap = np.minimum(stop[idx], (win + 1) * step) - np.maximum(start[idx], win * step)
        pitch = notes["pitch"][idx].astype(np.int64)
        np.add.at(weights, (win, pitch % 12), overlap)
        np.minimum.at(lowest, win, pitch)
        sounding = lowest < 255
        weights[sounding, lowest[sounding] % 12] += step  # the bass carries the harmony
    total = weights.sum(1, keepdims=True)
    present = weights > 0.1 * np.maximum(total, 1e-9)
    inside = weights @ _TEMPLATES.T
    missing = (~present).astype(float) @ _TEMPLATES.T
    score = 2 * inside - total - missing * total / _TEMPLATE_SIZE - _TEMPLATE_ORDER
    best = score.argmax(1)
    root, quality = best % 12, best // 12
    other = inside[np.arange(n_win), best] < 0.5 * total[:, 0]
    quality[other] = len(CHORD_QUALITIES) - 1
    root[other] = weights.argmax(1)[other]
    bass = np.where(lowest < 255, lowest % 12, root)
    silent = total[:, 0] == 0
    if silent.all():
        return np.array([(0, int(end), 0, CHORD_QUALITIES.index("other"), 0)], CHORD_DTYPE)
    # silent windows hold the previous chord (the first sounding one for a silent start)
    keep = np.where(~silent, np.arange(n_win), -1)
    keep = np.maximum.accumulate(keep)
    keep[keep < 0] = np.flatnonzero(~silent)[0]
    root, quality, bass = root[keep], quality[keep], bass[keep]
    change = np.ones(n_win, bool)
    change[1:] = (root[1:] != root[:-1]) | (quality[1:] != quality[:-1]) | (bass[1:] != bass[:-1])
    starts = np.flatnonzero(change) * step
    ends = np.append(starts[1:], int(end))
    chords = np.zeros(len(starts), CHORD_DTYPE)
    chords["time"], chords["duration"] = starts, ends - starts
    chords["root"], chords["quality"], chords["bass"] = root[change], quality[change], bass[change]
    return chords


def chord_tone_ratio(notes: np.ndarray, chords: np.ndarray) -> float:
    """Share of notes whose pitch class belongs to the chord sounding at their onset (NaN for no
    notes). Pass pitched notes only: drum "pitches" are sounds."""
    if not len(notes):
        return float("nan")
    member = np.zeros((len(chords), 12), bool)
    for i, c in enumerate(chords):
        member[i, list(chord_pitch_classes(int(c["root"]), int(c["quality"])))] = True
    return float(member[chord_at(chords, notes["time"]), notes["pitch"] % 12].mean())


def chord_at(chords: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    """Index of the chord sounding at each tick (the last one starting at or before it)."""
    return np.clip(np.searchsorted(chords["time"], ticks, side="right") - 1, 0, len(chords) - 1)


def quality_of(root: int, pitch_classes) -> int:
    """The quality index of a chord given as pitch classes over a root: the vocabulary chord equal
    to the set, else the largest one inside it (a ninth chord is its seventh chord), else "other"."""
    intervals = {(int(pc) - root) % 12 for pc in pitch_classes} | {0}
    best, size = len(CHORD_QUALITIES) - 1, 1
    for q, name in enumerate(CHORD_QUALITIES[:-1]):
        tones = set(CHORD_INTERVALS[name])
        if tones == intervals:
            return q
        if tones <= intervals and len(tones) > size:
            best, size = q, len(tones)
    return best

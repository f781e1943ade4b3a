"""Expression markings read from a score and realised as a performance: the alignment target.

``read_marked`` turns a music21 score into one row per note (``MARKED_DTYPE``): part, pitch, score
onset and duration in beats (quarter notes), and the markings that apply to it: dynamic level
(ppp..fff), hairpin, articulation flags, slur membership, fermata. ``realise`` plays those rows the
way a (simulated) performer would, seeded: velocity from the dynamic level and accents, a CC11
(expression) curve per part for hairpins, staccato/tenuto/legato durations, a tempo curve with
rubato, ritardandi into fermatas and held fermatas, and small per-note onset jitter. Its rows
(``PERFORMED_DTYPE``) keep the score times beside the performed ones; the alignment model learns
the map from one to the other.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Marking flags (bits of ``marks``)
STACCATO, TENUTO, ACCENT, MARCATO, SLUR, SLUR_END, FERMATA = 1, 2, 4, 8, 16, 32, 64
MARK_BITS = 7
MARK_NAMES = ("staccato", "tenuto", "accent", "marcato", "slur", "slur_end", "fermata")

# Dynamic levels: index into DYNAMIC_NAMES; unmarked music plays at mf
DYNAMIC_NAMES = ("ppp", "pp", "p", "mp", "mf", "f", "ff", "fff")
DEFAULT_DYNAMIC = DYNAMIC_NAMES.index("mf")
# music21 Dynamic.value -> level; sforzandi and fp are accents at the prevailing level
_DYNAMIC_LEVELS = {name: i for i, name in enumerate(DYNAMIC_NAMES)} | {
    "pppp": 0, "ffff": 7, "fz": -1, "sf": -1, "sfz": -1, "sffz": -1, "rfz": -1, "fp": -1, "sfp": -1}
# Velocity of each level before accents and humanising (MIDI 1..127)
LEVEL_VELOCITY = np.array([24, 36, 50, 64, 76, 90, 104, 116], np.float64)
ACCENT_VELOCITY, MARCATO_VELOCITY = 12.0, 20.0
CC11_BASE = 100  # CC11 at a steady dynamic; hairpins move it around this
CC11_PER_LEVEL = 12.0
CC11_STEP_S = 0.02  # CC11 updates during a hairpin, seconds apart
DEFAULT_QPM = 90.0  # tempo of a score without a metronome mark (chorales have none)
MIN_DURATION_S = 0.03

MARKED_DTYPE = np.dtype([
    ("part", "u1"), ("pitch", "u1"), ("onset_beats", "<f8"), ("duration_beats", "<f8"),
    ("velocity", "u1"),  # the score's own: a MIDI file's, or the dynamic level's for notation
    ("dynamic", "u1"),  # level 0..7 (DYNAMIC_NAMES)
    ("hairpin", "i1"),  # -1 diminuendo, 0 none, +1 crescendo
    ("marks", "u1"),  # bit flags: STACCATO ... FERMATA
])
PERFORMED_DTYPE = np.dtype(MARKED_DTYPE.descr + [
    ("score_onset_s", "<f8"), ("score_duration_s", "<f8"),  # at the score's tempo: the baseline
    ("onset_s", "<f8"), ("duration_s", "<f8"),  # performed: the alignment target
    ("performed_velocity", "u1"),
])


@dataclass(frozen=True)
class Style:
    """How one performer plays: drawn once per performer id (``Style.of``)."""

    tempo_scale: float = 1.0  # performed tempo / the score's
    rubato_depth: float = 0.04  # relative tempo swing of the slow random rubato
    jitter_ms: float = 10.0  # standard deviation of per-note onset noise
    melody_lead_ms: float = 8.0  # the top part sounds this much early
    detache: float = 0.9  # sounding share of an unmarked note
    staccato: float = 0.5
    tenuto: float = 1.0
    legato_overlap_s: float = 0.04  # a slurred note overlaps the next by this much
    fermata_hold: float = 1.8  # a fermata note lasts this many times its value
    ritardando: float = 0.25  # tempo drop (relative) over the 2 beats before a fermata
    velocity_jitter: float = 4.0

    @classmethod
    def of(cls, performer_id: int) -> Style:
        """A performer's style, the same on every machine."""
        g = np.random.default_rng([7919, performer_id])
        return cls(tempo_scale=float(g.uniform(0.88, 1.12)), rubato_depth=float(g.uniform(0.02, 0.06)),
                   jitter_ms=float(g.uniform(5, 15)), melody_lead_ms=float(g.uniform(0, 15)),
                   detache=float(g.uniform(0.82, 0.95)), staccato=float(g.uniform(0.4, 0.6)),
                   tenuto=float(g.uniform(0.97, 1.0)), legato_overlap_s=float(g.uniform(0.02, 0.06)),
                   fermata_hold=float(g.uniform(1.5, 2.2)), ritardando=float(g.uniform(0.15, 0.35)),
                   velocity_jitter=float(g.uniform(2, 6)))


def _level_of(value: str) -> int | None:
    """A dynamic mark's level, -1 for an accent mark (sf, fz, fp), None for one not known here."""
    return _DYNAMIC_LEVELS.get(str(value).lower())


def read_marked(stream) -> tuple[np.ndarray, float]:
    """The notes of a music21 Score with their markings, sorted by (onset, part, pitch), and the
    score's first tempo in quarter notes per minute (``DEFAULT_QPM`` when unmarked).

    Ties are merged, chords become one row per pitch (sharing the chord's markings), grace notes
    are dropped. Dynamics hold until the next one; sf, fz and fp accent their note; a hairpin marks
the notes it spans (``realise`` ramps them by half a level of velocity and by CC11).
    """
    from music21 import articulations, dynamics, expressions, spanner, tempo
    from music21 import stream as m21stream

    if isinstance(stream, m21stream.Opus):
        stream = stream.scores[0]
    parts = list(stream.parts) if len(getattr(stream, "parts", [])) else [stream]
    rows: list[tuple] = []
    for part_index, part in enumerate(parts):
        flat = part.flatten()
        marks_at = sorted((float(d.offset), _level_of(d.value))
                          for d in flat.getElementsByClass(dynamics.Dynamic))
        sforzandi = {round(o, 4) for o, lv in marks_at if lv == -1}
        levels = [(o, lv) for o, lv in marks_at if lv is not None and lv >= 0]
        wedges, slur_of = [], {}
        for sp in part.spannerBundle:
            try:
                if isinstance(sp, dynamics.DynamicWedge):
                    first, last = sp.getFirst(), sp.getLast()
                    start = float(first.getOffsetInHierarchy(part))
                    end = float(last.getOffsetInHierarchy(part)) + float(last.duration.quarterLength)
                    direction = 1 if isinstance(sp, dynamics.Crescendo) else -1
                    wedges.append((start, max(end, start + 1.0), direction))
                elif isinstance(sp, spanner.Slur):
                    members = sp.getSpannedElements()
                    for i, el in enumerate(members):
                        slur_of[id(el)] = SLUR | (SLUR_END if i == len(members) - 1 else 0)
            except Exception:  # a spanner anchored outside the part: ignore the marking, keep the notes
                continue
        open_ties: dict[int, int] = {}  # MIDI pitch -> row of the note a tie continues
        for el in flat.notes:
            length = float(el.duration.quarterLength)
            if length <= 0:
                continue  # grace notes carry no time in the notated rhythm
            onset = float(el.offset)
            marks = slur_of.get(id(el), 0)
            for a in el.articulations:
                if isinstance(a, articulations.Staccatissimo | articulations.Staccato):
                    marks |= STACCATO
                elif isinstance(a, articulations.Tenuto):
                    marks |= TENUTO
                elif isinstance(a, articulations.StrongAccent):
                    marks |= MARCATO
                elif isinstance(a, articulations.Accent):
                    marks |= ACCENT
            if any(isinstance(e, expressions.Fermata) for e in el.expressions):
                marks |= FERMATA
            if round(onset, 4) in sforzandi:
                marks |= ACCENT
            level = DEFAULT_DYNAMIC
            for o, lv in levels:
                if o <= onset + 1e-6:
                    level = lv
            hairpin = next((d for s, e, d in wedges if s <= onset < e), 0)
            for p in el.pitches:
                midi = int(p.midi)
                tie = el.tie.type if el.tie is not None else None
                if tie in ("continue", "stop") and midi in open_ties:
                    row = list(rows[open_ties[midi]])
                    row[3] = onset + length - row[2]
                    row[7] |= marks & (FERMATA | SLUR_END)
                    rows[open_ties[midi]] = tuple(row)
                    if tie == "stop":
                        del open_ties[midi]
                    continue
                velocity = el.volume.velocity if el.volume.velocity is not None else LEVEL_VELOCITY[level]
                rows.append((part_index, midi, onset, length, int(np.clip(velocity, 1, 127)), level,
                             hairpin, marks))
                if tie == "start":
                    open_ties[midi] = len(rows) - 1
    notes = np.array(rows, MARKED_DTYPE)
    notes = notes[np.lexsort((notes["pitch"], notes["part"], notes["onset_beats"]))]
    marks = [m for m in stream.flatten().getElementsByClass(tempo.MetronomeMark) if m.number is not None]
    qpm = float(marks[0].getQuarterBPM()) if marks else DEFAULT_QPM
    return notes, qpm


DRAWN_LEVELS = (1, 2, 3, 4, 5, 6)  # pp..ff: the levels ``draw_markings`` gives unmarked phrases
DRAWN_PHRASE_BEATS = 8.0  # a phrase of unmarked music without fermatas
# share of phrases drawn with each articulation (the rest plain), and of notes drawn with an accent
DRAWN_ARTICULATION = (("staccato", 0.25), ("tenuto", 0.2), ("slur", 0.25))
DRAWN_HAIRPIN, DRAWN_ACCENT = 1 / 3, 0.04
DRAWN_STACCATO_MAX_BEATS = 1.0  # only notes this short are drawn staccato


def is_unmarked(notes: np.ndarray) -> bool:
    """True for music with no dynamics, hairpins or articulations (fermatas allowed): a chorale."""
    return bool(np.all(notes["dynamic"] == DEFAULT_DYNAMIC) and np.all(notes["hairpin"] == 0)
                and np.all((notes["marks"] & ~np.uint8(FERMATA)) == 0))


def draw_markings(notes: np.ndarray, seed: int) -> np.ndarray:
    """Markings drawn onto unmarked music, so that a model trained on it hears every dynamic level
    and articulation (the chorales have none but fermatas). Phrases end at each fermata chord (or
    every ``DRAWN_PHRASE_BEATS`` beats without one); each phrase gets, for all its parts, a dynamic
    level from pp to ff, a crescendo or diminuendo one time in three, and one articulation: staccato
    (its notes of at most a beat), tenuto, each part slurred through it, or none; a few notes get an
    accent. The score velocity follows the level. Music with markings of its own is returned as is."""
    if not len(notes) or not is_unmarked(notes):
        return notes
    gen = np.random.default_rng(seed)
    out = notes.copy()
    onset, end = out["onset_beats"], out["onset_beats"] + out["duration_beats"]
    cuts = np.unique(end[(out["marks"] & FERMATA) > 0])
    if not len(cuts):
        cuts = np.arange(DRAWN_PHRASE_BEATS, float(end.max()) + DRAWN_PHRASE_BEATS, DRAWN_PHRASE_BEATS)
    phrase = np.searchsorted(cuts, onset + 1e-6, side="left")  # a note starting at a cut opens the next
    names = [name for name, _ in DRAWN_ARTICULATION] + ["none"]
    shares = [share for _, share in DRAWN_ARTICULATION]
    for k in np.unique(phrase):
        rows = np.flatnonzero(phrase == k)
        level = int(gen.choice(DRAWN_LEVELS))
        out["dynamic"][rows] = level
        out["velocity"][rows] = int(LEVEL_VELOCITY[level])
        if gen.random() < DRAWN_HAIRPIN:
            out["hairpin"][rows] = gen.choice((-1, 1))
        kind = gen.choice(names, p=[*shares, 1 - sum(shares)])
        if kind == "staccato":
            short = rows[out["duration_beats"][rows] <= DRAWN_STACCATO_MAX_BEATS]
            out["marks"][short] |= STACCATO
        elif kind == "tenuto":
            out["marks"][rows] |= TENUTO
        elif kind == "slur":
            for part in np.unique(out["part"][rows]):
                mine = rows[out["part"][rows] == part]
                if len(mine) > 1:
                    out["marks"][mine] |= SLUR
                    out["marks"][mine[np.argmax(onset[mine])]] |= SLUR_END
    accent = (gen.random(len(out)) < DRAWN_ACCENT) & ((out["marks"] & STACCATO) == 0)
    out["marks"][accent] |= ACCENT
    return out


def from_score_notes(notes: np.ndarray, labels: np.ndarray, resolution: int,
                     markings: np.ndarray | None = None, sort: bool = True) -> np.ndarray:
    """Rows of bridge notes (ticks at ``resolution``), sorted by (onset, part, pitch) unless ``sort``
    is False. Without ``markings`` (a MIDI file) all are at the default dynamic with their own
    velocities; ``markings`` (n, 3) uint8 rows of (dynamic level, hairpin + 1, mark bits), as a score
    read by ``read_marked`` has them (``markings_of``), set those and the level's velocity."""
    out = np.zeros(len(notes), MARKED_DTYPE)
    out["part"], out["pitch"], out["velocity"] = labels, notes["pitch"], notes["velocity"]
    out["onset_beats"] = notes["time"] / resolution
    out["duration_beats"] = notes["duration"] / resolution
    out["dynamic"] = DEFAULT_DYNAMIC
    if markings is not None:
        check_markings(markings, len(notes))
        out["dynamic"], out["marks"] = markings[:, 0], markings[:, 2]
        out["hairpin"] = markings[:, 1].astype(np.int8) - 1
        out["velocity"] = LEVEL_VELOCITY[out["dynamic"]]
    return out[np.lexsort((out["pitch"], out["part"], out["onset_beats"]))] if sort else out


def markings_of(notes: np.ndarray) -> np.ndarray:
    """(n, 3) uint8 rows of (dynamic level, hairpin + 1, mark bits): a request's ``markings`` frame."""
    return np.stack([notes["dynamic"], (notes["hairpin"] + 1).astype(np.uint8), notes["marks"]],
                    axis=1).astype(np.uint8)


def check_markings(markings: np.ndarray, n_notes: int) -> None:
    """A ValueError saying what is wrong with a markings array for ``n_notes`` notes."""
    if markings.shape != (n_notes, 3):
        raise ValueError(f"markings must be one row of (dynamic, hairpin + 1, marks) per note: "
                         f"({n_notes}, 3), got {markings.shape}")
    if len(markings) and (markings[:, 0].max() >= len(DYNAMIC_NAMES) or markings[:, 1].max() > 2
                          or markings[:, 2].max() >= 1 << MARK_BITS):
        raise ValueError(f"markings hold dynamic levels 0..{len(DYNAMIC_NAMES) - 1} "
                         f"({', '.join(DYNAMIC_NAMES)}), hairpins 0..2 (diminuendo, none, crescendo) "
                         f"and mark bits below {1 << MARK_BITS}")


# A performance of the markings without a performer's freedoms: no rubato, timing noise, melody
# lead, ritardando, held fermatas or velocity noise, so every note starts where the score puts it;
# the dynamics, accents and hairpins set the velocities and the articulations the lengths.
PLAIN = Style(tempo_scale=1.0, rubato_depth=0.0, jitter_ms=0.0, melody_lead_ms=0.0, fermata_hold=1.0,
              ritardando=0.0, velocity_jitter=0.0)


def play_plainly(notes: np.ndarray, qpm: float) -> np.ndarray:
    """``realise`` with the ``PLAIN`` style: PERFORMED_DTYPE rows in the notes' order, each starting at
    its score time."""
    return realise(notes, qpm, PLAIN, seed=0)[0]


def tempo_map(notes: np.ndarray, qpm: float, style: Style, gen: np.random.Generator,
              grid: float = 1 / 24) -> tuple[np.ndarray, np.ndarray]:
    """Performed seconds at each beat of a grid (``grid`` beats apart): the score's tempo scaled by
    the performer's, a slow random rubato, a ritardando into each fermata and the fermata held.
    Returns (beats, seconds), both (G,)."""
    end = float((notes["onset_beats"] + notes["duration_beats"]).max()) if len(notes) else 0.0
    beats = np.arange(0.0, end + 4.0, grid)
    spb = np.full(len(beats), 60.0 / (qpm * style.tempo_scale))  # seconds per beat
    # rubato: a few slow sinusoids of random phase, periods of 4..16 beats
    rubato = np.zeros(len(beats))
    for _ in range(3):
        period = gen.uniform(4, 16)
        rubato += np.sin(2 * np.pi * beats / period + gen.uniform(0, 2 * np.pi))
    spb *= 1 + style.rubato_depth * rubato / 3
    for onset, length in {(float(n["onset_beats"]), float(n["duration_beats"]))
                          for n in notes[(notes["marks"] & FERMATA) > 0]}:
        before = (beats >= onset - 2) & (beats < onset)
        spb[before] *= 1 + style.ritardando * (beats[before] - (onset - 2)) / 2
        spb[(beats >= onset) & (beats < onset + length)] *= style.fermata_hold
    seconds = np.concatenate([[0.0], np.cumsum(spb[:-1] * grid)])
    return beats, seconds


def score_seconds(beats: np.ndarray, qpm: float) -> np.ndarray:
    return np.asarray(beats, np.float64) * 60.0 / qpm


def realise(notes: np.ndarray, qpm: float, style: Style, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Perform marked notes: rows of ``PERFORMED_DTYPE`` (same order) and, per part, a CC11 curve
    as (K, 2) float arrays of (seconds, value 0..127), changes only."""
    gen = np.random.default_rng(seed)
    grid_beats, grid_s = tempo_map(notes, qpm, style, gen)
    out = np.zeros(len(notes), PERFORMED_DTYPE)
    for name in MARKED_DTYPE.names:
        out[name] = notes[name]
    start = np.interp(notes["onset_beats"], grid_beats, grid_s)
    end = np.interp(notes["onset_beats"] + notes["duration_beats"], grid_beats, grid_s)
    top = notes["part"] == (notes["part"].min() if len(notes) else 0)
    onset = start + gen.normal(0, style.jitter_ms / 1000, len(notes)) - top * style.melody_lead_ms / 1000
    marks = notes["marks"]
    share = np.where(marks & STACCATO, style.staccato, np.where(marks & TENUTO, style.tenuto, style.detache))
    duration = (end - start) * share
    legato = ((marks & SLUR) > 0) & ((marks & SLUR_END) == 0) & ((marks & STACCATO) == 0)
    duration = np.where(legato, end - start + style.legato_overlap_s, duration)
    duration = np.where(marks & FERMATA, end - start, duration)  # held out to its (stretched) end
    onset -= min(0.0, float(onset.min())) if len(onset) else 0.0  # nothing before time zero
    out["score_onset_s"] = score_seconds(notes["onset_beats"], qpm)
    out["score_duration_s"] = score_seconds(notes["duration_beats"], qpm)
    out["onset_s"] = onset
    out["duration_s"] = np.maximum(duration, MIN_DURATION_S)
    level = notes["dynamic"].astype(np.float64) + notes["hairpin"] * hairpin_progress(notes) * 0.5
    velocity = np.interp(level, np.arange(len(LEVEL_VELOCITY)), LEVEL_VELOCITY)
    velocity += np.where(marks & MARCATO, MARCATO_VELOCITY, np.where(marks & ACCENT, ACCENT_VELOCITY, 0.0))
    velocity += gen.normal(0, style.velocity_jitter, len(notes))
    out["performed_velocity"] = np.clip(np.round(velocity), 1, 127)
    n_parts = int(notes["part"].max()) + 1 if len(notes) else 0
    return out, [_cc11_curve(out[out["part"] == p]) for p in range(n_parts)]


def hairpin_progress(notes: np.ndarray) -> np.ndarray:
    """0..1: how far each note is through its part's run of notes under one hairpin."""
    progress = np.zeros(len(notes))
    for p in np.unique(notes["part"]):
        idx = np.flatnonzero(notes["part"] == p)
        run: list[int] = []
        for i in [*idx, -1]:
            same = not run or notes["hairpin"][run[-1]] == notes["hairpin"][i]
            if i >= 0 and notes["hairpin"][i] != 0 and same:
                run.append(i)
                continue
            if run:
                t = notes["onset_beats"][run]
                span = max(float(t[-1] - t[0]), 1e-9)
                progress[run] = (t - t[0]) / span
            run = [i] if i >= 0 and notes["hairpin"][i] != 0 else []
    return progress


def _cc11_curve(part: np.ndarray) -> np.ndarray:
    """CC11 of one part: CC11_BASE at a steady dynamic, ramping by up to ±CC11_PER_LEVEL through a
    hairpin (one level's worth; velocity carries the rest), sampled every CC11_STEP_S."""
    points = [(0.0, float(CC11_BASE))]
    hp = part[part["hairpin"] != 0]
    if len(hp):
        progress = hairpin_progress(part)[part["hairpin"] != 0]
        end_s = float((hp["onset_s"] + hp["duration_s"]).max())
        t = np.arange(float(hp["onset_s"].min()), end_s, CC11_STEP_S)
        order = np.argsort(hp["onset_s"])
        ramp = np.interp(t, hp["onset_s"][order], (hp["hairpin"] * progress)[order])
        points += list(zip(t.tolist(), (CC11_BASE + CC11_PER_LEVEL * ramp).tolist()))
        points.append((float(t[-1]) + CC11_STEP_S if len(t) else 0.0, float(CC11_BASE)))
    curve = np.array(points, np.float64)
    curve[:, 1] = np.clip(np.round(curve[:, 1]), 0, 127)
    keep = np.concatenate([[True], np.diff(curve[:, 1]) != 0])
    return curve[keep]

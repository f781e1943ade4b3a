"""Notation formats read through music21: MusicXML, compressed MXL, Humdrum (**kern) and ABC.

music21 is imported lazily: it takes about a second to import and MIDI-only users never need it.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from bridge.score import (
    BAR_DTYPE,
    DEFAULT_RESOLUTION,
    KEY_DTYPE,
    METER_DTYPE,
    TEMPO_DTYPE,
    Score,
    ScoreReadError,
    Track,
    make_notes,
    sort_order,
)


def _gm_program(part) -> int:
    inst = part.getInstrument(returnDefault=True)
    program = getattr(inst, "midiProgram", None)
    return int(program) if program is not None and 0 <= int(program) <= 127 else 0


def _tune_label(number, title, i: int) -> str:
    name = title or "untitled"
    return f"{i + 1} (X:{number} {name!r})" if number is not None else f"{i + 1} ({name!r})"


def choose_tune(titles: list, numbers: list, tune: str | int | None) -> tuple[int, str]:
    """The place (from 0) of the tune of a collection that ``tune`` names (its place from 1, or a
    title or part of one, case-insensitive; None: the first), given each tune's title and X:
    number (None where it has none), and a sentence that says which was used."""
    if tune is None:
        chosen = 0
    elif str(tune).isdigit():
        chosen = int(tune) - 1
        if not 0 <= chosen < len(titles):
            raise ScoreReadError(f"--tune {tune}: the file holds {len(titles)} tunes; give 1..{len(titles)} "
                                 "or a title")
    else:
        found = [i for i, t in enumerate(titles) if str(tune).lower() in (t or "").lower()]
        if not found:
            raise ScoreReadError(f"--tune {tune!r}: no tune's title contains it; the first titles are "
                                 f"{', '.join(repr(t or '') for t in titles[:5])}")
        chosen = found[0]
    used = _tune_label(numbers[chosen], titles[chosen], chosen)
    return chosen, (f"the file holds {len(titles)} tunes; used tune {used}; pick another with "
                    f"--tune N (1..{len(titles)}) or --tune TITLE")


def _abc_tune(path: Path, tune: str | int | None) -> tuple[str, str] | None:
    """The text of the one tune of an ABC collection that ``tune`` picks (after the file's header,
    which holds defaults for every tune) and the sentence that says which, so that music21 parses
    one tune rather than all of them (a 313-tune opus takes seconds). None where the file is one
    piece: a single tune, voices written tune by tune under one title, or text it cannot split."""
    try:
        text = path.read_text(encoding="utf-8")  # as music21 reads ABC
    except (OSError, UnicodeDecodeError):
        return None
    starts = [m.start() for m in re.finditer(r"^X:", text, re.M)]
    if len(starts) < 2:
        return None
    chunks = [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)])]
    heads = [(re.match(r"X:[ \t]*(\S*)", c), re.search(r"^T:(.*)$", c, re.M)) for c in chunks]
    numbers = [x.group(1) or None for x, _ in heads]
    titles = [t.group(1).strip() or None if t else None for _, t in heads]
    if len(set(titles)) == 1 and None not in titles:
        return None  # one piece written voice by voice: from_music21 joins its voices
    chosen, said = choose_tune(titles, numbers, tune)
    return text[:starts[0]] + chunks[chosen], said


def _pitch_ties(el) -> list[tuple[int, str | None]]:
    """Each MIDI pitch of a note or chord with its tie type (start, continue, stop or None)."""
    if el.isChord:
        return [(int(n.pitch.midi), n.tie.type if n.tie is not None else None) for n in el.notes]
    return [(int(el.pitch.midi), el.tie.type if el.tie is not None else None)]


def from_music21(stream, resolution: int = DEFAULT_RESOLUTION, title: str = "",
                 tune: str | int | None = None, keep_zero_length: bool = False) -> Score:
    """Convert a music21 Score (or Opus) into a ``Score``.

    Ties are merged into single notes, chords become one note per pitch, grace notes (no length
    in the notated rhythm) are kept as notes of duration 0 at the onset of the note they lead to
    with ``keep_zero_length``, else left out and counted in ``Score.remarks``; every part becomes
    one track named after ``partName``. An Opus whose scores all share one title is one piece
    written voice by voice (ABC files of polyphony put each voice in its own tune, named by its
    second title): its voices become the tracks. Any other Opus is a collection of pieces:
    ``tune`` picks one (see ``choose_tune``), the first by default, and a remark says which.
    Parts that have as many bars share their bar lines (see ``_place_bars``): bars music21 put out
    of line are moved in ``stream`` itself.
    """
    from music21 import key as m21key
    from music21 import meter, tempo
    from music21 import stream as m21stream

    names: list[str] = []
    remarks: list[str] = []
    if isinstance(stream, m21stream.Opus):
        scores = list(stream.scores)
        if not scores:
            raise ScoreReadError("the file holds an empty collection of scores")
        titles = {sc.metadata.title if sc.metadata is not None else None for sc in scores}
        if len(scores) > 1 and len(titles) == 1 and None not in titles:
            parts = [p for sc in scores for p in (sc.parts if len(sc.parts) else [sc])]
            names = [getattr(sc.metadata, "alternativeTitle", None) or "" for sc in scores
                     for _ in (sc.parts if len(sc.parts) else [sc])]
            stream = scores[0]
        elif len(scores) > 1:
            titles = [sc.metadata.title if sc.metadata is not None else None for sc in scores]
            chosen, said = choose_tune(titles, [getattr(sc.metadata, "number", None) for sc in scores], tune)
            stream = scores[chosen]
            remarks.append(said)
        else:
            stream = scores[0]
    if not names:
        parts = list(stream.parts) if hasattr(stream, "parts") and len(stream.parts) else [stream]
    bars = _place_bars(parts, resolution)
    stream.coreElementsChanged()  # its flat view (tempos, meters, keys) as the bars now stand
    tracks = []
    graces = reordered = 0
    for i, part in enumerate(parts):
        times, pitches, durations, velocities = [], [], [], []
        tied: dict[int, list[int]] = {}  # pitch -> notes a tie leads on from, by index
        for el in part.flatten().notes:
            duration = int(round(float(el.duration.quarterLength) * resolution))
            if duration <= 0 and not keep_zero_length:
                graces += len(el.pitches)  # grace notes carry no time in the notated rhythm
                continue
            onset = int(round(float(el.offset) * resolution))
            velocity = int(np.clip(el.volume.velocity if el.volume.velocity is not None else 64, 1, 127))
            for pitch, tie in _pitch_ties(el):
                # a tie continues the open note of its pitch that ends where it starts, whatever
                # voice each is in (music21's stripTies loses ties across bars in multi-voice parts)
                into = next((j for j in tied.get(pitch, ()) if times[j] + durations[j] == onset), None) \
                    if tie in ("stop", "continue") else None
                if into is None:
                    into = len(times)
                    times.append(onset)
                    pitches.append(pitch)
                    durations.append(duration)
                    velocities.append(velocity)
                else:
                    durations[into] += duration
                    tied[pitch].remove(into)
                if tie in ("start", "continue"):
                    tied.setdefault(pitch, []).append(into)
        notes = make_notes(times, pitches, durations, velocities)
        reordered += _grace_runs_reordered(notes)
        notes = notes[sort_order(notes)]
        name = ((names[i] if names else "") or part.partName
                or (part.id if isinstance(part.id, str) else "") or f"Part {i + 1}")
        tracks.append(Track(name=str(name), program=_gm_program(part), notes=notes))

    flat = stream.flatten()
    tempos = [(int(round(float(m.offset) * resolution)), float(m.getQuarterBPM()))
              for m in flat.getElementsByClass(tempo.MetronomeMark) if m.number is not None]
    meters = [(int(round(float(m.offset) * resolution)), m.numerator, m.denominator)
              for m in flat.getElementsByClass(meter.TimeSignature)]
    keys = [(int(round(float(k.offset) * resolution)), int(k.sharps), int(getattr(k, "mode", "") == "minor"))
            for k in flat.getElementsByClass(m21key.KeySignature)]
    meta_title = composer = ""
    if stream.metadata is not None:
        meta_title = stream.metadata.title or stream.metadata.movementName or ""
        composer = stream.metadata.composer or ""
    if graces:
        remarks.append(f"{graces} grace notes are left out: they have no length in the notated rhythm")
    if reordered:
        remarks.append(f"{reordered} runs of two or more grace notes before one note come out lowest first, "
                       "not in the file's order: notes at one onset are kept in pitch order")
    return Score(
        resolution=resolution,
        tracks=tracks,
        tempos=_dedup(np.array(tempos, TEMPO_DTYPE)),
        meters=_dedup(np.array(meters, METER_DTYPE)),
        keys=_dedup(np.array(keys, KEY_DTYPE)),
        # music21 names an untitled file after itself ("bwv103.6.mxl"): then the stem is the title
        title=title if not meta_title or Path(str(meta_title)).stem == title else str(meta_title),
        composer=str(composer),
        remarks=remarks,
        bars=bars,
    )


def _grace_runs_reordered(notes: np.ndarray) -> int:
    """How many runs of grace notes (duration 0, one onset, in file order) are not lowest first."""
    graces = notes[notes["duration"] == 0]
    return sum(bool((np.diff(graces["pitch"][graces["time"] == t].astype(int)) < 0).any())
               for t in np.unique(graces["time"]))


def _place_bars(parts: list, resolution: int) -> np.ndarray:
    """The score's bars as the file has them (empty if it has none): a pickup, bars split at a
    repeat or a phrase end, and their numbers come out as they went in. Bars music21 put in the
    wrong place are moved (in place, every element of the bar with it).

    A MusicXML score's parts share their bars: bar k starts at one time in every part, and lasts as
    long as the longest part's bar k (a part whose bar holds less than the others, such as the
    second violin's bar 14 in Haydn op. 74/1 ii, one eighth short in 3/8, has a rest missing, not
    its later bars early). music21 reads each part on its own and starts its next bar where the
    last one's notes, rests or markings end. Markings end it too late: MusicXML's ``<offset>`` in a
    ``<direction>`` shows a marking (words, a metronome mark) off its place without moving it, and
    music21 puts it there, so one past the bar's notes makes the bar that much longer in one part
    (Weber's Clarinet Concertino: its piano's first bar an eighth of a quarter long, where a tempo
    mark is shown; Beethoven op. 59/1 ii: "cresc." past bar 469 in the first violin). A part's bar
    is as long as its notes and rests (one with none keeps music21's length); one overfull by its
    notes is kept or cut to its meter by music21's own rule. Parts of unlike bar counts (voices
    of an ABC tune) are each placed on their own and the bars are the first part's."""
    measures = [list(part.getElementsByClass("Measure")) for part in parts]
    placed = [_bar_lengths(ms) for ms in measures]
    if len({len(ms) for ms in measures}) == 1 and len(measures[0]):  # one bar line for every part
        lengths, steps = (np.max([x[j] for x in placed], axis=0) for j in (0, 1))
        placed = [(lengths, steps)] * len(parts)
    for ms, (_, steps) in zip(measures, placed):
        starts = float(ms[0].offset) + np.concatenate([[0.0], np.cumsum(steps[:-1])]) if ms else []
        for m, start in zip(ms, starts):
            if abs(float(m.offset) - start) > 1e-6:
                m.activeSite.setElementOffset(m, float(start))
        if ms:
            ms[0].activeSite.coreElementsChanged()
    bars = [(round(float(m.offset) * resolution), round(float(length) * resolution), int(m.number))
            for m, length in zip(measures[0], placed[0][0])]
    return np.array(bars, BAR_DTYPE)


def _bar_lengths(measures: list) -> tuple[np.ndarray, np.ndarray]:
    """Each bar's length in quarters by its notes and rests, and how far on (by music21's rule)
    the part's next bar starts."""
    from music21 import meter

    lengths, steps, whole = [], [], 4.0
    for i, m in enumerate(measures):
        signature = next(iter(m.getElementsByClass(meter.TimeSignature)), None)
        whole = float(signature.barDuration.quarterLength) if signature is not None else whole
        highest = float(m.highestTime)
        ends = [float(el.getOffsetInHierarchy(m) + el.quarterLength) for el in m.recurse().notesAndRests]
        length = max(ends, default=highest)
        if length < highest - 1e-6:  # a marking past the notes made the bar longer: music21's rule
            # for how far an overfull bar moves the next one, applied to the notes' own length
            step = whole if length > whole and not _round_excess(length - whole) else length
        else:
            length = highest
            step = float(measures[i + 1].offset - m.offset) if i + 1 < len(measures) else highest
        lengths.append(length)
        steps.append(step)
    return np.array(lengths), np.array(steps)


def _round_excess(excess: float) -> bool:
    """music21's test (in its MusicXML reader) that a bar overfull by ``excess`` quarters is meant
    so: over an eighth, or a whole number of sixty-fourths or triplet thirty-seconds."""
    from music21.common.numberTools import nearestMultiple

    return excess > 0.5 or any(nearestMultiple(excess, unit)[1] < 1e-6 for unit in (0.0625, 1 / 12))


def _dedup(a: np.ndarray) -> np.ndarray:
    """One event per tick (parts repeat the same meter and key); keep the first."""
    if len(a) == 0:
        return a
    a = a[np.argsort(a["time"], kind="stable")]
    _, first = np.unique(a["time"], return_index=True)
    return a[first]


FORMAT_NAMES = {".abc": "ABC", ".krn": "Humdrum (**kern)", ".mxl": "compressed MusicXML",
                ".xml": "MusicXML", ".musicxml": "MusicXML"}


def read_notation(path: str | os.PathLike, resolution: int = DEFAULT_RESOLUTION,
                  tune: str | int | None = None, keep_zero_length: bool = False) -> Score:
    """Read MusicXML, MXL, Humdrum or ABC (``tune``: which piece of a collection; grace notes: see
    ``from_music21``). Raises ``ScoreReadError`` with the reason, in the format's own terms, on
    failure."""
    from music21 import converter

    path = Path(path)
    fmt = FORMAT_NAMES.get(path.suffix.lower(), "notation")
    one = _abc_tune(path, tune) if fmt == "ABC" else None
    try:
        stream = converter.parse(one[0], format="abc") if one else converter.parse(str(path))
    except Exception as exc:  # music21 raises many unrelated types for a bad file
        raise ScoreReadError(f"could not parse {path.name} as {fmt}: {_reason(exc, fmt)}") from exc
    score = from_music21(stream, resolution, title=path.stem, tune=tune, keep_zero_length=keep_zero_length)
    if one:
        score.remarks.insert(0, one[1])
    if score.n_notes == 0:
        raise ScoreReadError(f"{path.name} holds no notes that {fmt} reading found; check that it is "
                             f"{fmt} with notes in it")
    return score


def _reason(exc: Exception, fmt: str) -> str:
    """music21's complaint as a sentence about the file, without its internals."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if "<music21" in text or "music21." in text:  # its own objects: keep the first clause only
        text = re.split(r"[.;:]\s|<music21", text)[0].strip() or "music21 could not read it"
    if fmt == "ABC":
        return (f"{text[:160]}. An ABC tune starts with X:, then T: (title), M: (meter), L: (unit note "
                "length) and K: (key), then the notes")
    if fmt.startswith("Humdrum"):
        return (f"{text[:160]}. A Humdrum file has tab-separated spines that start with **kern and end "
                "with *-")
    return text[:200]


CLEF_NAMES = {"treble": "TrebleClef", "treble_8vb": "Treble8vbClef", "alto": "AltoClef", "tenor": "TenorClef",
              "bass": "BassClef", "bass_8vb": "Bass8vbClef", "percussion": "PercussionClef"}


def to_music21(score: Score):
    """A music21 Score with the input's key signatures, meters, tempo changes, title and composer,
    and per track its clef, transposition (written pitch, with MusicXML's ``transpose``) and its
    divisi notes marked "div." (where a part plays more notes at once than it can)."""
    from music21 import clef, expressions, instrument, interval, key, metadata, meter, note, tempo
    from music21 import stream as m21stream

    out = m21stream.Score()
    out.metadata = metadata.Metadata()
    out.metadata.title = score.title or ""
    if score.composer:
        out.metadata.composer = score.composer
    ticks = float(score.resolution)
    for i, track in enumerate(score.tracks):
        part = m21stream.Part()
        part.partName = track.name
        if track.is_drum:
            inst = instrument.UnpitchedPercussion()
            inst.midiChannel = 9
        else:
            inst = instrument.instrumentFromMidiProgram(track.program)
        inst.partName = track.name
        inst.partAbbreviation = track.name if len(track.name) <= 6 else track.name[:3] + "."
        if track.transposition:
            inst.transposition = interval.Interval(int(track.transposition))
        part.insert(0, inst)
        if track.clef in CLEF_NAMES:
            part.insert(0, getattr(clef, CLEF_NAMES[track.clef])())
        for k in score.keys:
            part.insert(float(k["time"]) / ticks, key.KeySignature(int(k["fifths"])))
        for m in score.meters:
            signature = f"{int(m['numerator'])}/{int(m['denominator'])}"
            part.insert(float(m["time"]) / ticks, meter.TimeSignature(signature))
        divisi = track.divisi if track.divisi is not None else np.zeros(len(track.notes), bool)
        marked = False
        for n, div in zip(track.notes, divisi):
            m = note.Note(_spelled(int(n["pitch"]), _fifths_at(score, int(n["time"]))))
            m.quarterLength = float(n["duration"]) / ticks
            if n["duration"] == 0:  # a note of no length: a grace note before what sounds there
                m = m.getGrace()
            m.volume.velocity = int(n["velocity"])
            if div and not marked:  # once at the start of each divisi passage
                part.insert(float(n["time"]) / ticks, expressions.TextExpression("div."))
            marked = bool(div)
            part.insert(float(n["time"]) / ticks, m)
        if i == 0:  # music21 writes the tempo marks that sit in a part, not those in the score
            for t in score.tempos:
                part.insert(float(t["time"]) / ticks, tempo.MetronomeMark(number=round(float(t["qpm"]), 2)))
        if len(score.bars):
            _into_bars(part, _bars_to_end(score), score.meters, ticks)
        out.insert(0, part)
    return out


def _bars_to_end(score: Score) -> np.ndarray:
    """The score's bars, and whole bars of its last meter after them while notes still sound (a
    track longer than the one the bars were read from)."""
    bars, end = list(score.bars.tolist()), score.end_tick()
    meters = score.meters
    while bars[-1][0] + bars[-1][1] < end:
        start = bars[-1][0] + bars[-1][1]
        at = np.searchsorted(meters["time"], start, side="right") - 1 if len(meters) else -1
        whole = (meters["numerator"][at] * 4 * score.resolution // meters["denominator"][at]
                 if at >= 0 else 4 * score.resolution)
        bars.append((start, int(whole), bars[-1][2] + 1))
    return np.array(bars, BAR_DTYPE)


def _into_bars(part, bars: np.ndarray, meters: np.ndarray, ticks: float) -> None:
    """Put a flat part's contents into the input's bars, a note that crosses a bar line tied over
    it. music21 alone bars a part by its meters from the first note, which moves every bar line of
    a piece that opens with a pickup and merges a bar split at a phrase end. A bar shorter than
    its meter's is padded on the left (a pickup, the second half of a split bar) or the right."""
    from music21 import note, stream

    starts, lengths = bars["time"] / ticks, bars["duration"] / ticks
    # each bar's whole length by its meter, from our own map (music21's context search is slow)
    at = np.searchsorted(meters["time"], bars["time"], side="right") - 1
    whole = np.where(at >= 0, meters["numerator"][at] * 4.0 / meters["denominator"][at], 4.0) \
        if len(meters) else np.full(len(bars), 4.0)
    elements = [(el, float(el.offset)) for el in part.elements]  # offsets go with the removal
    part.remove([el for el, _ in elements])
    measures = []
    for i, (start, number) in enumerate(zip(starts, bars["number"])):
        m = stream.Measure(number=int(number))
        if i and number == bars["number"][i - 1]:
            m.numberSuffix = chr(ord(measures[-1].numberSuffix or "`") + 1)  # 7, 7a, 7b
        part.insert(float(start), m)
        measures.append(m)
    last_end = np.zeros(len(measures))  # quarters into the bar: a note starting before overlaps
    overlaps = np.zeros(len(measures), bool)

    def put(i: int, offset: float, el) -> None:
        local = offset - float(starts[i])
        if isinstance(el, note.GeneralNote) and el.quarterLength > 0:  # a grace note overlaps nothing
            overlaps[i] |= local < last_end[i]
            last_end[i] = max(last_end[i], local + float(el.quarterLength))
        for at, piece in _within_meter(el, local, float(whole[i])):
            measures[i].insert(at, piece)

    for el, offset in elements:  # in time order
        i = max(int(np.searchsorted(starts, offset, side="right")) - 1, 0)
        while (isinstance(el, note.GeneralNote) and i + 1 < len(measures)
               and offset + float(el.quarterLength) > starts[i + 1]):
            head, el = el.splitAtQuarterLength(float(starts[i + 1]) - offset)  # tied across the bar line
            put(i, offset, head)
            i, offset = i + 1, float(starts[i + 1])
        put(i, offset, el)
    for i, m in enumerate(measures):
        if overlaps[i]:  # notes at once (a divisi): one voice each, as music21 does for a flat part
            m.makeVoices(inPlace=True, fillGaps=False)
        if lengths[i] > whole[i] and last_end[i] < lengths[i]:  # an overfull bar of the input (a
            # slip in its engraving): a rest to its end, else the bar ends with its last note and
            # every later note of the part moves
            rest = note.Rest(quarterLength=float(lengths[i] - last_end[i]))
            for at, piece in _within_meter(rest, float(last_end[i]), float(whole[i])):
                (m.voices[0] if m.hasVoices() else m).insert(at, piece)
        if lengths[i] < whole[i]:
            if i == 0 or lengths[i - 1] < whole[i - 1]:
                m.paddingLeft = float(whole[i] - lengths[i])
            else:
                m.paddingRight = float(whole[i] - lengths[i])


def _within_meter(el, local: float, whole: float) -> list[tuple[float, object]]:
    """A note or rest at ``local`` quarters into a bar, cut (tied) where it crosses a multiple of
    its meter's length ``whole``: music21's writer moves what a note holds past its meter's bar
    line into the next bar, which in a bar overfull in the input moves every later note."""
    from music21 import note

    pieces = []
    cut = (np.floor(local / whole + 1e-9) + 1) * whole
    while isinstance(el, note.GeneralNote) and cut < local + float(el.quarterLength) - 1e-9:
        head, el = el.splitAtQuarterLength(cut - local)
        pieces.append((local, head))
        local, cut = cut, cut + whole
    return pieces + [(local, el)]


def _fifths_at(score: Score, tick: int) -> int:
    if len(score.keys) == 0:
        return 0
    i = int(np.searchsorted(score.keys["time"], tick, side="right")) - 1
    return int(score.keys["fifths"][max(i, 0)])


def _spelled(midi: int, fifths: int):
    """A music21 Pitch for a MIDI number, with sharps in sharp keys and flats in flat keys, and no
    written natural on a plain note (music21 marks one by default)."""
    from music21 import pitch

    p = pitch.Pitch(midi=midi)
    if p.accidental is not None and p.accidental.name == "natural":
        p.accidental = None
    elif p.accidental is not None and (p.accidental.name == "flat") == (fifths >= 0):
        p = p.getEnharmonic()
    return p


def write_musicxml(score: Score, path: str | os.PathLike) -> None:
    """Write a score as MusicXML (``.musicxml``/``.xml``) or compressed MusicXML (``.mxl``), one
    part per track, quantised by music21; transposing parts are written at written pitch."""
    path = Path(path)
    out = to_music21(score)
    if any(t.transposition for t in score.tracks):
        out.atSoundingPitch = True  # what the notes are; music21 writes them at written pitch
        for part in out.parts:
            part.atSoundingPitch = True
        out = out.toWrittenPitch()
    fmt = "mxl" if path.suffix.lower() == ".mxl" else "musicxml"
    written = Path(out.write(fmt, fp=str(path)))
    if written != path:  # music21 may pick its own name; the caller asked for this one
        written.replace(path)

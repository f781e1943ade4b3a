"""Reading one score into the arrays of a composer training piece (``models.data.multitrack``'s
``MultiPiece``): instruments per track, bar lines, keys (the signature's, or an estimate), chords
(the corpus's roman-numeral analysis where there is one, identified elsewhere). ``convert_file`` is the
build's worker: one file (a folk collection: one piece per tune) in a subprocess."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bridge.chords import CHORD_DTYPE, chord_tone_ratio, identify_chords, quality_of
from bridge.notation import from_music21
from bridge.score import KEY_DTYPE, METER_DTYPE, Score
from models.data import RESOLUTION
from models.data.corpus import clean
from models.data.instruments import INSTRUMENTS, instrument_by_name, instrument_for

MIN_NOTES = 10  # a piece needs a track with more than this many notes
SCORE_SUFFIXES = (".mid", ".midi", ".mxl", ".xml", ".musicxml", ".krn", ".abc")
FOLK_DIRS = ("essenFolksong", "oneills1850", "ryansMammoth", "nottingham-dataset", "airdsAirs", "miscFolk")
# The instrument of an unnamed folk melody: the Essen collection is songs, the others fiddle tunes.
FOLK_INSTRUMENTS = {"essenFolksong": "voice"}
FOLK_DEFAULT = "violin"


# ---------------------------------------------------------------------------------------- keys

# Krumhansl-Kessler profiles, tonic first.
_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def _fifths_of(tonic: int, minor: bool) -> int:
    """Key signature (-6..5 fifths) of a tonic pitch class."""
    major_tonic = (tonic + 3) % 12 if minor else tonic
    return (major_tonic * 7 + 6) % 12 - 6


def estimate_key(notes: np.ndarray, fifths: int | None = None) -> tuple[int, int]:
    """(fifths, minor) by correlating the duration-weighted pitch-class profile with the major and
    minor profiles; with ``fifths`` given only the mode is chosen (relative major or minor)."""
    pcs = np.bincount(notes["pitch"] % 12, weights=notes["duration"], minlength=12).astype(float)
    best, choice = -np.inf, (0, 0)
    for tonic in range(12):
        for minor, profile in ((0, _MAJOR_PROFILE), (1, _MINOR_PROFILE)):
            if fifths is not None and _fifths_of(tonic, bool(minor)) != (fifths + 6) % 12 - 6:
                continue
            r = np.corrcoef(pcs, np.roll(profile, tonic))[0, 1] if pcs.std() > 0 else 0.0
            if r > best:
                best, choice = r, (_fifths_of(tonic, bool(minor)), minor)
    return choice if fifths is None else (fifths, choice[1])


# ---------------------------------------------------------------------------------- conversion

def bars_from_meters(meters: np.ndarray, end: int, resolution: int) -> np.ndarray:
    """Bar start ticks up to ``end`` following a meter map (first meter at 0)."""
    starts = []
    bounds = [*meters["time"].tolist()[1:], max(int(end), 1)]
    for m, stop in zip(meters, bounds):
        bar = max(1, int(m["numerator"]) * 4 * resolution // int(m["denominator"]))
        starts.extend(range(int(m["time"]), max(int(stop), int(m["time"]) + 1), bar))
    return np.unique(np.array(starts, np.int64))


def _roman_chords(path: Path) -> np.ndarray | None:
    """Chords of a roman-numeral analysis (.rntxt) beside a corpus file, or None."""
    from music21 import converter

    rows = []
    for rn in converter.parse(str(path)).flatten().getElementsByClass("RomanNumeral"):
        root = rn.root().pitchClass
        rows.append((round(float(rn.offset) * RESOLUTION), 0, root, quality_of(root, rn.pitchClasses),
                     rn.bass().pitchClass))
    if not rows:
        return None
    chords = np.array(rows, CHORD_DTYPE)
    return chords[np.argsort(chords["time"], kind="stable")]


def _analysis_file(path: Path) -> Path | None:
    """The corpus's roman-numeral analysis of a score, where it has one."""
    if path.parent.name == "monteverdi":
        rn = path.with_suffix(".rntxt")
        return rn if rn.exists() else None
    if path.parent.name == "bach":
        return _bach_analyses().get(path.stem)
    return None


_BACH_ANALYSES: dict[str, Path] | None = None


def _bach_analyses() -> dict[str, Path]:
    """"bwv269" -> its Riemenschneider analysis file (music21 numbers the analyses that way)."""
    global _BACH_ANALYSES
    if _BACH_ANALYSES is None:
        import music21
        from music21.corpus import chorales

        folder = Path(music21.__file__).parent / "corpus" / "bach" / "choraleAnalyses"
        by_number = chorales.ChoraleList().byRiemenschneider
        _BACH_ANALYSES = {}
        for f in folder.glob("riemenschneider*.rntxt"):
            entry = by_number.get(int(f.stem.removeprefix("riemenschneider")))
            if entry:
                _BACH_ANALYSES[f"bwv{entry['bwv']}"] = f
    return _BACH_ANALYSES


def _cover(chords: np.ndarray, end: int) -> np.ndarray:
    """Chords made contiguous from 0 to ``end``: each lasts until the next; the first starts at 0."""
    chords = chords[chords["time"] < end].copy()
    chords["time"][0] = 0
    chords["duration"] = np.append(chords["time"][1:], end) - chords["time"]
    return chords[chords["duration"] > 0]


def piece_arrays(score: Score, vocal: bool, stream=None, analysis: Path | None = None,
                 default: str | None = None) -> dict | str:
    """The arrays of a MultiPiece from a ``Score`` (and the music21 stream it came from, for bar
    lines and key analysis), or a sentence saying why the score is unusable. ``default`` is the
    instrument of a track whose name says none (a folk collection's melodies)."""
    tracks = [t for t in score.tracks if len(t.notes)]
    if not tracks or max(len(t.notes) for t in tracks) <= MIN_NOTES:
        return f"no track with more than {MIN_NOTES} notes"
    notation = stream is not None
    instruments = [instrument_for(t.name, None if notation and t.program == 0 else t.program,
                                  is_drum=t.is_drum, median_pitch=float(np.median(t.notes["pitch"])),
                                  vocal=vocal)
                   if default is None or instrument_by_name(t.name) else default for t in tracks]
    programs = [INSTRUMENTS[i].program if notation else t.program for i, t in zip(instruments, tracks)]
    notes = np.concatenate([t.notes for t in tracks])
    labels = np.concatenate([np.full(len(t.notes), i, np.int64) for i, t in enumerate(tracks)])
    notes, labels = clean(notes, labels)
    if notes["time"].min() < 0:
        return "notes before the start of the piece"
    end = int((notes["time"] + notes["duration"]).max())
    pitched = notes[np.array([not tracks[i].is_drum for i in labels], bool)]

    meters = score.meters if len(score.meters) else np.array([(0, 4, 4)], METER_DTYPE)
    if meters["time"][0] != 0:
        first = (0, int(meters["numerator"][0]), int(meters["denominator"][0]))
        meters = np.concatenate([np.array([first], METER_DTYPE), meters])
    bars = None
    if notation and hasattr(stream, "parts") and len(stream.parts):
        offsets = [round(float(m.offset) * RESOLUTION) for m in stream.parts[0].getElementsByClass("Measure")]
        bars = np.unique(np.array(offsets, np.int64)) if offsets else None
    if bars is None or not len(bars) or bars[0] != 0:
        bars = bars_from_meters(meters, end, RESOLUTION)

    keys = score.keys
    if len(keys) and len(pitched):
        keys = keys.copy()
        if notation and not stream.flatten().getElementsByClass("Key"):  # signature without a mode
            keys["minor"] = [estimate_key(pitched, int(f))[1] for f in keys["fifths"]]
    elif notation and len(pitched):
        k = stream.analyze("key")
        keys = np.array([(0, k.sharps, int(k.mode == "minor"))], KEY_DTYPE)
    else:
        keys = np.array([(0, *estimate_key(pitched))] if len(pitched) else [(0, 0, 0)], KEY_DTYPE)
    keys["time"][0] = 0

    chords, chord_source = None, "identified"
    if analysis is not None and len(pitched):
        chords = _roman_chords(analysis)
        # an analysis that does not line up with the score (another edition's bars) is not used
        if chords is not None and chord_tone_ratio(pitched, _cover(chords, end)) >= 0.6:
            chord_source = "analysis"
        else:
            chords = None
    if chords is None:
        # a lone melody outlines its harmony over a bar, not a beat (a beat holds one or two notes)
        bar_ticks = int(meters["numerator"][0]) * 4 * RESOLUTION // int(meters["denominator"][0])
        step = bar_ticks if sum(not t.is_drum for t in tracks) == 1 else None
        chords = identify_chords(pitched, RESOLUTION, end, step_ticks=step)
    return {
        "notes": notes, "track": labels.astype(np.int16), "instruments": instruments, "programs": programs,
        "meters": meters, "keys": keys, "chords": _cover(chords, end), "bar_starts": bars,
        "qpm": score.qpm_at(0), "seconds": score.seconds(), "chord_source": chord_source,
    }


def convert_file(args: tuple[str, str, bool]) -> list[tuple[str, dict | str]]:
    """Worker (a subprocess): one file -> [(piece name, arrays or why it was skipped)]. A folk
    collection file gives one piece per tune."""
    path, rel, vocal = args
    name = rel.rsplit(".", 1)[0]
    try:
        if path.lower().endswith((".mid", ".midi")):
            from bridge.midi import read_midi

            return [(name, piece_arrays(read_midi(path, resolution=RESOLUTION), vocal))]
        from music21 import converter
        from music21 import stream as m21stream

        parsed = converter.parse(path)
        analysis = _analysis_file(Path(path))
        folder = rel.split("/", 1)[0]
        default = FOLK_INSTRUMENTS.get(folder, FOLK_DEFAULT) if folder in FOLK_DIRS else None
        if isinstance(parsed, m21stream.Opus):
            scores = list(parsed.scores)
            titles = {sc.metadata.title if sc.metadata is not None else None for sc in scores}
            if len(scores) > 1 and (len(titles) > 1 or None in titles):  # a collection of tunes
                out = []
                for i, sc in enumerate(scores):
                    number = getattr(sc.metadata, "number", None) or i + 1
                    try:
                        out.append((f"{name}/{number}", piece_arrays(from_music21(sc, RESOLUTION), vocal, sc,
                                                                               default=default)))
                    except Exception as exc:  # one bad tune must not lose the collection
                        out.append((f"{name}/{number}", f"{type(exc).__name__}: {exc}"))
                return out
        # bridge.notation's reader: one bar line for every part, ties merged; an Opus of voices
        # (Josquin's ABC files) joined into one score
        score = from_music21(parsed, RESOLUTION, title=Path(path).stem)
        return [(name, piece_arrays(score, vocal, parsed, analysis, default))]
    except Exception as exc:  # one bad file must not stop a corpus build
        return [(name, f"{type(exc).__name__}: {exc}")]

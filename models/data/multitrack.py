"""The composer's training data: multitrack pieces with an instrument per track, meter, key,
chords and bar lines.

Built from the music21 corpus (``bach`` chorales, string ``quartets``, ``renaissance`` polyphony,
``folk`` tune collections as single melodies) or from any folder of MIDI/MusicXML (a Lakh-sized one
too: MIDI is read by the symusic reader, files are converted by parallel workers). A build writes
``$DEEP_MUSICIAN_DATA/multitrack/<set>/shard-NNNNN.npz`` every ``shard_files`` source files, so an
interrupted build resumes at the first file no shard holds. Splits are by work: the corpus sets
follow the committed lists (``models/data/split_lists``, the same works as the part-separation
sets), other files the hash rule of ``models.data.splits``; each build saves its lists as
``split.json`` beside the shards.

Chords are the corpus's roman-numeral analyses where it has one (20 Bach chorales, 48 Monteverdi
madrigals) and ``bridge.chords.identify_chords`` elsewhere. Keys are the score's signature (mode
from the file, else the better-fitting of the relative major and minor), or music21's key analysis
for notation without a signature (a profile match for MIDI without one).
"""
from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bridge.chords import CHORD_DTYPE, CHORD_QUALITIES, chord_tone_ratio, identify_chords, quality_of
from bridge.score import KEY_DTYPE, METER_DTYPE, NOTE_DTYPE, Score
from models.data import RESOLUTION
from models.data.corpus import clean, data_dir
from models.data.instruments import INSTRUMENTS, instrument_by_name, instrument_for
from models.data.splits import SPLIT_NAMES, hash_split, load_split_file

__all__ = ["CHORD_DTYPE", "CHORD_QUALITIES", "MULTITRACK_SETS", "MultiPiece", "augmentations", "build",
           "load", "set_dir", "stats", "transpose"]

MIN_NOTES = 10  # a piece needs a track with more than this many notes
SCORE_SUFFIXES = (".mid", ".midi", ".mxl", ".xml", ".musicxml", ".krn", ".abc")
FOLK_DIRS = ("essenFolksong", "oneills1850", "ryansMammoth", "nottingham-dataset", "airdsAirs", "miscFolk")
# The instrument of an unnamed folk melody: the Essen collection is songs, the others fiddle tunes.
FOLK_INSTRUMENTS = {"essenFolksong": "voice"}
FOLK_DEFAULT = "violin"

# set -> (music21 corpus folders, vocal music, file suffixes)
MULTITRACK_SETS = {
    "bach": (("bach",), True, (".mxl", ".xml")),
    "quartets": (("haydn", "mozart", "beethoven"), False, (".mxl", ".xml")),
    "renaissance": (("palestrina", "monteverdi", "trecento", "josquin", "ciconia", "luca"), True,
                    (".mxl", ".xml", ".krn", ".abc")),
    "folk": (FOLK_DIRS, False, (".abc",)),
}


@dataclass
class MultiPiece:
    name: str  # work id like "bach/bwv66.6"; a user's file: its path relative to the folder
    split: str  # "train" | "valid" | "test", by work
    resolution: int  # ticks per quarter (models.data.RESOLUTION)
    notes: np.ndarray  # NOTE_DTYPE, sorted by (time, pitch)
    track: np.ndarray  # int16 index into ``instruments`` per note
    instruments: list[str]  # one INSTRUMENTS name per track
    programs: list[int]  # GM program per track
    meters: np.ndarray  # METER_DTYPE, the first at time 0
    keys: np.ndarray  # KEY_DTYPE, the first at time 0
    chords: np.ndarray  # CHORD_DTYPE covering 0 .. the last note's end without gaps
    bar_starts: np.ndarray  # int64 tick of each bar (a pickup bar starts at 0, the next bar after it)
    qpm: float


def set_dir(set_name: str) -> Path:
    return data_dir() / "multitrack" / set_name


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
        chords = identify_chords(pitched, RESOLUTION, end)
    return {
        "notes": notes, "track": labels.astype(np.int16), "instruments": instruments, "programs": programs,
        "meters": meters, "keys": keys, "chords": _cover(chords, end), "bar_starts": bars,
        "qpm": score.qpm_at(0), "seconds": score.seconds(), "chord_source": chord_source,
    }


def _convert(args: tuple[str, str, bool]) -> list[tuple[str, dict | str]]:
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

        from bridge.notation import from_music21

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
        score = from_music21(parsed, RESOLUTION, title=Path(path).stem)
        return [(name, piece_arrays(score, vocal, parsed, analysis, default))]
    except Exception as exc:  # one bad file must not stop a corpus build
        return [(name, f"{type(exc).__name__}: {exc}")]


# --------------------------------------------------------------------------------- build, load

def source_files(set_name: str, source: str | os.PathLike | None) -> list[tuple[str, str]]:
    """(absolute path, relative name) of every file a build converts, sorted by name."""
    if source is None:
        if set_name not in MULTITRACK_SETS:
            raise ValueError(f"unknown corpus set {set_name!r}; choose one of {', '.join(MULTITRACK_SETS)} "
                             "or pass a folder with --source")
        import music21

        folders, _, suffixes = MULTITRACK_SETS[set_name]
        root = Path(music21.__file__).parent / "corpus"
        paths = [p for f in folders for p in (root / f).rglob("*") if p.suffix.lower() in suffixes]
        paths = [p for p in paths if not p.name.startswith("test") and "choraleAnalyses" not in p.parts]
    else:
        root = Path(source)
        if not root.is_dir():
            raise ValueError(f"--source {root} is not a folder; give a folder of MIDI or MusicXML files")
        paths = [p for p in root.rglob("*") if p.suffix.lower() in SCORE_SUFFIXES and p.is_file()]
        if not paths:
            raise ValueError(f"no MIDI or MusicXML files under {root}; supported suffixes are "
                             f"{', '.join(SCORE_SUFFIXES)}")
    return sorted((str(p), p.relative_to(root).as_posix()) for p in paths)


def _write_shard(path: Path, pieces: list[tuple[str, str, str, dict]], files: list[str]) -> None:
    """One shard: the pieces' arrays concatenated with offsets, and a JSON header (no pickles)."""
    def cat(key: str, dtype) -> tuple[np.ndarray, np.ndarray]:
        arrays = [p[3][key] for p in pieces]
        lengths = [len(a) for a in arrays]
        return (np.concatenate(arrays) if arrays else np.zeros(0, dtype)), np.cumsum([0, *lengths])

    arrays = {}
    for key, dtype in (("notes", NOTE_DTYPE), ("track", np.int16), ("meters", METER_DTYPE),
                       ("keys", KEY_DTYPE), ("chords", CHORD_DTYPE), ("bar_starts", np.int64)):
        arrays[key], arrays[f"{key}_offsets"] = cat(key, dtype)
    header = {"resolution": RESOLUTION, "files": files, "pieces": [
        {"name": name, "split": split, "source": rel, "instruments": a["instruments"],
         "programs": [int(p) for p in a["programs"]], "qpm": float(a["qpm"]), "seconds": float(a["seconds"]),
         "chord_source": a["chord_source"]} for name, split, rel, a in pieces]}
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, header=np.array(json.dumps(header)), **arrays)
    tmp.replace(path)  # a shard is there whole or not at all


def _shard_headers(folder: Path) -> list[tuple[Path, dict]]:
    out = []
    for shard in sorted(folder.glob("shard-*.npz")):
        if shard.name.endswith(".tmp.npz"):
            continue
        with np.load(shard) as z:
            out.append((shard, json.loads(str(z["header"]))))
    return out


def build(set_name: str, source: str | os.PathLike | None = None, jobs: int = 2, limit: int | None = None,
          progress: bool = True, shard_files: int = 64) -> Path:
    """Convert a corpus set (``source=None``) or a folder into shards under ``set_dir(set_name)``;
    returns that folder. Resumable: files already in a shard are not converted again. Skipped
    files and why are in ``skipped.tsv`` there."""
    from tqdm import tqdm

    files = source_files(set_name, source)
    if limit:
        files = files[:limit]
    vocal = MULTITRACK_SETS[set_name][1] if source is None else False
    committed = load_split_file(set_name) if source is None else {}
    out = set_dir(set_name)
    out.mkdir(parents=True, exist_ok=True)
    headers = _shard_headers(out)
    done = {f for _, h in headers for f in h["files"]}
    todo = [(path, rel, vocal) for path, rel in files if rel not in done]
    next_shard = max((int(p.stem.split("-")[1]) for p, _ in headers), default=-1) + 1
    pending: list[tuple[str, str, str, dict]] = []
    pending_files: list[str] = []
    skipped: list[str] = []

    def flush() -> None:
        nonlocal next_shard
        if pending_files:
            _write_shard(out / f"shard-{next_shard:05d}.npz", pending, pending_files)
            with open(out / "skipped.tsv", "a") as f:
                f.writelines(f"{line}\n" for line in skipped)
            next_shard += 1
            pending.clear()
            pending_files.clear()
            skipped.clear()

    chunksize = 1 if source is None else 8  # corpus files are slow to parse; MIDI files fast
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        bar = tqdm(total=len(files), initial=len(files) - len(todo), desc=f"build {set_name} (multitrack)",
                   unit="file", disable=not progress)
        for (_, rel, _), results in zip(todo, pool.map(_convert, todo, chunksize=chunksize)):
            for name, arrays in results:
                if isinstance(arrays, str):
                    skipped.append(f"{name}\t{arrays}")
                else:
                    split = committed.get(rel) or hash_split(rel if name == rel.rsplit(".", 1)[0] else name)
                    pending.append((name, split, rel, arrays))
            pending_files.append(rel)
            bar.update()
            if len(pending_files) >= shard_files:
                flush()
        flush()
        bar.close()
    headers = _shard_headers(out)
    names = [(p["split"], p["name"]) for _, h in headers for p in h["pieces"]]
    lists = {s: sorted(n for split, n in names if split == s) for s in SPLIT_NAMES}
    if not any(lists.values()):
        raise ValueError(f"no usable piece in {set_name}; see {out / 'skipped.tsv'}")
    (out / "split.json").write_text(json.dumps(lists, indent=1) + "\n")
    return out


def resolve(set_name_or_path: str | os.PathLike) -> Path:
    p = Path(set_name_or_path)
    folder = p if p.is_dir() else set_dir(str(set_name_or_path))
    if not any(folder.glob("shard-*.npz")):
        raise FileNotFoundError(f"multitrack set {set_name_or_path!r} is not built at {folder}; run "
                                f"`deep-musician data build {set_name_or_path} --multitrack` first")
    return folder


def load(set_name_or_path: str | os.PathLike, split: str | None = None) -> list[MultiPiece]:
    """Pieces of a built multitrack set (a set name or its folder), sorted by name; optionally one
    split."""
    if split is not None and split not in SPLIT_NAMES:
        raise ValueError(f"split must be one of {', '.join(SPLIT_NAMES)}, got {split!r}")
    pieces = []
    for shard, header in _shard_headers(resolve(set_name_or_path)):
        with np.load(shard) as z:
            arrays = {k: z[k] for k in z.files if k != "header"}
        for i, p in enumerate(header["pieces"]):
            if split is not None and p["split"] != split:
                continue
            part = {key: arrays[key][arrays[f"{key}_offsets"][i]:arrays[f"{key}_offsets"][i + 1]]
                    for key in ("notes", "track", "meters", "keys", "chords", "bar_starts")}
            pieces.append(MultiPiece(
                p["name"], p["split"], header["resolution"], part["notes"], part["track"],
                list(p["instruments"]), list(p["programs"]), part["meters"], part["keys"], part["chords"],
                part["bar_starts"], p["qpm"]))
    return sorted(pieces, key=lambda p: p.name)


def stats(set_name_or_path: str | os.PathLike) -> dict:
    """Counts of a built set: pieces per split, notes, hours, tracks per piece, instruments, chord
    sources and qualities, meters."""
    folder = resolve(set_name_or_path)
    headers = [h for _, h in _shard_headers(folder)]
    meta = [p for h in headers for p in h["pieces"]]
    pieces = load(folder)
    skipped = (folder / "skipped.tsv").read_text().splitlines() if (folder / "skipped.tsv").exists() else []
    chords = np.concatenate([p.chords for p in pieces]) if pieces else np.zeros(0, CHORD_DTYPE)
    return {
        "pieces": len(pieces), "files": sum(len(h["files"]) for h in headers), "skipped": len(skipped),
        "split": dict(Counter(p.split for p in pieces)),
        "notes": int(sum(len(p.notes) for p in pieces)),
        "hours": sum(m["seconds"] for m in meta) / 3600,
        "tracks_per_piece": float(np.mean([len(p.instruments) for p in pieces])) if pieces else 0.0,
        "instruments": dict(Counter(i for p in pieces for i in p.instruments).most_common()),
        "chord_source": dict(Counter(m["chord_source"] for m in meta)),
        "chord_qualities": {CHORD_QUALITIES[q]: n
                            for q, n in Counter(chords["quality"].tolist()).most_common()},
        "meters": dict(Counter(f"{m['numerator']}/{m['denominator']}" for p in pieces for m in p.meters[:1])
                       .most_common(5)),
    }


# ------------------------------------------------------------------------------- augmentation

def transpose(piece: MultiPiece, semitones: int) -> MultiPiece | None:
    """The piece moved by ``semitones`` (keys and chords too; drums stay), or None where a note
    would leave MIDI 0..127 or its instrument's range (a track already outside the range may move
    back toward it, never further out)."""
    s = int(semitones)
    if s == 0:
        return piece
    notes = piece.notes.copy()
    pitch = notes["pitch"].astype(np.int64)
    for t, name in enumerate(piece.instruments):
        if name == "drums":
            continue
        mine = piece.track == t
        if not mine.any():
            continue
        inst = INSTRUMENTS[name]
        lo, hi = min(inst.low, int(pitch[mine].min())), max(inst.high, int(pitch[mine].max()))
        moved = pitch[mine] + s
        if moved.min() < max(lo, 0) or moved.max() > min(hi, 127):
            return None
        pitch[mine] = moved
    notes["pitch"] = pitch
    order = np.lexsort((piece.track, notes["duration"], notes["pitch"], notes["time"]))
    keys = piece.keys.copy()
    keys["fifths"] = (keys["fifths"] + 7 * s + 6) % 12 - 6
    chords = piece.chords.copy()
    chords["root"] = (chords["root"].astype(np.int64) + s) % 12
    chords["bass"] = (chords["bass"].astype(np.int64) + s) % 12
    return replace(piece, notes=notes[order], track=piece.track[order], keys=keys, chords=chords)


def augmentations(piece: MultiPiece, shifts=range(-5, 7)) -> Iterator[MultiPiece]:
    """Transpositions of a training piece that keep every instrument in range (the piece itself
    among them for shift 0); a valid or test piece yields only itself."""
    if piece.split != "train":
        yield piece
        return
    for s in shifts:
        moved = transpose(piece, s)
        if moved is not None:
            yield moved

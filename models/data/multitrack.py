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
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bridge.chords import CHORD_DTYPE, CHORD_QUALITIES
from bridge.score import KEY_DTYPE, METER_DTYPE, NOTE_DTYPE
from models.data import RESOLUTION, worker_pool
from models.data.corpus import data_dir
from models.data.instruments import INSTRUMENTS
from models.data.multitrack_read import FOLK_DIRS, SCORE_SUFFIXES, convert_file
from models.data.splits import SPLIT_NAMES, hash_split, load_split_file

__all__ = ["CHORD_DTYPE", "CHORD_QUALITIES", "MULTITRACK_SETS", "MultiPiece", "augmentations", "build",
           "load", "set_dir", "stats", "transpose"]

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
    with worker_pool(jobs) as pool:
        bar = tqdm(total=len(files), initial=len(files) - len(todo), desc=f"build {set_name} (multitrack)",
                   unit="file", disable=not progress)
        for (_, rel, _), results in zip(todo, pool.map(convert_file, todo, chunksize=chunksize)):
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
    # a folder of shards, else the built set of that name (a folder named like the set, such as the
    # --source it was built from in the working folder, is not the set)
    folder = p if p.is_dir() and any(p.glob("shard-*.npz")) else set_dir(str(set_name_or_path))
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

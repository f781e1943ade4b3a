"""Part-separation corpora: a note sequence per piece and the part each note belongs to.

Built from the music21 corpus (Bach chorales, string quartets, Renaissance polyphony) or from a
user's folder of MIDI/MusicXML files. Converted data stays on the user's machine
(``$DEEP_MUSICIAN_DATA``, default ``~/.cache/deep-musician/data``) and is never committed: the
corpus licences restrict redistribution. The split lists are committed (``models/data/split_lists``,
read by ``models.data.splits``) so every machine trains and tests on the same works.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bridge.score import NOTE_DTYPE, Score, tick_to_seconds
from models.data import RESOLUTION, worker_pool
from models.data.splits import (
    SPLIT_NAMES,
    corpus_work,
    hash_split,
    load_split_file,
    make_split,
    write_split_file,
)
from models.ensembles import get_ensemble

MIN_NOTES_PER_PART = 10

# set name -> (music21 composers, ensemble or None for voices ranked by pitch, file suffixes)
CORPUS_SETS = {
    "bach": (("bach",), "satb", (".mxl", ".xml")),
    "quartets": (("haydn", "mozart", "beethoven"), "string_quartet", (".mxl", ".xml")),
    "renaissance": (("palestrina", "monteverdi", "trecento", "josquin", "ciconia", "luca"), None,
                    (".mxl", ".xml", ".krn", ".abc")),
}
# sets whose committed split keeps every file of a work (``corpus_work``: a Mass's movements and
# halves, a madrigal's partes) in one split, made from every file of the set (usable or not) with
# this seed: picked among 300 by split sizes alone (five- and six-voice subsets near 8:1:1 too)
SPLIT_BY_WORK_SEED = {"renaissance": 121}
MAX_VOICES = 8  # Renaissance sets label voices by pitch rank, top voice first
# set name -> (built set it is taken from, number of voices, ensemble its labels are the parts of):
# the pieces of a pitch-ranked set with exactly that many voices, for a model with that many parts
VOICE_SETS = {
    "renaissance5": ("renaissance", 5, "five_voices"),
    "renaissance6": ("renaissance", 6, "six_voices"),
}


def data_dir() -> Path:
    return Path(os.environ.get("DEEP_MUSICIAN_DATA", "~/.cache/deep-musician/data")).expanduser()


@dataclass
class Piece:
    name: str
    split: str
    notes: np.ndarray  # NOTE_DTYPE, sorted by (onset, pitch, duration), RESOLUTION ticks/quarter
    labels: np.ndarray  # int64 part index per note
    seconds: float


def clean(notes: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The paper's cleaning: drop zero-length notes and, within each part, duplicates (same onset,
    pitch and duration); sort by (onset, pitch, duration). Unisons of two parts are kept: both
    notes are real and each belongs to its own part."""
    keep = notes["duration"] > 0
    notes, labels = notes[keep], labels[keep]
    order = np.lexsort((notes["duration"], notes["pitch"], notes["time"], labels))
    notes, labels = notes[order], labels[order]
    if len(notes):
        same = ((np.diff(labels) == 0) & (np.diff(notes["time"]) == 0)
                & (np.diff(notes["pitch"].astype(np.int64)) == 0) & (np.diff(notes["duration"]) == 0))
        keep = np.concatenate([[True], ~same])
        notes, labels = notes[keep], labels[keep]
    order = np.lexsort((labels, notes["duration"], notes["pitch"], notes["time"]))
    return notes[order], labels[order]


def label_score(score: Score, ensemble: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Notes and part labels of a multitrack score. With an ensemble, tracks are matched by name
    and unmatched tracks dropped; without one, tracks are ranked by mean pitch (top voice = 0)."""
    tracks = [t for t in score.pitched_tracks() if len(t.notes)]
    if ensemble is not None:
        ens = get_ensemble(ensemble)
        pairs = [(ens.label_of(t.name), t) for t in tracks]
        pairs = [(lab, t) for lab, t in pairs if lab is not None]
    else:
        ranked = sorted(tracks, key=lambda t: -float(t.notes["pitch"].mean()))[:MAX_VOICES]
        pairs = list(enumerate(ranked))
    if not pairs:
        return np.zeros(0, NOTE_DTYPE), np.zeros(0, np.int64)
    notes = np.concatenate([t.notes for _, t in pairs])
    labels = np.concatenate([np.full(len(t.notes), lab, np.int64) for lab, t in pairs])
    return clean(notes, labels)


def is_usable(labels: np.ndarray) -> bool:
    counts = np.bincount(labels) if len(labels) else np.zeros(0)
    return int((counts > MIN_NOTES_PER_PART).sum()) >= 2


def _convert(args: tuple[str, str, str | None]) -> tuple[str, dict | None, str]:
    """Worker: parse one file into arrays (runs in a subprocess; music21 is slow to parse)."""
    path, name, ensemble = args
    try:
        if path.lower().endswith((".mid", ".midi")):
            from bridge.midi import read_midi

            score = read_midi(path, resolution=RESOLUTION)
        else:
            from bridge.notation import read_notation

            score = read_notation(path, resolution=RESOLUTION)
        notes, labels = label_score(score, ensemble)
        if not is_usable(labels):
            return name, None, "fewer than two parts with more than 10 notes"
        seconds = float(tick_to_seconds(score, int((notes["time"] + notes["duration"]).max())))
        return name, {"notes": notes, "labels": labels, "seconds": seconds}, ""
    except Exception as exc:  # one bad file must not stop a corpus build
        return name, None, f"{type(exc).__name__}: {exc}"


def corpus_files(set_name: str) -> list[tuple[str, str]]:
    """(absolute path, corpus-relative name) of every file of a music21 corpus set."""
    import music21
    from music21 import corpus

    composers, _, suffixes = CORPUS_SETS[set_name]
    root = Path(music21.__file__).parent / "corpus"
    files = []
    for c in composers:
        for p in corpus.getComposer(c):
            p = Path(p)
            if p.suffix.lower() in suffixes:
                files.append((str(p), p.relative_to(root).as_posix()))
    return sorted(files, key=lambda f: f[1])


def build(
    set_name: str,
    source: str | os.PathLike | None = None,
    ensemble: str | None = None,
    out_dir: str | os.PathLike | None = None,
    jobs: int = 2,
    limit: int | None = None,
    progress: bool = True,
    write_split: bool = False,
) -> Path:
    """Convert a corpus set (``source=None``) or a user's folder into ``<out_dir>/<set>.npz``.

    Returns the written path. Files that fail to parse or are unusable are listed in
    ``<set>.skipped.txt`` beside it.
    """
    from tqdm import tqdm

    if source is None and set_name in VOICE_SETS:
        return build_voices(set_name, out_dir, jobs=jobs, progress=progress)
    if source is None:
        if set_name not in CORPUS_SETS:
            raise ValueError(f"unknown corpus set {set_name!r}; choose one of "
                             f"{sorted(CORPUS_SETS) + sorted(VOICE_SETS)} "
                             "or pass a folder with --source")
        files = corpus_files(set_name)
        ensemble = CORPUS_SETS[set_name][1]
    else:
        root = Path(source)
        if not root.is_dir():
            raise ValueError(f"--source {root} is not a folder; give a folder of MIDI or MusicXML files")
        suffixes = (".mid", ".midi", ".mxl", ".xml", ".musicxml", ".krn", ".abc")
        files = sorted((str(p), p.relative_to(root).as_posix()) for p in root.rglob("*")
                       if p.suffix.lower() in suffixes)
        if not files:
            raise ValueError(f"no MIDI or MusicXML files under {root}")
    if limit:
        files = files[:limit]
    args = [(path, name, ensemble) for path, name in files]
    results, skipped = {}, []
    with worker_pool(jobs) as pool:
        for name, arrays, why in tqdm(pool.map(_convert, args, chunksize=4), total=len(args),
                                      desc=f"build {set_name}", disable=not progress):
            if arrays is None:
                skipped.append(f"{name}\t{why}")
            else:
                results[name] = arrays
    if not results:
        raise ValueError(f"no usable piece in {set_name}: {len(skipped)} skipped")
    names = sorted(results)
    committed = load_split_file(set_name) if source is None else {}
    if write_split and source is None:
        if set_name in SPLIT_BY_WORK_SEED:
            works = {name: corpus_work(path, name) for path, name in files}
            lists = make_split(sorted(works), SPLIT_BY_WORK_SEED[set_name], works)
        else:
            lists = make_split(names)
        committed = write_split_file(set_name, lists)
    splits = [committed.get(n) or hash_split(n) for n in names]
    out = Path(out_dir) if out_dir else data_dir()
    path = _write(out / f"{set_name}.npz", [(n, results[n]) for n in names], splits, ensemble or "")
    (out / f"{set_name}.skipped.txt").write_text("\n".join(skipped) + ("\n" if skipped else ""))
    return path


def _write(path: Path, pieces: list[tuple[str, dict]], splits: list[str], ensemble: str) -> Path:
    """One set file: every piece's notes and labels back to back, with names, splits and seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lengths = np.array([len(arrays["labels"]) for _, arrays in pieces])
    np.savez_compressed(
        path,
        notes=np.concatenate([arrays["notes"] for _, arrays in pieces]),
        labels=np.concatenate([arrays["labels"] for _, arrays in pieces]),
        offsets=np.concatenate([[0], np.cumsum(lengths)]),
        names=np.array([name for name, _ in pieces]),
        splits=np.array(splits),
        seconds=np.array([arrays["seconds"] for _, arrays in pieces]),
        ensemble=np.array(ensemble),
    )
    return path


def n_voices(labels: np.ndarray) -> int:
    """How many voices a piece of a pitch-ranked set has (its labels are 0..n-1)."""
    return int(labels.max()) + 1 if len(labels) else 0


def voice_counts(set_name_or_path: str | os.PathLike) -> dict[int, dict[str, int]]:
    """Files per number of voices and split: {voices: {"train": files, "valid": ..., "test": ...}}."""
    counts: dict[int, dict[str, int]] = {}
    for p in load(set_name_or_path):
        row = counts.setdefault(n_voices(p.labels), dict.fromkeys(SPLIT_NAMES, 0))
        row[p.split] += 1
    return dict(sorted(counts.items()))


def build_voices(set_name: str, out_dir: str | os.PathLike | None = None, jobs: int = 2,
                 progress: bool = True) -> Path:
    """A ``VOICE_SETS`` set: the pieces of its built parent set (built first if missing) with
    exactly its number of voices, labels and splits as the parent has them."""
    parent, voices, ensemble = VOICE_SETS[set_name]
    out = Path(out_dir) if out_dir else data_dir()
    source = out / f"{parent}.npz"
    if not source.exists():
        source = build(parent, out_dir=out, jobs=jobs, progress=progress)
    pieces = [p for p in load(source) if n_voices(p.labels) == voices]
    if not pieces:
        raise ValueError(f"{parent} has no piece with {voices} voices, so {set_name} would be empty")
    arrays = [(p.name, {"notes": p.notes, "labels": p.labels, "seconds": p.seconds}) for p in pieces]
    (out / f"{set_name}.skipped.txt").write_text("")
    return _write(out / f"{set_name}.npz", arrays, [p.split for p in pieces], ensemble)


def resolve(set_name_or_path: str | os.PathLike) -> Path:
    p = Path(set_name_or_path)
    if p.suffix == ".npz":
        return p
    path = data_dir() / f"{set_name_or_path}.npz"
    if not path.exists():
        raise FileNotFoundError(
            f"dataset {set_name_or_path!r} is not built at {path}; run "
            f"`deep-musician data build {set_name_or_path}` first"
        )
    return path


def load(set_name_or_path: str | os.PathLike, split: str | None = None) -> list[Piece]:
    """Pieces of a built set, optionally only one split."""
    with np.load(resolve(set_name_or_path)) as z:
        notes, labels, offsets = z["notes"], z["labels"], z["offsets"]
        names, splits, seconds = z["names"], z["splits"], z["seconds"]
    pieces = []
    for i, name in enumerate(names):
        if split is not None and splits[i] != split:
            continue
        a, b = offsets[i], offsets[i + 1]
        pieces.append(Piece(str(name), str(splits[i]), notes[a:b], labels[a:b], float(seconds[i])))
    return pieces


def ensemble_of(set_name_or_path: str | os.PathLike) -> str:
    with np.load(resolve(set_name_or_path)) as z:
        return str(z["ensemble"])


def stats(set_name_or_path: str | os.PathLike) -> dict:
    """The paper's Table 1 row: hours, files, notes, parts, most common label and its share."""
    pieces = load(set_name_or_path)
    labels = np.concatenate([p.labels for p in pieces])
    counts = Counter(labels.tolist())
    label, n = counts.most_common(1)[0]
    per_split = Counter(p.split for p in pieces)
    return {
        "hours": sum(p.seconds for p in pieces) / 3600,
        "files": len(pieces),
        "notes": int(len(labels)),
        "parts": int(labels.max()) + 1,
        "most_common_label": int(label),
        "most_common_share": n / len(labels),
        "split": {s: per_split.get(s, 0) for s in SPLIT_NAMES},
    }

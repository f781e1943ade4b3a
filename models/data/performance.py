"""Performance corpora: scores rendered with their expression realised, for the Performer models.

    python -m models.data.performance build bach-soprano --jobs 2 --limit 120
    python -m models.data.performance build mine --source ~/scores --presets piano strings
    python -m models.data.performance build bach-marked --jobs 2   # chorales with drawn markings
    python -m models.data.performance build bach-lines --jobs 2    # their soprano lines alone
    python -m models.data.performance stats bach-soprano

Each piece is read with its markings (``models.performer.expression``), performed by one or more
*performers* (a SoundFont preset with a playing style: ``models.performer.render.PERFORMERS``) and
rendered with FluidSynth at 22,050 Hz mono. One shard per (piece, performer) is written as soon as
it is done, under ``$DEEP_MUSICIAN_DATA/performance/<set>/``:

    shards/<piece>__p<id>.npz   notes (PERFORMED_DTYPE: score and performed times, markings,
                                velocities), mel (80, frames) float16 log-mel, cc11 (K, 3) part,
                                seconds, value; performer, qpm, name, split
    audio/<piece>__p<id>.wav    16-bit mono audio (for the synthesis and vocoder models)
    index.json                  one row per shard; `stats` and the loaders read it

A rerun skips the shards already written, so an interrupted build resumes. Splits are by work:
corpus sets use the committed lists of their corpus (``split_lists/bach.json``...), a user's folder
the hash rule of ``models.data.splits``. Audio stays on this machine: never commit it.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.data import worker_pool
from models.data.corpus import corpus_files, data_dir
from models.data.splits import SPLIT_NAMES, hash_split, load_split_file

# set -> (music21 corpus set, parts kept (None: all), performer presets)
SETS = {
    "bach-soprano": ("bach", (0,), ("flute", "oboe", "violin", "clarinet")),
    "bach": ("bach", None, ("piano", "organ", "strings", "choir")),
    "bach-marked": ("bach", None, ("piano", "organ", "strings", "choir")),
    "bach-lines": ("bach", (0,), ("piano", "organ", "strings", "choir")),
    "quartets": ("quartets", None, ("parts", "strings")),
}
# sets whose unmarked scores get drawn markings (``expression.draw_markings``): the chorales played
# at every dynamic level, staccato, tenuto and slurred, which the plain ``bach`` set never is;
# ``bach-lines`` is their soprano alone, played by the SATB performers (a DAW track is often one line)
DRAWN_SETS = ("bach-marked", "bach-lines")
SOURCE_PRESETS = ("piano", "strings")
SOURCE_SUFFIXES = (".mid", ".midi", ".mxl", ".xml", ".musicxml", ".krn", ".abc")
MAX_PARTS = 15


@dataclass
class PerformancePiece:
    key: str  # <piece>__p<performer>
    name: str
    split: str
    performer: int
    qpm: float
    notes: np.ndarray  # expression.PERFORMED_DTYPE, sorted by (score onset, part, pitch)
    mel: np.ndarray | None = None  # (n_mels, frames) float32 when loaded


def set_dir(set_name: str, root: str | os.PathLike | None = None) -> Path:
    return Path(root) if root else data_dir() / "performance" / set_name


def shard_key(name: str, performer: int) -> str:
    return f"{name.rsplit('.', 1)[0].replace('/', '__')}__p{performer}"


def read_piece(path: str, parts: tuple[int, ...] | None) -> tuple[np.ndarray, float, list[int]]:
    """Marked notes, tempo (qpm) and each part's GM program of one score file."""
    from models.performer import expression

    if path.lower().endswith((".mid", ".midi")):
        from bridge.midi import read_midi

        score = read_midi(path)
        tracks = [t for t in score.pitched_tracks() if len(t.notes)][:MAX_PARTS]
        if not tracks:
            raise ValueError("the file has no pitched notes")
        notes = np.concatenate([t.notes for t in tracks])
        labels = np.concatenate([np.full(len(t.notes), i, np.int64) for i, t in enumerate(tracks)])
        marked = expression.from_score_notes(notes, labels, score.resolution)
        qpm, programs = score.qpm_at(0), [t.program for t in tracks]
    else:
        from music21 import converter

        stream = converter.parse(path)
        marked, qpm = expression.read_marked(stream)
        stream_parts = list(getattr(stream, "parts", []))
        programs = []
        for part in stream_parts:
            program = getattr(part.getInstrument(returnDefault=True), "midiProgram", None)
            programs.append(int(program) if program is not None else 0)
    if parts is not None:
        marked = marked[np.isin(marked["part"], parts)]
        keep = sorted(set(parts))
        marked["part"] = np.searchsorted(keep, marked["part"])
        programs = [programs[p] if p < len(programs) else 0 for p in keep]
    marked = marked[marked["part"] < MAX_PARTS]
    return marked, qpm, programs or [0]


def _render_piece(job: tuple) -> list[tuple[str, dict | None, str]]:
    """Worker (a subprocess): read one file, then perform, render and save it per performer."""
    path, name, split, performers, parts, out, draw = job
    from scipy.io import wavfile

    from models.performer import expression, render

    results = []
    try:
        marked, qpm, programs = read_piece(path, parts)
    except Exception as exc:  # one bad file must not stop a build
        return [(shard_key(name, p), None, f"{type(exc).__name__}: {exc}") for p in performers]
    if len(marked) < 2:
        return [(shard_key(name, p), None, "fewer than two notes") for p in performers]
    if draw:
        marked = expression.draw_markings(marked, _seed(name))
    for performer in performers:
        key = shard_key(name, performer)
        try:
            performed, cc11 = expression.realise(marked, qpm, expression.Style.of(performer), _seed(key))
            audio = render.render(performed, cc11, performer, programs)
            mel = render.log_mel(audio)
            cc = np.concatenate([np.column_stack([np.full(len(c), p), c]) for p, c in enumerate(cc11)])
            wavfile.write(out / "audio" / f"{key}.wav", render.SAMPLE_RATE_HZ,
                          (np.clip(audio, -1, 1) * 32767).astype(np.int16))
            tmp = out / "shards" / f"{key}.tmp.npz"
            np.savez_compressed(tmp, notes=performed, mel=mel.astype(np.float16), cc11=cc,
                                performer=np.int64(performer), qpm=np.float64(qpm), name=np.array(name),
                                split=np.array(split), sample_rate_hz=np.int64(render.SAMPLE_RATE_HZ),
                                hop=np.int64(render.HOP))
            tmp.rename(out / "shards" / f"{key}.npz")  # whole shards only: a killed build resumes
            results.append((key, _row(key, name, split, performer, performed, mel, audio), ""))
        except Exception as exc:
            results.append((key, None, f"{type(exc).__name__}: {exc}"))
    return results


def _seed(text: str) -> int:
    return int.from_bytes(text.encode()[-8:].rjust(8, b"\0"), "little") % 2**32


def _row(key: str, name: str, split: str, performer: int, notes: np.ndarray, mel: np.ndarray,
         audio: np.ndarray) -> dict:
    from models.performer.render import SAMPLE_RATE_HZ

    return {"key": key, "name": name, "split": split, "performer": performer, "notes": len(notes),
            "frames": int(mel.shape[1]), "seconds": len(audio) / SAMPLE_RATE_HZ}


def source_files(set_name: str, source: str | os.PathLike | None) -> list[tuple[str, str]]:
    if source is None:
        if set_name not in SETS:
            raise ValueError(f"unknown performance set {set_name!r}; choose one of {sorted(SETS)} or pass "
                             "a folder with --source")
        return corpus_files(SETS[set_name][0])
    root = Path(source)
    if not root.is_dir():
        raise ValueError(f"--source {root} is not a folder; give a folder of MusicXML or MIDI files")
    files = sorted((str(p), p.relative_to(root).as_posix()) for p in root.rglob("*")
                   if p.suffix.lower() in SOURCE_SUFFIXES)
    if not files:
        raise ValueError(f"no MusicXML or MIDI files under {root} (suffixes {', '.join(SOURCE_SUFFIXES)})")
    return files


def build(set_name: str, source: str | os.PathLike | None = None, presets: tuple[str, ...] | None = None,
          fonts: tuple[str, ...] | None = None, performers_per_piece: int = 2, jobs: int = 2,
          limit: int | None = None, out_dir: str | os.PathLike | None = None, progress: bool = True,
          minutes: float = 0.0, draw_markings: bool | None = None) -> dict:
    """Render a set; returns the summary that ``stats`` prints. Shards already on disk are kept.
    With ``minutes``, no new piece starts after that long (a rerun carries on). ``draw_markings``
    (None: the set's own choice, ``DRAWN_SETS``) gives unmarked scores drawn markings."""
    from tqdm import tqdm

    from models.performer.render import installed_performers

    files = source_files(set_name, source)
    corpus_set, parts, set_presets = SETS[set_name] if source is None else (None, None, SOURCE_PRESETS)
    ids = installed_performers(tuple(presets or set_presets), fonts)
    if not ids:
        raise ValueError(f"no installed SoundFont has the presets {', '.join(presets or set_presets)}; "
                         "install fluid-soundfont-gm (or pass --fonts/--presets that exist)")
    if performers_per_piece < 1:
        raise ValueError(f"performers_per_piece must be at least 1, got {performers_per_piece}")
    draw = (set_name in DRAWN_SETS and source is None) if draw_markings is None else draw_markings
    committed = load_split_file(corpus_set) if corpus_set else {}
    out = set_dir(set_name, out_dir)
    (out / "shards").mkdir(parents=True, exist_ok=True)
    (out / "audio").mkdir(exist_ok=True)
    work = []
    for i, (path, name) in enumerate(files[:limit] if limit else files):
        chosen = sorted({ids[(i + j) % len(ids)] for j in range(performers_per_piece)})
        todo = [p for p in chosen if not (out / "shards" / f"{shard_key(name, p)}.npz").exists()]
        if todo:
            work.append((path, name, committed.get(name) or hash_split(name), todo, parts, out, draw))
    skipped, t0 = [], time.time()
    with worker_pool(jobs) as pool:
        futures = [pool.submit(_render_piece, job) for job in work]
        for future in tqdm(as_completed(futures), total=len(futures), desc=f"render {set_name}",
                           disable=not progress):
            if future.cancelled():
                continue
            skipped += [f"{key}\t{why}" for key, row, why in future.result() if row is None]
            if minutes and time.time() - t0 > minutes * 60:
                for f in futures:
                    f.cancel()
    (out / "skipped.txt").write_text("".join(s + "\n" for s in skipped))
    summary = write_index(out)
    summary["build_seconds"] = time.time() - t0
    return summary


def write_index(out: Path) -> dict:
    """Rebuild ``index.json`` from the shards on disk (so a resumed build lists every shard)."""
    rows = []
    for path in sorted((out / "shards").glob("*.npz")):
        if path.name.endswith(".tmp.npz"):
            continue
        with np.load(path) as z:
            rows.append({"key": path.stem, "name": str(z["name"]), "split": str(z["split"]),
                         "performer": int(z["performer"]), "notes": int(len(z["notes"])),
                         "frames": int(z["mel"].shape[1]), "seconds": int(z["mel"].shape[1]) * int(z["hop"])
                         / int(z["sample_rate_hz"])})
    (out / "index.json").write_text(json.dumps(rows, indent=0) + "\n")
    return summarise(rows)


def summarise(rows: list[dict]) -> dict:
    return {"shards": len(rows), "pieces": len({r["name"] for r in rows}),
            "performers": sorted({r["performer"] for r in rows}), "notes": sum(r["notes"] for r in rows),
            "hours": sum(r["seconds"] for r in rows) / 3600,
            "split": {s: sum(r["split"] == s for r in rows) for s in SPLIT_NAMES}}


def resolve(set_name_or_dir: str | os.PathLike, needs: str = "index.json") -> Path:
    """The folder of a set (a name under ``$DEEP_MUSICIAN_DATA`` or a folder) that holds ``needs``:
    the index of a finished build, or ``shards`` for an interrupted one."""
    p = Path(set_name_or_dir)
    out = p if (p / needs).exists() else set_dir(str(set_name_or_dir))
    if not (out / needs).exists():
        raise FileNotFoundError(f"performance set {set_name_or_dir!r} is not built at {out}; run "
                                f"`python -m models.data.performance build {set_name_or_dir}` first")
    return out


def load(set_name_or_dir: str | os.PathLike, split: str | None = None,
         with_mel: bool = False) -> list[PerformancePiece]:
    """Shards of a built set, optionally one split only; mel spectrograms only when asked."""
    out = resolve(set_name_or_dir)
    pieces = []
    for row in json.loads((out / "index.json").read_text()):
        if split is not None and row["split"] != split:
            continue
        with np.load(out / "shards" / f"{row['key']}.npz") as z:
            mel = z["mel"].astype(np.float32) if with_mel else None
            pieces.append(PerformancePiece(row["key"], row["name"], row["split"], row["performer"],
                                           float(z["qpm"]), z["notes"], mel))
    return pieces


def stats(set_name_or_dir: str | os.PathLike) -> dict:
    return summarise(json.loads((resolve(set_name_or_dir) / "index.json").read_text()))


def main(argv: list[str] | None = None) -> None:
    from models.performer.render import FONTS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="render a set (resumable)")
    b.add_argument("set", help=f"one of {', '.join(SETS)}, or a new name with --source")
    b.add_argument("--source", help="a folder of MusicXML/MIDI files instead of the music21 corpus")
    b.add_argument("--fonts", nargs="+", choices=sorted(FONTS),
                   help="SoundFonts to use (default: all installed)")
    b.add_argument("--presets", nargs="+", help="performer presets (default: the set's)")
    b.add_argument("--performers-per-piece", type=int, default=2, help="(default %(default)s)")
    b.add_argument("--jobs", type=int, default=2, help="worker processes (default %(default)s)")
    b.add_argument("--limit", type=int, help="only the first N files")
    b.add_argument("--out", help="folder (default $DEEP_MUSICIAN_DATA/performance/<set>)")
    b.add_argument("--minutes", type=float, default=0.0, help="start no piece after this long (0: no limit)")
    b.add_argument("--draw-markings", action=argparse.BooleanOptionalAction, default=None,
                   help="give scores without dynamics or articulations drawn ones, per phrase (default: "
                        f"only for {', '.join(DRAWN_SETS)})")
    s = sub.add_parser("stats", help="counts of a built set (the index is rebuilt from the shards)")
    s.add_argument("set")
    args = p.parse_args(argv)
    if args.command == "build":
        summary = build(args.set, args.source, tuple(args.presets) if args.presets else None,
                        tuple(args.fonts) if args.fonts else None, args.performers_per_piece, args.jobs,
                        args.limit, args.out, minutes=args.minutes,
                        draw_markings=args.draw_markings)
    else:
        summary = write_index(resolve(args.set, needs="shards"))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

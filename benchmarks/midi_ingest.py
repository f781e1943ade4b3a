"""MIDI ingest speed for training corpora: notes per second read into ``Score``s. Prints JSON.

    python benchmarks/midi_ingest.py [--folder DIR] [--pieces 200] [--repeats 3]

Without ``--folder``, ``--pieces`` pieces of the music21 corpus (the string quartet movements, then
Bach chorales) are converted once with ``read_notation``, rescaled to 480 ticks per quarter and
written with ``write_midi`` to a temporary folder. Every measure reads the same files in the same
run, from disk, one thread; each is the best of ``--repeats`` passes over the whole folder:

- ``symusic``: ``read_midi(path, engine="symusic")``, files symusic cannot be proved to read like
  mido included (they go through mido; ``through_mido`` counts them);
- ``mido``: ``read_midi(path, engine="mido")``, the reference;
- ``symusic_raw``: ``symusic.Score.from_file`` alone, no conversion: the ceiling;
- ``dataset_convert``: ``models.dataset._convert`` (what ``deep-musician build --source DIR`` runs
  per file: read, label, clean) with symusic and with mido, next to the music21 parse that corpus
  builds run per piece.

Both engines' Scores are compared for every file (``identical``). CPU seconds are given beside wall
seconds because the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import symusic  # noqa: E402

from bridge import midi  # noqa: E402
from bridge.score import Score  # noqa: E402


def write_corpus(folder: Path, pieces: int) -> float:
    """Write ``pieces`` corpus pieces as MIDI; returns the mean music21 parse seconds per piece."""
    from bridge.notation import read_notation
    from models.dataset import corpus_files

    quartets = corpus_files("quartets")  # 46 movements of ~1,000-6,000 notes, then chorales of ~250
    files = quartets + corpus_files("bach")[: max(pieces - len(quartets), 0)]
    parse_s, written = 0.0, 0
    for path, name in files:
        if written == pieces:
            break
        start = time.perf_counter()
        try:
            score = read_notation(path)
        except Exception:  # a piece music21 cannot read is no MIDI file either
            continue
        parse_s += time.perf_counter() - start
        if score.n_notes:
            midi.write_midi(score.with_resolution(480), folder / (name.replace("/", "_") + ".mid"))
            written += 1
    return parse_s / max(written, 1)


def best_pass(files: list[Path], read, repeats: int) -> dict:
    best = None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        for f in files:
            read(f)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if best is None or wall < best[0]:
            best = (wall, cpu)
    return {"wall_s": round(best[0], 4), "cpu_s": round(best[1], 4)}


def same(a: Score, b: Score) -> bool:
    if (a.resolution, a.title, len(a.tracks)) != (b.resolution, b.title, len(b.tracks)):
        return False
    for x, y in zip(a.tracks, b.tracks):
        if (x.name, x.program, x.is_drum) != (y.name, y.program, y.is_drum) or not np.array_equal(
            x.notes, y.notes
        ):
            return False
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("tempos", "meters", "keys"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--folder",
        type=Path,
        default=None,
        help="read these .mid/.midi files (default: none, write corpus pieces to a temporary folder)",
    )
    parser.add_argument("--pieces", type=int, default=200, help="corpus pieces to write (default: 200)")
    parser.add_argument("--repeats", type=int, default=3, help="passes per measure, best kept (default: 3)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder, music21_s = args.folder, None
        if folder is None:
            folder = Path(tmp)
            music21_s = write_corpus(folder, args.pieces)
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in midi.MIDI_SUFFIXES)
        if not files:
            raise SystemExit(f"no .mid or .midi files under {folder}")
        load_before = os.getloadavg()[0]
        scores = {f: midi.read_midi(f, engine="mido") for f in files}
        notes = sum(s.n_notes for s in scores.values())
        through_mido = sum(midi._read_symusic(f.read_bytes(), f.stem) is None for f in files)
        identical = all(same(midi.read_midi(f, engine="symusic"), scores[f]) for f in files)

        result = {
            "files": len(files),
            "notes": notes,
            "bytes": sum(f.stat().st_size for f in files),
            "through_mido": through_mido,
            "identical": identical,
            "symusic_version": symusic.__version__,
        }
        runs = {
            "symusic": lambda f: midi.read_midi(f, engine="symusic"),
            "mido": lambda f: midi.read_midi(f, engine="mido"),
            "symusic_raw": lambda f: symusic.Score.from_file(f),
        }
        for name, read in runs.items():
            timing = best_pass(files, read, args.repeats)
            timing["notes_per_s"] = round(notes / timing["wall_s"])
            timing["notes_per_cpu_s"] = round(notes / timing["cpu_s"])
            result[name] = timing
        result["speedup_vs_mido"] = round(result["mido"]["wall_s"] / result["symusic"]["wall_s"], 1)
        result["fraction_of_raw_symusic"] = round(
            result["symusic_raw"]["wall_s"] / result["symusic"]["wall_s"], 2
        )

        from models import dataset

        convert = {}
        for engine in ("symusic", "mido"):
            saved = midi.symusic
            midi.symusic = saved if engine == "symusic" else None  # "auto" then means mido
            try:
                timing = best_pass(files, lambda f: dataset._convert((str(f), f.name, None)), args.repeats)
            finally:
                midi.symusic = saved
            convert[engine] = {
                "ms_per_file": round(1000 * timing["wall_s"] / len(files), 3),
                "notes_per_s": round(notes / timing["wall_s"]),
            }
        if music21_s is not None:
            convert["music21_parse_ms_per_piece"] = round(1000 * music21_s, 1)
        result["dataset_convert"] = convert
        result["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

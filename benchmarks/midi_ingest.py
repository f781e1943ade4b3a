"""MIDI ingest speed for training corpora: notes per second read into ``Score``s. Prints JSON.

    python -m benchmarks.midi_ingest [--folder DIR] [--pieces 200] [--corpora quartets bach] [--repeats 3]

Without ``--folder``, ``--pieces`` pieces of the music21 corpus (the 46 string quartet movements,
then Bach chorales) are converted with ``read_notation``, rescaled to 480 ticks per quarter and
written with ``write_midi`` into ``<data dir>/midi_ingest`` (music21 takes minutes for the
quartets, so the folder is kept and only missing pieces are written). Every measure reads the same
files in the same run, from disk, one thread; each is the best of ``--repeats`` passes:

- ``symusic``: ``read_midi(path, engine="symusic")``, files symusic cannot be proved to read like
  mido included (they go through mido; ``through_mido`` counts them);
- ``mido``: ``read_midi(path, engine="mido")``, the project's own mido-based reader (mido's parse,
  then the Score built in Python), the reference the symusic path must equal;
- ``mido_midifile``: ``mido.MidiFile(path)`` alone, mido's parse with no Score: the plain-mido
  baseline;
- ``symusic_raw``: ``symusic.Score.from_file`` alone, no conversion: the ceiling;
- ``by_size``: the ``symusic`` and ``symusic_raw`` measures for files below and above 1,000 notes,
  since a file's fixed cost (header, one step per MIDI track) weighs more in small files;
- ``dataset_convert``: ``models.data.corpus._convert`` (what ``deep-musician build --source DIR`` runs
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mido  # noqa: E402
import numpy as np  # noqa: E402
import symusic  # noqa: E402

from bridge import midi  # noqa: E402
from bridge.score import Score  # noqa: E402
from bridge.scorefile import MIDI_SUFFIXES  # noqa: E402


def write_corpus(folder: Path, pieces: int, corpora: tuple[str, ...] = ("quartets", "bach")) -> list[Path]:
    """The first ``pieces`` pieces of ``corpora`` as MIDI files in ``folder``, writing those not there yet."""
    from bridge.notation import read_notation
    from models.data.corpus import corpus_files

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for path, name in [f for c in corpora for f in corpus_files(c)][:pieces]:
        out.append(folder / (name.replace("/", "_") + ".mid"))
        if not out[-1].exists():
            score = read_notation(path)
            print(f"wrote {out[-1].name} ({score.n_notes} notes)", file=sys.stderr)
            midi.write_midi(score.with_resolution(480), out[-1])
    return out


def music21_ms_per_chorale(n: int = 10) -> float:
    """What a corpus build pays per piece before any MIDI is involved: music21 parsing a chorale."""
    from bridge.notation import read_notation
    from models.data.corpus import corpus_files

    paths = [path for path, _ in corpus_files("bach")[:n]]
    start = time.perf_counter()
    for path in paths:
        read_notation(path)
    return 1000 * (time.perf_counter() - start) / len(paths)


def best_pass(files: list[Path], read, repeats: int, notes: int) -> dict:
    """The fastest of ``repeats`` passes reading every file: wall and CPU seconds, notes/s."""
    best = None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        for f in files:
            read(f)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if best is None or wall < best[0]:
            best = (wall, cpu)
    return {
        "wall_s": round(best[0], 4),
        "cpu_s": round(best[1], 4),
        "notes_per_s": round(notes / best[0]),
        "notes_per_cpu_s": round(notes / best[1]),
    }


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
        help="read these .mid/.midi files (default: none, corpus pieces in <data dir>/midi_ingest)",
    )
    parser.add_argument("--pieces", type=int, default=200, help="corpus pieces to write (default: 200)")
    parser.add_argument("--corpora", nargs="+", default=["quartets", "bach"],
                        help="music21 corpora to take the pieces from, in order (default: quartets bach)")
    parser.add_argument("--repeats", type=int, default=3, help="passes per measure, best kept (default: 3)")
    args = parser.parse_args()

    if args.folder is None:
        from models.data.corpus import data_dir

        files = write_corpus(data_dir() / "midi_ingest", args.pieces, tuple(args.corpora))
    else:
        files = sorted(p for p in args.folder.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES)
    if not files:
        raise SystemExit(f"no .mid or .midi files under {args.folder}")
    from benchmarks.protocol_rtt import run_info

    info = run_info()
    load_before = os.getloadavg()[0]
    scores = {f: midi.read_midi(f, engine="mido") for f in files}
    notes = sum(s.n_notes for s in scores.values())
    result = {
        **info,
        "files": len(files),
        "notes": notes,
        "bytes": sum(f.stat().st_size for f in files),
        "through_mido": sum(midi._read_symusic(f.read_bytes(), f.stem) is None for f in files),
        "identical": all(same(midi.read_midi(f, engine="symusic"), scores[f]) for f in files),
        "symusic_version": symusic.__version__,
    }
    runs = {
        "symusic": lambda f: midi.read_midi(f, engine="symusic"),
        "mido": lambda f: midi.read_midi(f, engine="mido"),
        "mido_midifile": lambda f: mido.MidiFile(f),
        "symusic_raw": lambda f: symusic.Score.from_file(f),
    }
    for name, read in runs.items():
        result[name] = best_pass(files, read, args.repeats, notes)
    result["speedup_vs_mido"] = round(result["mido"]["wall_s"] / result["symusic"]["wall_s"], 1)
    result["speedup_vs_mido_midifile"] = round(
        result["mido_midifile"]["wall_s"] / result["symusic"]["wall_s"], 1)
    result["fraction_of_raw_symusic"] = round(
        result["symusic_raw"]["wall_s"] / result["symusic"]["wall_s"], 2
    )

    by_size = {}
    for label, group in (("below_1000_notes", lambda n: n < 1000), ("from_1000_notes", lambda n: n >= 1000)):
        subset = [f for f in files if group(scores[f].n_notes)]
        if subset:
            n = sum(scores[f].n_notes for f in subset)
            by_size[label] = {"files": len(subset), "notes_per_file": round(n / len(subset))}
            for name in ("symusic", "symusic_raw"):
                by_size[label][name] = best_pass(subset, runs[name], args.repeats, n)["notes_per_s"]
    result["by_size"] = by_size

    from models.data import corpus

    convert = {}
    for engine in ("symusic", "mido"):
        saved = midi.symusic
        midi.symusic = saved if engine == "symusic" else None  # "auto" then means mido
        try:
            timing = best_pass(files, lambda f: corpus._convert((str(f), f.name, None)), args.repeats, notes)
        finally:
            midi.symusic = saved
        convert[f"{engine}_ms_per_file"] = round(1000 * timing["wall_s"] / len(files), 3)
    convert["music21_ms_per_chorale"] = round(music21_ms_per_chorale(), 1)
    result["dataset_convert"] = convert
    result["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

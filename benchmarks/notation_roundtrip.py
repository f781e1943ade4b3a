"""MusicXML out, round trip: each work of the music21 corpus that issue 17's verification used is
read (bridge.notation.read_notation, grace notes kept), written as MusicXML (write_musicxml) and
read back; per work the notes (onset, pitch, duration) that do not come back in their own track,
the most ticks any of them moved, and the bars in and out. Prints JSON.

    python -m benchmarks.notation_roundtrip [--works haydn/opus74no1/movement2 ...] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

WORKS = ("haydn/opus74no1/movement2", "haydn/opus74no1/movement3", "mozart/k80/movement1",
         "mozart/k80/movement4", "mozart/k458/movement1", "schumann_clara/polonaise_op1n3",
         "joplin/maple_leaf_rag", "chopin/mazurka06-2.krn", "beethoven/opus59no1/movement2",
         "weber/concertino_clarinet")


def moved_notes(before, after) -> tuple[int, int]:
    """How many notes of ``before`` are not in ``after``'s track of the same place (as a multiset
    of onset, pitch, duration), and the largest onset distance from such a note to the nearest
    note of its pitch that came back in its stead."""
    moved = largest = 0
    for a, b in zip(before.tracks, after.tracks):
        left = Counter(map(tuple, a.notes[["time", "pitch", "duration"]].tolist()))
        left.subtract(Counter(map(tuple, b.notes[["time", "pitch", "duration"]].tolist())))
        extra = [k for k, v in left.items() if v < 0]
        for (t, p, _), v in left.items():
            if v > 0:
                moved += v
                near = [abs(t - u) for u, q, _ in extra if q == p]
                largest = max(largest, min(near, default=0))
    return moved, largest


def round_trip(work: str) -> dict:
    from music21 import corpus

    from bridge.notation import read_notation, write_musicxml

    path = corpus.getWork(work)
    t = time.perf_counter()
    score = read_notation(path, keep_zero_length=True)
    with tempfile.TemporaryDirectory() as tmp:
        write_musicxml(score, Path(tmp) / "out.musicxml")
        back = read_notation(Path(tmp) / "out.musicxml", keep_zero_length=True)
    moved, largest = moved_notes(score, back)
    return {"work": work, "notes": score.n_notes, "notes_back": back.n_notes, "moved": moved,
            "largest_move_ticks": largest, "resolution": score.resolution, "bars": len(score.bars),
            "bars_back": len(back.bars), "seconds": round(time.perf_counter() - t, 1)}


def main() -> None:
    from benchmarks.protocol_rtt import run_info

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--works", nargs="+", default=list(WORKS), help="music21 corpus works")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    out = {**run_info(), "works": [round_trip(w) for w in args.works]}
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

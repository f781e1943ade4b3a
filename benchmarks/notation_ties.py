"""Ties as the MusicXML reader merges them (bridge.notation.from_music21) against music21's own
``stripTies(matchByPitch=True)`` on the flattened part, which the reader used before: on the first
--bach Bach works of the music21 corpus and four piano and chamber works, the notes each gives
(onset, pitch, duration at 24 ticks a quarter), the works where they differ, and the seconds each
takes once the file is parsed. Prints JSON.

    python -m benchmarks.notation_ties [--bach 60] [--json benchmarks/notation_ties.json]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bridge.notation import from_music21

OTHERS = ("joplin/maple_leaf_rag", "beethoven/opus18no1/movement1.mxl", "mozart/k155/movement1",
          "schumann_clara/opus17/movement3")


def strip_ties_notes(score, resolution: int = 24) -> list[list[tuple[int, int, int]]]:
    """The reader's notes as music21's stripTies gave them (grace notes left out)."""
    parts = []
    for part in score.parts:
        notes = []
        for el in part.stripTies(matchByPitch=True).flatten().notes:
            duration = int(round(float(el.duration.quarterLength) * resolution))
            if duration > 0:
                onset = int(round(float(el.offset) * resolution))
                notes += [(onset, int(p.midi), duration) for p in el.pitches]
        parts.append(sorted(notes))
    return parts


def main() -> None:
    from music21 import converter, corpus

    from benchmarks.protocol_rtt import run_info

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bach", type=int, default=60, help="how many Bach works (default %(default)s)")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    works = [str(w) for w in corpus.getComposer("bach")[:args.bach]]
    works += [str(corpus.getWork(w)) for w in OTHERS]
    out = {"works": 0, "notes": 0, "differ": [], "strip_ties_s": 0.0, "reader_s": 0.0}
    for path in works:
        score = converter.parse(path)
        if not hasattr(score, "parts") or not len(score.parts):
            continue
        t = time.perf_counter()
        old = strip_ties_notes(score)
        out["strip_ties_s"] += time.perf_counter() - t
        t = time.perf_counter()
        new = [sorted(tuple(n[:3]) for n in track.notes.tolist()) for track in from_music21(score).tracks]
        out["reader_s"] += time.perf_counter() - t
        out["works"] += 1
        out["notes"] += sum(map(len, old))
        if old != new:
            out["differ"].append({"work": "/".join(Path(path).parts[-2:]),
                                  "strip_ties_notes": sum(map(len, old)), "reader_notes": sum(map(len, new)),
                                  "symmetric_difference": sum(len(set(a) ^ set(b))
                                                              for a, b in zip(old, new))})
    out = {**run_info(), **{k: round(v, 2) if isinstance(v, float) else v for k, v in out.items()}}
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

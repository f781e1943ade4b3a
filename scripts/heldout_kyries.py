"""Copy a held-out corpus for the performer's decisions: Palestrina's four-voice mass movements from
the music21 corpus (files ``Kyrie*.krn``, or another movement's with ``--movement``, sorted by name,
those with exactly four ``**kern`` spines, the first N after skipping S). No performer model trained
on them; each rule of benchmarks/RESULTS.md ("Perform: a corpus held out from every rule" and after)
is judged on a slice no earlier rule or tuning used: Kyries 1-24, 25-48, 49-61, then Glorias 1-24.

    python scripts/heldout_kyries.py --out /tmp/kyries --count 24
    python scripts/heldout_kyries.py --out /tmp/kyries-2 --skip 24 --count 24
    python scripts/heldout_kyries.py --out /tmp/glorias --movement Gloria --count 24
    python -m models.data.performance build palestrina-kyries --source /tmp/kyries --fonts FluidR3_GM \\
        --performers-per-piece 1
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

MOVEMENTS = ("Kyrie", "Gloria", "Credo", "Sanctus", "Benedictus", "Agnus")


def four_voice_kyries(count: int, skip: int = 0, movement: str = "Kyrie") -> list[Path]:
    from music21 import corpus

    if movement not in MOVEMENTS:
        raise SystemExit(f"unknown movement {movement!r}: choose one of {', '.join(MOVEMENTS)}")
    root = Path(corpus.getComposer("palestrina")[0]).parent
    chosen = []
    for path in sorted(root.glob(f"{movement}*.krn")):
        with open(path, errors="replace") as f:
            spines = next((line.count("**kern") for line in f if line.startswith("**")), 0)
        if spines == 4:
            chosen.append(path)
    return chosen[skip:skip + count]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="the folder to copy them to (made if missing)")
    p.add_argument("--count", type=int, default=24, help="how many (default %(default)s)")
    p.add_argument("--skip", type=int, default=0, help="leave out the first S (default %(default)s)")
    p.add_argument("--movement", default="Kyrie", choices=MOVEMENTS,
                   help="which mass movement (default %(default)s; each is a separate held-out corpus)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for path in four_voice_kyries(args.count, args.skip, args.movement):
        shutil.copy2(path, out / path.name)
        print(path.name)


if __name__ == "__main__":
    main()

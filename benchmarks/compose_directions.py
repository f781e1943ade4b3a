"""Do the arrangement model's named directions change the music the composer writes? For each of
--seeds seeds: 8 bars of 4/4 composed by the shipped composer from the arrangement model's plan, with
the latent moved by -2 and by +2 along a direction; the share of seeds where the +2 piece has more of
what the direction is named for (density: notes; rhythm: share of onsets off the beat; register:
mean pitch). One thread. Prints JSON.

    python -m benchmarks.compose_directions [--seeds 20] [--json benchmarks/compose_directions.json] \
        [--arranger models/pretrained/composer-arrangement.pt] [--only register ...]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

MEASURES = {
    "density": lambda notes: len(notes),
    "rhythm": lambda notes: sum(1 for n in notes if n[0] % 24) / max(len(notes), 1),  # 24 ticks a beat
    "register": lambda notes: sum(n[1] for n in notes) / max(len(notes), 1),
}


def main() -> None:
    import torch

    from benchmarks.protocol_rtt import run_info
    from engine.registry import Registry
    from engine.tasks.compose import build_request, find_composer
    from models.composer.arrangement_plan import Arranger
    from models.composer.inference import Composer

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--arranger", type=Path, default=Path(__file__).resolve().parent.parent / "models"
                   / "pretrained" / "composer-arrangement.pt",
                   help="the arrangement model (exported file or VAE checkpoint; default the shipped one)")
    p.add_argument("--only", nargs="+", choices=list(MEASURES), default=list(MEASURES),
                   help="measure only these directions")
    args = p.parse_args()
    torch.set_num_threads(1)
    registry = Registry()
    entry = find_composer(registry, None)
    composer = Composer(registry.on(entry, "cpu").module, entry.metadata)
    arranger = Arranger.load(args.arranger)
    out = {**run_info(), "composer": entry.name, "arranger": str(args.arranger), "directions": {}}
    for name, measure in ((n, MEASURES[n]) for n in args.only):
        pairs = []
        for seed in range(args.seeds):
            pair = []
            for amount in (-2, 2):
                request = build_request(composer, bars=8, seed=seed, arranger=arranger,
                                        arrangement={"seed": seed, "directions": {name: amount}}).request
                pair.append(measure([n for bar in composer.compose(request) for n in bar.notes.tolist()]))
            pairs.append(pair)
        out["directions"][name] = {"raised_share": sum(b > a for a, b in pairs) / len(pairs),
                                   "mean_at_minus_2": round(sum(a for a, _ in pairs) / len(pairs), 3),
                                   "mean_at_plus_2": round(sum(b for _, b in pairs) / len(pairs), 3)}
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

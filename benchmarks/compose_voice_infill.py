"""The voice-infill model (models.composer.voice_infill) against the rule, on compose_eval's protocol.

    python -m benchmarks.compose_voice_infill --model models/pretrained/composer-voice-infill.pt \
        --json benchmarks/compose_voice_infill.json

The held-out chorales of ``benchmarks.compose_eval.held_out`` (the test split's four-voice chorales
in a meter the composer knows); each voice hidden in turn and written again from the other three;
note F1 (onset and pitch, ``models.composer.metrics.note_f1``) against the hidden voice; the rule
baseline (``models.composer.baselines.infill_voice``, chords identified from the three given voices)
on the same pieces. One row per decoding setting: argmax in 1 pass, confidence-ordered passes, a
nucleus sample (seed + the piece's index, as compose_eval), and "preserve rhythm" (the hidden voice's
own onsets and durations kept, pitches written). Time per filled voice: one thread, wall and CPU.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from benchmarks.compose_eval import held_out
from models.composer.baselines import VOICES, evaluate_infill
from models.composer.train_voice_infill import infill_f1
from models.composer.voice_infill import VoiceInfiller

# name -> fill() arguments
SETTINGS = {
    "argmax, 1 pass": {"passes": 1},
    "argmax, 4 passes": {"passes": 4},
    "argmax, 16 passes": {"passes": 16},
    "sampled T=1 top-p 0.95, 1 pass": {"passes": 1, "temperature": 1.0, "top_p": 0.95},
    "sampled T=1 top-p 0.95, 4 passes": {"passes": 4, "temperature": 1.0, "top_p": 0.95},
    "sampled T=1 top-p 0.95, 16 passes": {"passes": 16, "temperature": 1.0, "top_p": 0.95},
    "sampled T=0.5 top-p 0.95, 16 passes": {"passes": 16, "temperature": 0.5, "top_p": 0.95},
    "preserve rhythm, argmax, 4 passes": {"passes": 4, "keep_rhythm": True},
}


def main(argv: list[str] | None = None) -> dict:
    from benchmarks.protocol_rtt import run_info

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="models/pretrained/composer-voice-infill.pt")
    p.add_argument("--split", default="test", choices=["valid", "test"])
    p.add_argument("--pieces", type=int, default=0, help="the first N held-out chorales (0: all)")
    p.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    infiller = VoiceInfiller.load(args.model)
    pieces = held_out(args.split, args.pieces)
    rule = evaluate_infill(pieces)
    result = {"run": {**run_info(), "model": args.model, "split": args.split, "seed": args.seed},
              "pieces": len(pieces), "rule": {k: v for k, v in rule.items() if k != "pieces"}, "model": {}}
    print("rule", json.dumps(result["rule"]), flush=True)
    for name in args.settings:
        t, c = time.perf_counter(), time.process_time()
        scores = infill_f1(infiller, pieces, seed=args.seed, **SETTINGS[name])
        fills = 4 * len(pieces)
        scores["seconds_per_voice"] = (time.perf_counter() - t) / fills
        scores["cpu_seconds_per_voice"] = (time.process_time() - c) / fills
        scores["points_above_rule"] = 100 * (scores["f1"] - rule["f1"])
        result["model"][name] = scores
        print(name, json.dumps(scores), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result))
    return result


def markdown(result: dict) -> str:
    lines = ["| voice infill, note F1 | " + " | ".join(VOICES) + " | mean | vs rule | s per voice |",
             "|---|" + "---:|" * 7]
    rows = [(f"model, {k}", v) for k, v in result["model"].items()] + [("rule", result["rule"])]
    for name, s in rows:
        extra = (f"{s['points_above_rule']:+.1f} | {s['seconds_per_voice']:.2f}"
                 if "points_above_rule" in s else "— | —")
        lines.append(f"| {name} | " + " | ".join(f"{s[f'f1/{v}']:.3f}" for v in VOICES)
                     + f" | {s['f1']:.3f} | {extra} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

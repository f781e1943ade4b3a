"""The neural performer's whole chain (notes -> synthesis model -> vocoder -> audio) on one CPU
thread: real-time factor (audio seconds per second of compute; wall-clock and the thread's CPU
time) on held-out pieces of a performance set, and the largest sample step at the chunk joins
beside the largest inside the chunks.

    python -m benchmarks.perform_neural_speed --set bach --pieces 3 > benchmarks/perform_neural_speed.json
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def main(argv: list[str] | None = None) -> None:
    from benchmarks.protocol_rtt import run_info
    from models.data import performance
    from models.performer.neural import CHUNK_FRAMES, DEFAULT_SYNTH, NeuralRenderer, join_steps

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", default="bach")
    p.add_argument("--split", default="test")
    p.add_argument("--pieces", type=int, default=3)
    p.add_argument("--vocoder", help="a vocoder file (default the shipped default)")
    p.add_argument("--synth", help="a synthesis model file (default the shipped one)")
    p.add_argument("--harmonic-bins", type=int, help="bins each side of a harmonic (the renderer's default)")
    p.add_argument("--rise-limit", help="nats per frame, or 'off' (the renderer's default)")
    p.add_argument("--hairpin-gain", choices=("on", "off"), help="NeuralRenderer.hairpin_gain (its default)")
    p.add_argument("--legato-rate", help="NeuralRenderer.legato_rate, nats per frame, or 'off' (its default)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    renderer = NeuralRenderer.load(args.synth or DEFAULT_SYNTH, args.vocoder)
    if args.harmonic_bins is not None:
        renderer.harmonic_bins = args.harmonic_bins
    if args.legato_rate is not None:
        renderer.legato_rate = None if args.legato_rate == "off" else float(args.legato_rate)
    if args.hairpin_gain is not None:
        renderer.hairpin_gain = args.hairpin_gain == "on"
    if args.rise_limit is not None:
        renderer.rise_limit = None if args.rise_limit == "off" else float(args.rise_limit)
    pieces, seen = [], set()
    for piece in performance.load(args.set, split=args.split):
        if piece.name not in seen:
            seen.add(piece.name)
            pieces.append(piece)
    rows = []
    for piece in pieces[:args.pieces]:
        t0, c0 = time.perf_counter(), time.thread_time()
        audio = renderer.render(piece.notes, piece.qpm, piece.performer)
        wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
        seconds = len(audio) / renderer.sample_rate_hz
        rows.append({"piece": piece.key, "notes": len(piece.notes), "seconds": round(seconds, 2),
                     "realtime_x_wall": round(seconds / wall, 2), "realtime_x_cpu": round(seconds / cpu, 2),
                     **{k: round(v, 5) if isinstance(v, float) else v
                        for k, v in join_steps(audio, CHUNK_FRAMES * renderer.hop).items()}})
    summary = {k: round(float(np.mean([r[k] for r in rows])), 2)
               for k in ("realtime_x_wall", "realtime_x_cpu")}
    summary["max_step_at_joins"] = max(r["max_step_at_joins"] for r in rows)
    summary["max_step_inside"] = max(r["max_step_inside"] for r in rows)
    print(json.dumps({**run_info(), "set": args.set, "vocoder": renderer.vocoder_meta["name"],
                      "vocoder_model": renderer.vocoder_meta["model"], "threads": 1,
                      "synth": renderer.synth_meta["name"], "harmonic_bins": renderer.harmonic_bins,
                      "rise_limit": renderer.rise_limit, "hairpin_gain": renderer.hairpin_gain,
                      "legato_rate": renderer.legato_rate,
                      "chunk_frames": CHUNK_FRAMES,
                      "summary": summary, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

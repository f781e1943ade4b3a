"""Live neural performing, vocoder by vocoder: how well each plays a line's pitches and how long a
block takes (issue 18; the engine's ``live_perform`` with ``renderer: neural``).

Held-out chorale sopranos (``split_lists/bach.json`` test chorales, soprano alone, performed by
``expression.realise`` with one of the four styles the synthesis model knows, in turn) are played
through ``engine.tasks.live_perform.LiveNeuralPerformer`` block by block at the models' 22,050 Hz, as
a live session would: each block's note-ons sent with it, each block rendered from its sliding
window. Beside them, the same notes offline (``NeuralRenderer.render`` with Griffin-Lim) and through
FluidSynth. pyin's raw pitch accuracy against the performed notes (``perform_markings.pitch_figures``)
the transcription F1 of the line (basic-pitch + mir_eval, ``models.performer.listen``) and the time
per block (one thread) for:

- ``trained``: the GAN vocoder (``performer-vocoder``);
- ``griffin-lim carried``: Griffin-Lim whose phase each window takes over from the last
  (``griffin_lim.CarriedPhase``, ``LIVE_GRIFFIN_LIM_ITERS`` iterations a window), the live default;
- ``griffin-lim fresh``: Griffin-Lim (16 iterations) starting each window from its own hash phase,
  as live sessions did before;
- ``phase-gradient carried``: the phase computed from the magnitude and the window's notes' harmonics
  (``performer-vocoder-pghi``), each window continuing the last one's
  (``phase_gradient.CarriedGradient``); and the same vocoder offline (``phase-gradient offline``).

    python -m benchmarks.perform_live --pieces 8 --out benchmarks/perform_live.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from benchmarks import publish
from benchmarks.perform_markings import SR, STYLES, performer_id, pitch_figures, realised
from benchmarks.protocol_rtt import run_info

RES, QPM = 1000, 60.0  # the session's ticks: milliseconds
VARIANTS = ("trained", "griffin-lim carried", "griffin-lim fresh", "phase-gradient carried")


def live(renderer, performed: np.ndarray, style: str, block: int,
         fresh: bool = False) -> tuple[np.ndarray, list]:
    """(mono audio from the notes' time zero, seconds per block) of a live session of the notes."""
    from bridge.score import NOTE_DTYPE
    from engine.tasks.live_perform import LiveNeuralPerformer

    session = LiveNeuralPerformer(renderer, renderer.performer_id(style), renderer.latent(None), SR)
    if fresh:
        session.vocoder = lambda mel, first_frame: renderer.vocoder(mel[None])[0]
    on = np.rint(performed["onset_s"] * 1000).astype(np.int64)
    length = np.maximum(np.rint(performed["duration_s"] * 1000).astype(np.int64), 1)
    end = (on + length).max() / 1000 + 1.0
    out, seconds, start = [], [], 0
    while start < (end * SR) + session.latency_samples:
        lo, hi = int(start * 1000 / SR), int((start + block) * 1000 / SR)
        sel = (on >= lo) & (on < hi)
        notes = np.zeros(int(sel.sum()), NOTE_DTYPE)
        notes["time"], notes["duration"] = on[sel], length[sel]
        notes["pitch"], notes["velocity"] = performed["pitch"][sel], performed["performed_velocity"][sel]
        t0 = time.perf_counter()
        _, audio = session.push(notes, np.zeros(len(notes), np.uint8), np.zeros((0, 3), np.int64), lo, RES,
                                QPM, block)
        seconds.append(time.perf_counter() - t0)
        out.append(audio[0])
        start += block
    return np.concatenate(out)[session.latency_samples:], seconds


def main(argv: list[str] | None = None) -> dict:
    from models.data.corpus import corpus_files
    from models.data.performance import read_piece
    from models.data.splits import load_split_file
    from models.performer import listen, render
    from models.performer.neural import NeuralRenderer, vocoder_file

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pieces", type=int, default=8, help="held-out chorales (default %(default)s)")
    p.add_argument("--block", type=int, default=1024, help="samples per block (default %(default)s)")
    p.add_argument("--out", help="write the JSON here too")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    info = run_info()
    renderers = {"trained": NeuralRenderer.load(vocoder_path=vocoder_file("performer-vocoder")),
                 "griffin-lim": NeuralRenderer.load(vocoder_path=vocoder_file("performer-vocoder-gl")),
                 "phase-gradient": NeuralRenderer.load(vocoder_path=vocoder_file("performer-vocoder-pghi"))}
    files = {name: path for path, name in corpus_files("bach")}
    names = [n for n, split in sorted(load_split_file("bach").items()) if split == "test"][:args.pieces]
    rows = []
    for k, name in enumerate(names):
        style = STYLES[k % len(STYLES)]
        marked, qpm, _ = read_piece(files[name], (0,))
        pid = performer_id(style)
        performed, cc11 = realised(marked, qpm, pid)
        offline = renderers["griffin-lim"].render(performed, qpm, performer=style)
        takes = {"soundfont offline": (render.render(performed, cc11, pid), []),
                 "griffin-lim offline": (offline, []),
                 "phase-gradient offline": (renderers["phase-gradient"].render(performed, qpm, style), [])}
        takes["trained"] = live(renderers["trained"], performed, style, args.block)
        takes["griffin-lim carried"] = live(renderers["griffin-lim"], performed, style, args.block)
        takes["griffin-lim fresh"] = live(renderers["griffin-lim"], performed, style, args.block, fresh=True)
        takes["phase-gradient carried"] = live(renderers["phase-gradient"], performed, style, args.block)
        reference = np.stack([performed["onset_s"], performed["onset_s"] + performed["duration_s"],
                              performed["pitch"]], 1)
        for variant, (audio, seconds) in takes.items():
            row = {"piece": name, "style": style, "variant": variant, **pitch_figures(audio, performed)}
            heard = listen.transcription_scores(reference, listen.transcribe(audio, SR))
            row |= {"f1": round(heard["f1"], 4),
                    "onset_error_ms_median": round(heard["onset_error_ms_median"], 1)}
            if seconds:
                row |= {"block_ms_median": round(1000 * float(np.median(seconds)), 1),
                        "block_ms_p95": round(1000 * float(np.percentile(seconds, 95)), 1)}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    summary = {}
    for variant in ("soundfont offline", "griffin-lim offline", "phase-gradient offline", *VARIANTS):
        mine = [r for r in rows if r["variant"] == variant]
        accuracy = float(np.mean([r["raw_pitch_accuracy"] for r in mine]))
        summary[variant] = {"raw_pitch_accuracy": round(accuracy, 4),
                            "f1": round(float(np.mean([r["f1"] for r in mine])), 4)}
        if "block_ms_median" in mine[0]:
            summary[variant] |= {
                "block_ms_median": round(float(np.median([r["block_ms_median"] for r in mine])), 1),
                "block_ms_p95": round(float(np.median([r["block_ms_p95"] for r in mine])), 1),
                "block_ms_budget": round(1000 * args.block / SR, 1)}
    report = {**info, "block_samples": args.block, "sample_rate_hz": SR, "pieces": names,
              "synth": renderers["griffin-lim"].synth_meta["name"],
              "seam_fade": renderers["griffin-lim"].seam_fade,
              "rise_limit": renderers["griffin-lim"].rise_limit, "summary": summary, "rows": rows}
    return publish(report, args.out)


if __name__ == "__main__":
    main()

"""How well renders play their notes, heard by tools the project did not write (issue 18, item 3).

For held-out pieces of a built performance set (``python -m models.data.performance build bach``),
each renderer plays the same performed notes (the set's alignment targets: the notes as performed,
in seconds); basic-pitch (ONNX) transcribes the audio and mir_eval scores it against those notes
(note F1: onset within 50 ms and pitch; matched notes' onset error); on a monophonic set pyin's
raw pitch accuracy too. Renderers:

- ``soundfont``: FluidSynth, the audio the set stored (the reference of every ratio);
- ``neural``: the performer's synthesis model and vocoder from ``--synth`` and ``--vocoder``
  (``models.performer.neural``), when given.

    python -m benchmarks.perform_listen --set bach --pieces 6 > benchmarks/perform_listen_bach.json
    python -m benchmarks.perform_listen --set bach-soprano --pieces 6 --pitch \
        > benchmarks/perform_listen_soprano.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def reference_of(notes: np.ndarray) -> np.ndarray:
    return np.stack([notes["onset_s"], notes["onset_s"] + notes["duration_s"], notes["pitch"]], 1)


def main(argv: list[str] | None = None) -> None:
    from benchmarks.protocol_rtt import run_info
    from models.data import performance
    from models.performer import listen

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", default="bach")
    p.add_argument("--split", default="test")
    p.add_argument("--pieces", type=int, default=6, help="held-out pieces (one performer each, the first)")
    p.add_argument("--pitch", action="store_true", help="pyin pitch accuracy too (monophonic sets)")
    p.add_argument("--synth", help="a synthesis model file: adds the neural renderer")
    p.add_argument("--vocoder", help="the vocoder for --synth")
    args = p.parse_args(argv)
    if listen.needs():
        sys.exit(f"perform_listen: install {', '.join(listen.needs())} (bash scripts/setup.sh --dev)")
    import soundfile

    renderers = {"soundfont": None}
    if args.synth:
        from models.performer.neural import NeuralRenderer

        renderers["neural"] = NeuralRenderer.load(args.synth, args.vocoder)
    root = performance.resolve(args.set)
    pieces, seen = [], set()
    for piece in performance.load(args.set, split=args.split):
        if piece.name not in seen:
            seen.add(piece.name)
            pieces.append(piece)
    pieces = pieces[:args.pieces]
    rows = []
    for piece in pieces:
        reference = reference_of(piece.notes)
        for name, renderer in renderers.items():
            t0 = time.perf_counter()
            if renderer is None:
                audio, rate = soundfile.read(root / "audio" / f"{piece.key}.wav", dtype="float32")
            else:
                audio = renderer.render(piece.notes, piece.qpm, piece.performer)
                rate = renderer.sample_rate_hz
            render_s = time.perf_counter() - t0
            scores = listen.transcription_scores(reference, listen.transcribe(audio, rate))
            row = {"piece": piece.key, "renderer": name, "notes": len(reference),
                   "seconds": round(len(audio) / rate, 2), "render_s": round(render_s, 3),
                   **{k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items()}}
            if args.pitch:
                row["pitch_accuracy"] = round(listen.pitch_accuracy(audio, rate, reference), 4)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    summary = {}
    for name in renderers:
        mine = [r for r in rows if r["renderer"] == name]
        summary[name] = {k: round(float(np.nanmean([r[k] for r in mine])), 4)
                         for k in ("precision", "recall", "f1", "onset_error_ms_median", "pitch_accuracy")
                         if k in mine[0]}
        if name != "soundfont":
            ref = {r["piece"]: r["f1"] for r in rows if r["renderer"] == "soundfont"}
            summary[name]["f1_ratio_to_soundfont"] = round(
                float(np.mean([r["f1"] / ref[r["piece"]] for r in mine if ref[r["piece"]] > 0])), 4)
    print(json.dumps({**run_info(), "set": args.set, "split": args.split, "pieces": len(pieces),
                      "summary": summary, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

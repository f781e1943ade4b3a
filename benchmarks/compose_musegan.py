"""The MuseGAN hybrid baseline on the composer's evaluation (issue 16, item 8).

    python -m models.composer.train_musegan --data bach --minutes 28 --out runs/musegan
    python -m benchmarks.compose_musegan --checkpoint runs/musegan/last.pt \
        --json benchmarks/compose_musegan.json --midi-dir /tmp/compose-musegan

The held-out pieces are those of ``benchmarks/compose_eval`` (the split's chorales with soprano,
alto, tenor and bass, reduced to them, in a meter the composer knows). For each the GAN writes one
piece as long as it (in quarters, rounded up to whole 4/4 bars: the GAN knows only 4/4), from
scratch: 4-bar phrases that share the piece's time-independent latents, one seed per piece
(``--seed`` + its index). Each binarisation (``models.composer.musegan.BINARISE``) is scored:

- the MusPy metrics (``models.composer.metrics``) of the generated pieces, their means beside the
  5th-95th percentile band of the real pieces, and the same six from the ``muspy`` package on the
  MIDI files written (``--midi-dir``): the largest difference per metric;
- the chord-tone ratio under one analysis for both (``bridge.chords.identify_chords`` of a piece's
  own notes: the GAN takes no chords), and beside it the generated notes against each held-out
  chorale's own chords (what the composer's chord-conditioned pieces are measured against; the GAN
  is not conditioned, so this is the level of music that ignores the chords).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from bridge.chords import identify_chords
from bridge.score import METER_DTYPE
from models.composer import metrics as M
from models.composer.data import load_pieces, select_tracks
from models.composer.musegan import BINARISE, VOICES, MuseGAN, binarise, load, roll_to_notes
from models.composer.tokens import METERS
from models.data.multitrack import MultiPiece


def held_out(split: str, limit: int = 0) -> list[MultiPiece]:
    """compose_eval's held-out pieces: the split's SATB chorales, reduced to the four voices."""
    pieces = [p for p in select_tracks(load_pieces("bach", split), list(VOICES))
              if list(p.instruments) == list(VOICES)
              and (int(p.meters[0]["numerator"]), int(p.meters[0]["denominator"])) in METERS]
    return pieces[:limit or None]


def _end(notes: np.ndarray) -> int:
    return int((notes["time"] + notes["duration"]).max()) if len(notes) else 0


def self_analysed(piece: MultiPiece) -> MultiPiece:
    """The piece with the chords ``identify_chords`` hears in its own notes."""
    chords = identify_chords(piece.notes, piece.resolution, max(_end(piece.notes), 1))
    return MultiPiece(**{**vars(piece), "chords": chords})


def generate(model: MuseGAN, pieces: list[MultiPiece], seed: int, mode: str,
             threshold: float = 0.5) -> tuple[list[MultiPiece], float]:
    """One generated piece per held-out piece (as described above) and the seconds it took."""
    cfg = model.cfg
    bar_ticks = cfg.step_ticks * cfg.steps_per_bar
    out, seconds = [], 0.0
    for i, p in enumerate(tqdm(pieces, desc=f"musegan {mode}")):
        bars = max(1, math.ceil(_end(p.notes) / bar_ticks))
        t = time.perf_counter()
        probs = model.generate(1, seed=seed + i, phrases=math.ceil(bars / cfg.bars))[0].numpy()
        notes, track = roll_to_notes(binarise(probs[:, :bars * cfg.steps_per_bar], mode, threshold,
                                              np.random.default_rng(seed + i)), cfg)
        seconds += time.perf_counter() - t
        piece = MultiPiece(
            name=f"musegan/{i:03d}", split="generated", resolution=p.resolution, notes=notes, track=track,
            instruments=list(VOICES), programs=list(p.programs), meters=np.array([(0, 4, 4)], METER_DTYPE),
            keys=p.keys[:0], chords=p.chords[:0], bar_starts=np.arange(bars, dtype=np.int64) * bar_ticks,
            qpm=p.qpm)
        out.append(self_analysed(piece))
    return out, seconds


def cross_check(pieces: list[MultiPiece], folder: Path) -> dict:
    """Each piece as MIDI, read back by the ``muspy`` package: the largest absolute difference per
    metric between its six and ours (the same check as benchmarks/compose_eval)."""
    import warnings

    import muspy

    from bridge.midi import write_midi
    from bridge.score import KEY_DTYPE, TEMPO_DTYPE, Score, Track

    folder.mkdir(parents=True, exist_ok=True)
    worst = {k: 0.0 for k in M.MUSPY_METRICS}
    for i, p in enumerate(pieces):
        tracks = [Track(name, int(p.programs[t]), notes=p.notes[p.track == t], role=name)
                  for t, name in enumerate(p.instruments)]
        score = Score(p.resolution, tracks, tempos=np.array([(0, p.qpm)], TEMPO_DTYPE), meters=p.meters[:1],
                      keys=np.zeros(0, KEY_DTYPE))
        path = folder / f"{i:03d}.mid"
        write_midi(score, path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            music = muspy.read_midi(path)
        if music.resolution != p.resolution:
            music.adjust_resolution(p.resolution)
        theirs = {"pitch_class_entropy": muspy.pitch_class_entropy(music),
                  "scale_consistency": muspy.scale_consistency(music),
                  "groove_consistency": muspy.groove_consistency(music, M.measure_ticks(p)),
                  "polyphony": muspy.polyphony(music), "empty_beat_rate": muspy.empty_beat_rate(music),
                  "pitch_range": float(muspy.pitch_range(music))}
        ours = M.muspy_metrics(p)
        for k in worst:
            if not (math.isnan(ours[k]) and math.isnan(theirs[k])):
                worst[k] = max(worst[k], abs(ours[k] - theirs[k]))
    return {"files": len(pieces), "max_abs_diff": worst, "folder": str(folder)}


def score(written: list[MultiPiece], real: list[MultiPiece], band: dict, midi_dir: str | None) -> dict:
    means = {k: float(np.nanmean(v)) for k, v in M.evaluate(written).items()}
    against = [M.chord_tone_ratio(w.notes, p.chords) for w, p in zip(written, real)]
    result = {"means": means, "inside": M.inside_band(means, band),
              "chord_tone_ratio_vs_chorale_chords": float(np.nanmean(against)),
              "notes_per_piece": float(np.mean([len(w.notes) for w in written])),
              "silent_pieces": sum(not len(w.notes) for w in written)}
    if midi_dir:
        result["muspy_check"] = cross_check(written, Path(midi_dir))
    return result


def main(argv: list[str] | None = None) -> dict:
    from benchmarks.protocol_rtt import run_info

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="last.pt of models.composer.train_musegan")
    p.add_argument("--split", default="test", choices=["valid", "test"])
    p.add_argument("--pieces", type=int, default=0, help="the first N held-out chorales (0: all)")
    p.add_argument("--binarise", nargs="+", choices=BINARISE, default=list(BINARISE))
    p.add_argument("--threshold", type=float, default=0.5, help="voice and threshold binarisation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--midi-dir", help="write the generated pieces here and read them with muspy")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    if not Path(args.checkpoint).is_file():
        p.exit(2, f"error: --checkpoint {args.checkpoint} is not a file; train one with "
                  "`python -m models.composer.train_musegan --out runs/musegan` and pass its last.pt\n")
    torch.set_num_threads(1)
    model, ckpt = load(args.checkpoint)
    real = held_out(args.split, args.pieces)
    if not real:
        p.exit(2, f"error: no SATB chorale in the bach set's {args.split} split; build it with "
                  "`deep-musician data build bach --multitrack`\n")
    analysed = [self_analysed(r) for r in real]
    band = M.reference_band(analysed)
    result = {**run_info(), "checkpoint": args.checkpoint, "split": args.split, "seed": args.seed,
              "threshold": args.threshold,
              "model": ckpt["config"], "trained": {"steps": ckpt["step"], "seconds": ckpt["elapsed_s"],
                                                   "config": ckpt.get("train_config", {})},
              "pieces": len(real), "real_band": band,
              "real_chord_tone_ratio_set_chords": float(np.nanmean(M.evaluate(real)["chord_tone_ratio"])),
              "real_notes_per_piece": float(np.mean([len(r.notes) for r in real]))}
    for mode in args.binarise:
        written, seconds = generate(model, real, args.seed, mode, args.threshold)
        result[mode] = score(written, real, band, args.midi_dir and str(Path(args.midi_dir) / mode))
        result[mode]["generate_s_per_piece"] = seconds / len(written)
        print(mode, json.dumps(result[mode]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)

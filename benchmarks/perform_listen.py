"""How well renders play their notes, heard by tools the project did not write (issue 18, item 3).

For held-out pieces of a built performance set (``python -m models.data.performance build bach``),
each renderer plays the same performed notes (the set's alignment targets: the notes as performed,
in seconds); basic-pitch (ONNX) transcribes the audio and mir_eval scores it against those notes
(note F1: onset within 50 ms and pitch; matched notes' onset error); on a monophonic set pyin's
and swift-f0's raw pitch accuracy too. Renderers:

- ``soundfont``: FluidSynth, the audio the set stored (the reference of every ratio);
- ``neural``: the performer's synthesis model and vocoder from ``--synth`` and ``--vocoder``
  (``models.performer.neural``), when given; with several ``--vocoder``, ``neural+FILE`` (the file's
  stem) for each; a phase-gradient vocoder hears the notes' harmonics unless ``--score-phase off``
  (``both``: each such renderer twice, the mel-only one as ``...+mel-phase``); ``--harmonic-bins W``
  adds each such renderer with the harmonics claiming W bins each side, as ``...+binsW``;
  ``--seam-fade N`` each neural renderer with its synthesis windows crossfaded over N frames each
  side of a seam (0: cut, as before rule E), as ``...+fadeN``;
- with ``--diagnose`` (and ``--synth``), which of the two loses the notes: ``soundfont-mel+vocoder``
  (the stored render's own log-mel through the vocoder: the vocoder alone; a phase-gradient vocoder
  told the notes' harmonics, as the renderer runs it), ``soundfont-mel+griffin-lim``
  (the same mel through Griffin-Lim), ``soundfont-mel+true-phase`` (the mel's magnitude with the
  audio's own phase: what the mel itself keeps) and ``neural-mel+griffin-lim`` (the
  synthesis model's mel through Griffin-Lim: the synthesis model without the vocoder).

    python -m benchmarks.perform_listen --set bach --pieces 6 > benchmarks/perform_listen_bach.json
    python -m benchmarks.perform_listen --set palestrina-kyries --split all --pieces 24 \
        --synth models/pretrained/performer-synth-expressive.pt    # a corpus held out from every rule:
        # scripts/heldout_kyries.py; the summary gives each performer's ratio of means too
    python -m benchmarks.perform_listen --set bach-soprano --pieces 6 --pitch \
        > benchmarks/perform_listen_soprano.json
    python -m benchmarks.perform_listen --set bach --pieces 6 --diagnose \
        --synth models/pretrained/performer-synth.pt --vocoder models/pretrained/performer-vocoder.pt
    python -m benchmarks.perform_listen --set bach --pieces 6 --synth models/pretrained/performer-synth.pt \
        --vocoder models/pretrained/performer-vocoder.pt --vocoder models/pretrained/performer-vocoder-gl.pt
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np


def reference_of(notes: np.ndarray) -> np.ndarray:
    return np.stack([notes["onset_s"], notes["onset_s"] + notes["duration_s"], notes["pitch"]], 1)


DIAGNOSES = ("soundfont-mel+vocoder", "soundfont-mel+griffin-lim", "soundfont-mel+true-phase",
             "neural-mel+griffin-lim")


def diagnosis(name: str, renderer, piece, root) -> np.ndarray:
    """Audio of one half of the neural chain (see the module's docstring)."""
    import soundfile
    import torch

    from models.performer.render import log_mel
    from models.performer.vocoder_eval import griffin_lim

    if name.startswith("soundfont"):
        audio, rate = soundfile.read(root / "audio" / f"{piece.key}.wav", dtype="float32")
        if rate != renderer.sample_rate_hz:
            raise ValueError(f"{piece.key} is at {rate} Hz, the models at {renderer.sample_rate_hz} Hz")
        audio = audio.mean(1) if audio.ndim > 1 else audio
        mel = torch.from_numpy(log_mel(audio, rate))
        if name.endswith("true-phase"):  # the mel's magnitude with the audio's own phase
            from models.performer.griffin_lim import GriffinLim

            gl, n = GriffinLim(), mel.shape[1]
            with torch.no_grad():
                padded = torch.from_numpy(np.pad(audio, (0, max(0, (n - 1) * gl.hop - len(audio)))))
                spec = gl._stft(padded[None])[0][:, :n]
                phasors = spec / spec.abs().clamp(min=1e-9)
                out = gl._istft(gl.magnitudes(mel[None]) * phasors[None], (n - 1) * gl.hop)[0]
            return out.numpy().astype(np.float32)
    else:
        pid, z = renderer.performer_id(piece.performer), renderer.latent(None)
        performed = renderer.perform(piece.notes, piece.qpm, pid)
        n = renderer.n_frames(performed)
        mel = renderer.mel(performed, piece.qpm, pid, z, n, 0, n)
    with torch.no_grad():
        if name.endswith("griffin-lim"):
            out = griffin_lim(mel[None])[0]
        elif renderer.score_phase:  # the vocoder as the renderer runs it: told the notes' harmonics
            from models.performer.phase_gradient import harmonic_hz

            notes = piece.notes
            hz = harmonic_hz(notes["onset_s"], notes["onset_s"] + notes["duration_s"], notes["pitch"], 0,
                             mel.shape[1], renderer.sample_rate_hz, renderer.hop,
                             width=renderer.harmonic_bins)
            out = renderer.vocoder(mel[None], hz[None])[0]
        else:
            out = renderer.vocoder(mel[None])[0]
    return out.numpy().astype(np.float32)


def performer_of(key: str) -> str:
    """A shard key's performer name (``<piece>__p<performer>``): its font and preset (FONT:PRESET)."""
    from models.performer.render import PERFORMERS

    n = int(key.rsplit("__p", 1)[1])
    return PERFORMERS[n].name if n < len(PERFORMERS) else str(n)


def ratio_of_means(rows: list[dict], soundfont_f1: dict[str, float]) -> float:
    """The rows' mean F1 over FluidSynth's mean F1 on the same pieces: pieces FluidSynth itself is
    transcribed badly on weigh less than in a mean of per-piece ratios."""
    ref = [soundfont_f1[r["piece"]] for r in rows]
    return round(float(np.mean([r["f1"] for r in rows]) / max(float(np.mean(ref)), 1e-9)), 4)


def main(argv: list[str] | None = None) -> None:
    from benchmarks.protocol_rtt import run_info
    from models.data import performance
    from models.performer import listen

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", default="bach")
    p.add_argument("--split", default="test", help="a split of the set, or all (default %(default)s)")
    p.add_argument("--pieces", type=int, default=6, help="held-out pieces (one performer each, the first)")
    p.add_argument("--skip", type=int, default=0, help="leave out the first N such pieces (a fresh sample)")
    p.add_argument("--pitch", action="store_true",
                   help="pyin's and swift-f0's pitch accuracy too (monophonic sets)")
    p.add_argument("--synth", help="a synthesis model file: adds the neural renderer")
    p.add_argument("--vocoder", action="append", default=[],
                   help="a vocoder file for --synth (default the shipped default); given more than once, "
                        "one neural renderer per vocoder, named neural+FILE (the file's stem)")
    p.add_argument("--score-phase", choices=("on", "off", "both"), default="on",
                   help="a phase-gradient vocoder hears the notes' harmonics (on, the renderer's default), "
                        "plays from the mel alone (off), or both, the latter as NAME+mel-phase")
    p.add_argument("--harmonic-bins", type=int, action="append", default=[],
                   help="also each score-phase renderer with its harmonics claiming this many bins each "
                        "side (phase_gradient.harmonic_hz's width), as NAME+binsN")
    p.add_argument("--seam-fade", type=int, action="append", default=[],
                   help="also each neural renderer with its synthesis windows crossfaded over this many "
                        "frames each side of a seam (0: cut; synth_model.seam_windows), as NAME+fadeN")
    p.add_argument("--rise-limit", action="append", default=[],
                   help="also the neural renderer with this rise limit, nats per frame, or 'off' "
                        "(NeuralRenderer.rise_limit; repeatable)")
    p.add_argument("--legato-rate", action="append", default=[],
                   help="also the neural renderer with this legato rate, nats per frame, or 'off' "
                        "(NeuralRenderer.legato_rate; repeatable)")
    p.add_argument("--hairpin-gain", action="store_true",
                   help="also the neural renderer with the other hairpin_gain setting (NeuralRenderer)")
    p.add_argument("--diagnose", action="store_true",
                   help="with --synth: also each half of the chain on its own (see above)")
    args = p.parse_args(argv)
    if listen.needs():
        sys.exit(f"perform_listen: install {', '.join(listen.needs())} (bash scripts/setup.sh --dev)")
    import soundfile

    renderers = {"soundfont": None}
    if args.synth:
        from models.performer.neural import NeuralRenderer

        loaded = [NeuralRenderer.load(args.synth, v) for v in args.vocoder or [None]]
        for v, r in zip(args.vocoder or [None], loaded):
            name = "neural" if len(loaded) == 1 else f"neural+{Path(v).stem}"
            plain = copy.copy(r)
            plain.score_phase = False
            if args.score_phase != "off" or not r.score_phase:
                renderers[name] = r
            if args.score_phase != "on" and r.score_phase:
                renderers[f"{name}+mel-phase" if args.score_phase == "both" else name] = plain
            for width in args.harmonic_bins if r.score_phase and args.score_phase != "off" else []:
                wide = copy.copy(r)
                wide.harmonic_bins = width
                renderers[f"{name}+bins{width}"] = wide
            for fade in args.seam_fade:
                faded = copy.copy(r)
                faded.seam_fade = fade
                renderers[f"{name}+fade{fade}"] = faded
            if args.hairpin_gain:
                other = copy.copy(r)
                other.hairpin_gain = not r.hairpin_gain
                renderers[f"{name}+hairpin-{'on' if other.hairpin_gain else 'off'}"] = other
            for legato in args.legato_rate:
                slurred = copy.copy(r)
                slurred.legato_rate = None if legato == "off" else float(legato)
                renderers[f"{name}+legato-{legato}"] = slurred
            for limit in args.rise_limit:
                limited = copy.copy(r)
                limited.rise_limit = None if limit == "off" else float(limit)
                renderers[f"{name}+rise-{limit}"] = limited
        if args.diagnose:
            renderers.update({k: loaded[0] for k in DIAGNOSES})
    root = performance.resolve(args.set)
    pieces, seen = [], set()
    for piece in performance.load(args.set, split=None if args.split == "all" else args.split):
        if piece.name not in seen:
            seen.add(piece.name)
            pieces.append(piece)
    pieces = pieces[args.skip:args.skip + args.pieces]
    rows = []
    for piece in pieces:
        reference = reference_of(piece.notes)
        for name, renderer in renderers.items():
            t0 = time.perf_counter()
            if renderer is None:
                audio, rate = soundfile.read(root / "audio" / f"{piece.key}.wav", dtype="float32")
            elif name in DIAGNOSES:
                audio, rate = diagnosis(name, renderer, piece, root), renderer.sample_rate_hz
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
                row["swift_f0_pitch_accuracy"] = round(listen.pitch_accuracy(audio, rate, reference,
                                                                             "swift-f0"), 4)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    summary = {}
    for name in renderers:
        mine = [r for r in rows if r["renderer"] == name]
        summary[name] = {k: round(float(np.nanmean([r[k] for r in mine])), 4)
                         for k in ("precision", "recall", "f1", "onset_error_ms_median", "pitch_accuracy",
                                   "swift_f0_pitch_accuracy")
                         if k in mine[0]}
        if name != "soundfont":
            ref = {r["piece"]: r["f1"] for r in rows if r["renderer"] == "soundfont"}
            summary[name]["f1_ratio_to_soundfont"] = round(
                float(np.mean([r["f1"] / ref[r["piece"]] for r in mine if ref[r["piece"]] > 0])), 4)
            # the ratio of the mean F1s: pieces FluidSynth itself is transcribed badly on weigh less
            summary[name]["f1_ratio_of_means"] = ratio_of_means(mine, ref)
            summary[name]["f1_ratio_of_means_by_performer"] = {
                performer: ratio_of_means([r for r in mine if performer_of(r["piece"]) == performer], ref)
                for performer in sorted({performer_of(r["piece"]) for r in mine})}
    print(json.dumps({**run_info(), "set": args.set, "split": args.split, "skip": args.skip,
                      "pieces": len(pieces),
                      "summary": summary, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

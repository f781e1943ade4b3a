"""Are the markings audible, and are the pitches right? The neural performer beside plain FluidSynth
of the same notes (issue 18, item 3: "markings audible on the output" and "pitch accuracy of
monophonic parts").

Every figure renders the same performed notes twice: once through ``models.performer.neural``
(the shipped synthesis model + vocoder) and once through FluidSynth (``render.render``, FluidR3_GM,
with the CC11 curve), for the performers the neural model was trained on. Nothing needs a built
performance set: the scores come from the music21 corpus and the committed split lists.

- **crafted**: 8 notes (a C major scale, one beat each at 90 qpm) realised by ``expression.realise``
  as f and as p (passage RMS dB and LUFS), as staccato and as tenuto (each note's sounding length:
  from its onset until its envelope falls 20 dB below its own peak, at most to the next onset; and
  the time above -26 dB of the render's peak, the measure of ``evaluate --markings``), all slurred
  and all detached (librosa's onset detector: onsets found, and notes after the first re-attacked,
  i.e. with a detected onset within 50 ms of theirs); and four notes at p under a crescendo, a
  diminuendo and no hairpin (``hairpin_cresc_db`` / ``hairpin_dim_db``: the last note's level
  against the first's, less the same with no hairpin).
- **held-out quartets** (``split_lists/quartets.json`` test movements, first violin alone): passages
  (runs of consecutive notes at one dynamic, at least 2 s) at f or louder against p or softer;
  how far staccato notes have died away (dB below their peak over the last quarter of their
  inter-onset interval, median) against unmarked detached notes;
  the share of notes re-attacked inside slurs against after a detached note.
- **pitch** (``split_lists/bach.json`` test chorales, soprano part alone): librosa's pyin f0
  (frames of 256 at 22,050 Hz), and SwiftF0's (``swift_f0_...``; ``listen.f0_track``), against the
  score's pitch: ``raw_pitch_accuracy`` is the share of the
  frames where the score sounds a note on which pyin reports a voiced f0 within 50 cents (mir_eval's
  raw pitch accuracy: an unvoiced frame counts as wrong); ``voiced_accuracy`` the share within 50
  cents of the frames pyin calls voiced there; ``voicing_recall`` the share pyin calls voiced;
  ``raw_chroma_accuracy`` the raw accuracy with octave errors forgiven.

    python -m benchmarks.perform_markings > benchmarks/perform_markings.json
    python -m benchmarks.perform_markings --chorales 2 --quartets 1 --quartet-beats 64   # quick
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

SR = 22_050
ENV_WIN, ENV_HOP = 512, 128  # the envelope: frame RMS, 23 ms windows every 5.8 ms
DROP_DB = 20.0  # a note has stopped sounding when its envelope is this far below its own peak
PEAK_S = 0.15  # a note's peak is looked for this long after its onset
ONSET_TOLERANCE_S = 0.05
MIN_PASSAGE_S = 2.0
SOFT, LOUD = 2, 5  # dynamic levels: p and softer, f and louder
SCALE = (60, 62, 64, 65, 67, 69, 71, 72)
QPM = 90.0
STYLES = ("piano", "organ", "strings", "choir")  # the FluidR3_GM performers the neural model knows


# --- measures ---------------------------------------------------------------------------------

def db(x: float) -> float:
    return float(20 * np.log10(max(x, 1e-12)))


def rms_db(audio: np.ndarray) -> float:
    return db(float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if len(audio) else 0.0)


def lufs(audio: np.ndarray) -> float:
    import pyloudnorm

    return float(pyloudnorm.Meter(SR).integrated_loudness(audio.astype(np.float64)))


def envelope_db(audio: np.ndarray) -> np.ndarray:
    """Frame RMS in dB, frame k centred at k * ENV_HOP samples."""
    padded = np.pad(audio.astype(np.float64), ENV_WIN // 2)
    n = 1 + (len(padded) - ENV_WIN) // ENV_HOP
    frames = np.lib.stride_tricks.as_strided(padded, (n, ENV_WIN), (8 * ENV_HOP, 8))
    return 20 * np.log10(np.sqrt(np.mean(frames ** 2, axis=1)) + 1e-9)


def sounding_s(env: np.ndarray, onset_s: float, stop_s: float) -> float:
    """How long a note sounds: from its onset until the envelope falls DROP_DB below its peak (the
    largest frame within PEAK_S of the onset), at most until ``stop_s``."""
    to_frame = SR / ENV_HOP
    a = int(round(onset_s * to_frame))
    b = min(len(env), max(a + 1, int(round(stop_s * to_frame))))
    if a >= len(env):
        return 0.0
    peak_at = a + int(np.argmax(env[a:min(b, a + int(PEAK_S * to_frame) + 1)]))
    below = np.flatnonzero(env[peak_at:b] < env[peak_at] - DROP_DB)
    end = peak_at + (int(below[0]) if len(below) else b - peak_at)
    return (end - a) / to_frame


def gap_drop_db(env: np.ndarray, onset_s: float, ioi_s: float) -> float:
    """How far below a note's peak the envelope lies over the last quarter of its inter-onset
    interval: a staccato note has died away there, a held one has not."""
    to_frame = SR / ENV_HOP
    a, b = int(round(onset_s * to_frame)), int(round((onset_s + ioi_s) * to_frame))
    late = env[a + 3 * (b - a) // 4:b]
    if b - a < 4 or b > len(env) or not len(late):
        return float("nan")
    return float(env[a:a + int(PEAK_S * to_frame) + 1].max() - late.mean())


def above_share_s(audio: np.ndarray) -> float:
    """Time above -26 dB of the render's peak (``evaluate.marking_margins``'s measure)."""
    return float((np.abs(audio) > 0.05 * np.abs(audio).max()).sum() / SR)


def detected_onsets(audio: np.ndarray) -> np.ndarray:
    import librosa

    return librosa.onset.onset_detect(y=audio.astype(np.float32), sr=SR, hop_length=256, units="time")


def reattacked(onsets_s: np.ndarray, found_s: np.ndarray) -> np.ndarray:
    """Per note onset: whether the detector found an onset within ONSET_TOLERANCE_S of it."""
    if not len(found_s):
        return np.zeros(len(onsets_s), bool)
    i = np.clip(np.searchsorted(found_s, onsets_s), 1, len(found_s) - 1) if len(found_s) > 1 else None
    nearest = (np.minimum(np.abs(found_s[i] - onsets_s), np.abs(found_s[i - 1] - onsets_s))
               if i is not None else np.abs(found_s[0] - onsets_s))
    return nearest <= ONSET_TOLERANCE_S


def pitch_figures(audio: np.ndarray, performed: np.ndarray) -> dict[str, float]:
    """Each tracker of ``listen.TRACKERS`` against a monophonic part's performed notes (a later note
    takes over where two overlap); pyin's figures unprefixed, swift-f0's as ``swift_f0_...``."""
    from models.performer import listen

    lo, hi = int(performed["pitch"].min()), int(performed["pitch"].max())
    out = {}
    for tracker in listen.TRACKERS:
        times, f0, voiced = listen.f0_track(audio, SR, lo, hi, tracker)
        ref = np.full(len(times), np.nan)
        for n in np.sort(performed, order="onset_s"):
            ref[(times >= n["onset_s"]) & (times < n["onset_s"] + n["duration_s"])] = n["pitch"]
        scored = np.isfinite(ref)
        est = np.full(len(times), np.nan)
        ok = voiced & np.isfinite(f0) & (f0 > 0)
        est[ok] = 69 + 12 * np.log2(f0[ok] / 440.0)
        heard = scored & np.isfinite(est)
        cents = (np.nan_to_num(est) - np.nan_to_num(ref)) * 100
        right = heard & (np.abs(cents) <= 50)
        folded = heard & (np.abs((cents + 600) % 1200 - 600) <= 50)  # right but for whole octaves
        prefix = "" if tracker == "pyin" else tracker.replace("-", "_") + "_"
        if not out:
            out["frames"] = int(scored.sum())
        out.update({f"{prefix}raw_pitch_accuracy": round(right.sum() / max(1, scored.sum()), 4),
                    f"{prefix}raw_chroma_accuracy": round(folded.sum() / max(1, scored.sum()), 4),
                    f"{prefix}voiced_accuracy": round(right.sum() / max(1, heard.sum()), 4),
                    f"{prefix}voicing_recall": round(heard.sum() / max(1, scored.sum()), 4)})
    return out


# --- renderers --------------------------------------------------------------------------------

class Renderers:
    """The same performed notes through FluidSynth and through the neural performer."""

    def __init__(self, synth: str | None, vocoder: str | None) -> None:
        from models.performer.neural import DEFAULT_SYNTH, DEFAULT_VOCODER, NeuralRenderer

        self.neural = NeuralRenderer.load(synth or DEFAULT_SYNTH, vocoder or DEFAULT_VOCODER)
        self.seconds = {"soundfont": 0.0, "neural": 0.0}

    def __call__(self, name: str, performed: np.ndarray, cc11: list, performer: int,
                 qpm: float) -> np.ndarray:
        from models.performer import render

        t0 = time.perf_counter()
        if name == "soundfont":
            audio = render.render(performed, cc11, performer)
        else:
            audio = self.neural.render(performed, qpm, performer=render.PERFORMERS[performer].name)
        self.seconds[name] += time.perf_counter() - t0
        return audio


def performer_id(style: str) -> int:
    from models.performer import render

    return render.PERFORMER_IDS[f"FluidR3_GM:{style}"]


def realised(marked: np.ndarray, qpm: float, performer: int, seed: int = 0) -> tuple[np.ndarray, list]:
    from models.performer import expression as ex

    return ex.realise(marked, qpm, ex.Style.of(performer), seed)


# --- crafted passages -------------------------------------------------------------------------

def crafted_notes(level: int, marks: int, slur: bool = False) -> np.ndarray:
    from models.performer import expression as ex

    n = np.zeros(len(SCALE), ex.MARKED_DTYPE)
    n["pitch"], n["onset_beats"], n["duration_beats"] = SCALE, np.arange(len(SCALE)), 1.0
    n["dynamic"], n["marks"] = level, marks
    if slur:
        n["marks"] |= ex.SLUR
        n["marks"][-1] |= ex.SLUR_END
    return n


def crafted(renderers: Renderers, style: str) -> dict[str, dict]:
    from models.performer import expression as ex

    pid = performer_id(style)
    f, p, mf = ex.DYNAMIC_NAMES.index("f"), ex.DYNAMIC_NAMES.index("p"), ex.DEFAULT_DYNAMIC
    takes = {"f": crafted_notes(f, 0), "p": crafted_notes(p, 0), "staccato": crafted_notes(mf, ex.STACCATO),
             "tenuto": crafted_notes(mf, ex.TENUTO), "slurred": crafted_notes(mf, 0, slur=True),
             "detached": crafted_notes(mf, 0)}
    out = {}
    for name in ("soundfont", "neural"):
        fig = {}
        for take, marked in takes.items():
            performed, cc11 = realised(marked, QPM, pid)
            audio = renderers(name, performed, cc11, pid, QPM)
            start, end = performed["onset_s"].min(), (performed["onset_s"] + performed["duration_s"]).max()
            passage = audio[int(start * SR):int(end * SR)]
            onsets = np.sort(performed["onset_s"])
            env = envelope_db(audio)
            stops = np.append(onsets[1:], onsets[-1] + 2.0)
            found = detected_onsets(audio)
            fig[take] = {"rms_db": round(rms_db(passage), 2), "lufs": round(lufs(passage), 2),
                         "note_sounding_s": round(float(np.mean([sounding_s(env, a, b)
                                                                 for a, b in zip(onsets, stops)])), 3),
                         "above_-26dB_s": round(above_share_s(audio), 3), "onsets_found": len(found),
                         "reattacked_after_first": int(reattacked(onsets[1:], found).sum())}
        out[name] = {
            "f_over_p_rms_db": round(fig["f"]["rms_db"] - fig["p"]["rms_db"], 2),
            "f_over_p_lufs": round(fig["f"]["lufs"] - fig["p"]["lufs"], 2),
            "staccato_over_tenuto_sounding": round(fig["staccato"]["note_sounding_s"]
                                                   / max(fig["tenuto"]["note_sounding_s"], 1e-9), 3),
            "staccato_tenuto_above_-26dB_s": [fig["staccato"]["above_-26dB_s"],
                                              fig["tenuto"]["above_-26dB_s"]],
            "reattacks_slurred_detached": [fig["slurred"]["reattacked_after_first"],
                                           fig["detached"]["reattacked_after_first"]],
            "onsets_found_slurred_detached": [fig["slurred"]["onsets_found"],
                                              fig["detached"]["onsets_found"]],
            "takes": fig}
        out[name] |= hairpin_figures(renderers, name, pid)
    return out


HAIRPIN_PITCHES = (62, 64, 65, 67)  # four notes of two beats at p under one hairpin
HAIRPIN_BEATS = 3.0


def hairpin_figures(renderers: Renderers, name: str, pid: int) -> dict[str, float]:
    """A hairpin's effect: the last note's level against the first's (0.3 s from 0.5 s after each
    onset) under a crescendo and under a diminuendo, less the same change with no hairpin (dB)."""
    from models.performer import expression as ex

    change = {}
    for hairpin in (1, -1, 0):
        marked = np.zeros(len(HAIRPIN_PITCHES), ex.MARKED_DTYPE)
        marked["pitch"] = HAIRPIN_PITCHES
        marked["onset_beats"] = np.arange(len(HAIRPIN_PITCHES)) * HAIRPIN_BEATS
        marked["duration_beats"] = HAIRPIN_BEATS
        marked["dynamic"], marked["hairpin"] = ex.DYNAMIC_NAMES.index("p"), hairpin
        performed, cc11 = realised(marked, QPM, pid)
        audio = renderers(name, performed, cc11, pid, QPM)
        onsets = np.sort(performed["onset_s"])
        level = [rms_db(audio[int((a + 0.5) * SR):int((a + 0.8) * SR)]) for a in (onsets[0], onsets[-1])]
        change[hairpin] = level[1] - level[0]
    return {"hairpin_cresc_db": round(change[1] - change[0], 2),
            "hairpin_dim_db": round(change[-1] - change[0], 2)}


# --- held-out quartets ------------------------------------------------------------------------

def passages(notes: np.ndarray) -> list[tuple[int, float, float]]:
    """(dynamic level, start s, end s) of runs of consecutive notes (by onset) at one level."""
    runs, i = [], 0
    while i < len(notes):
        j = i
        while j + 1 < len(notes) and notes["dynamic"][j + 1] == notes["dynamic"][i]:
            j += 1
        end = float((notes["onset_s"][i:j + 1] + notes["duration_s"][i:j + 1]).max())
        runs.append((int(notes["dynamic"][i]), float(notes["onset_s"][i]), end))
        i = j + 1
    return runs


def quartet_figures(audio: np.ndarray, performed: np.ndarray) -> dict:
    from models.performer import expression as ex

    notes = np.sort(performed, order="onset_s")
    loud, soft = [], []
    for level, a, b in passages(notes):
        if b - a >= MIN_PASSAGE_S and level in (*range(LOUD, 8), *range(SOFT + 1)):
            (loud if level >= LOUD else soft).append(rms_db(audio[int(a * SR):int(b * SR)]))
    # monophonic moments only: a note alone at its onset, with the next onset after it
    onsets = notes["onset_s"]
    alone = np.ones(len(notes), bool)
    close = np.diff(onsets) < 0.01
    alone[:-1] &= ~close
    alone[1:] &= ~close
    ioi = np.append(np.diff(onsets), np.inf)
    env = envelope_db(audio)
    marks = notes["marks"].astype(int)
    in_slur = np.zeros(len(notes), bool)  # the previous note is slurred into this one
    in_slur[1:] = ((marks[:-1] & ex.SLUR) > 0) & ((marks[:-1] & ex.SLUR_END) == 0)
    plain = (marks & (ex.STACCATO | ex.TENUTO | ex.SLUR | ex.ACCENT | ex.MARCATO | ex.FERMATA)) == 0
    drops = np.array([gap_drop_db(env, a, d) if np.isfinite(d) else np.nan for a, d in zip(onsets, ioi)])
    stacc = alone & ((marks & ex.STACCATO) > 0) & np.isfinite(ioi)
    detached = alone & plain & ~in_slur & np.isfinite(ioi)
    hit = reattacked(onsets, detected_onsets(audio))
    after_detached = alone & ~in_slur
    after_detached[0] = False
    pitch_change = np.append(False, np.diff(notes["pitch"].astype(int)) != 0)
    return {"loud_passages": len(loud), "soft_passages": len(soft),
            "loud_rms_db": round(float(np.mean(loud)), 2) if loud else None,
            "soft_rms_db": round(float(np.mean(soft)), 2) if soft else None,
            "f_over_p_rms_db": round(float(np.mean(loud) - np.mean(soft)), 2) if loud and soft else None,
            "staccato_notes": int(stacc.sum()), "detached_notes": int(detached.sum()),
            "staccato_gap_drop_db": round(float(np.nanmedian(drops[stacc])), 2) if stacc.any() else None,
            "detached_gap_drop_db": round(float(np.nanmedian(drops[detached])), 2)
            if detached.any() else None,
            "slurred_notes": int((alone & in_slur & pitch_change).sum()),
            "reattacked_in_slurs": round(float(hit[alone & in_slur & pitch_change].mean()), 3)
            if (alone & in_slur & pitch_change).any() else None,
            "reattacked_after_detached": round(float(hit[after_detached & pitch_change].mean()), 3)
            if (after_detached & pitch_change).any() else None}


def both(renderers: Renderers, name: str, style: str, marked: np.ndarray, qpm: float,
         measure) -> list[dict]:
    """One row per renderer: the piece's notes performed by ``style``, rendered, measured."""
    pid = performer_id(style)
    performed, cc11 = realised(marked, qpm, pid)
    rows = []
    for renderer in ("soundfont", "neural"):
        audio = renderers(renderer, performed, cc11, pid, qpm)
        rows.append({"piece": name, "style": style, "renderer": renderer, "notes": len(performed),
                     "seconds": round(len(audio) / SR, 1), **measure(audio, performed)})
        print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def quartets(renderers: Renderers, names: list[str], styles: tuple[str, ...], max_beats: float) -> list[dict]:
    from models.data.corpus import corpus_files
    from models.data.performance import read_piece

    files = {name: path for path, name in corpus_files("quartets")}
    rows = []
    for name in names:
        marked, qpm, _ = read_piece(files[name], (0,))
        marked = marked[marked["onset_beats"] < max_beats]
        for style in styles:
            rows += both(renderers, name, style, marked, qpm, quartet_figures)
    return rows


# --- pitch of held-out chorale sopranos -------------------------------------------------------

def chorales(renderers: Renderers, names: list[str], styles: tuple[str, ...]) -> list[dict]:
    from models.data.corpus import corpus_files
    from models.data.performance import read_piece

    files = {name: path for path, name in corpus_files("bach")}
    rows = []
    for k, name in enumerate(names):
        style = styles[k % len(styles)]
        marked, qpm, _ = read_piece(files[name], (0,))
        rows += both(renderers, name, style, marked, qpm, pitch_figures)
    return rows


def mean_of(rows: list[dict], key: str, renderer: str) -> float | None:
    values = [r[key] for r in rows if r["renderer"] == renderer and r.get(key) is not None]
    return round(float(np.mean(values)), 4) if values else None


def main(argv: list[str] | None = None) -> None:
    import torch

    from benchmarks.protocol_rtt import run_info
    from models.data.splits import SPLITS_DIR

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chorales", type=int, default=12,
                   help="held-out chorales for pitch (default %(default)s)")
    p.add_argument("--quartets", type=int, default=9, help="held-out quartet movements (default %(default)s)")
    p.add_argument("--quartet-beats", type=float, default=240.0,
                   help="first beats of each movement (default %(default)s: 160 s at 90 qpm)")
    p.add_argument("--styles", default=",".join(STYLES), help="FluidR3_GM performers (default %(default)s)")
    p.add_argument("--quartet-styles", default="strings,piano", help="(default %(default)s)")
    p.add_argument("--synth", help="synthesis model file (default: the shipped one)")
    p.add_argument("--vocoder", help="vocoder file (default: the shipped one)")
    p.add_argument("--harmonic-bins", type=int, help="bins each side of a harmonic (the renderer's default)")
    p.add_argument("--hairpin-gain", choices=("on", "off"), help="NeuralRenderer.hairpin_gain (its default)")
    p.add_argument("--legato-rate", help="NeuralRenderer.legato_rate, nats per frame, or 'off' (its default)")
    p.add_argument("--quartet-skip", type=int, default=0, help="leave out the first N quartet movements")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    info = run_info()
    renderers = Renderers(args.synth, args.vocoder)
    if args.harmonic_bins is not None:
        renderers.neural.harmonic_bins = args.harmonic_bins
    if args.hairpin_gain is not None:
        renderers.neural.hairpin_gain = args.hairpin_gain == "on"
    if args.legato_rate is not None:
        renderers.neural.legato_rate = None if args.legato_rate == "off" else float(args.legato_rate)
    styles = tuple(args.styles.split(","))
    splits = {s: json.loads((SPLITS_DIR / f"{s}.json").read_text())["test"] for s in ("bach", "quartets")}
    t0 = time.perf_counter()
    made = {style: crafted(renderers, style) for style in styles}
    movements = splits["quartets"][args.quartet_skip:args.quartet_skip + args.quartets]
    quartet_rows = quartets(renderers, movements, tuple(args.quartet_styles.split(",")), args.quartet_beats)
    chorale_rows = chorales(renderers, splits["bach"][:args.chorales], styles)
    summary = {}
    for r in ("soundfont", "neural"):
        summary[r] = {
            "crafted_f_over_p_rms_db": round(float(np.mean(
                [made[s][r]["f_over_p_rms_db"] for s in styles])), 2),
            "crafted_staccato_over_tenuto_sounding": round(float(np.mean(
                [made[s][r]["staccato_over_tenuto_sounding"] for s in styles])), 3),
            "crafted_reattacks_slurred_detached": [int(sum(made[s][r]["reattacks_slurred_detached"][i]
                                                           for s in styles)) for i in (0, 1)],
            **{f"crafted_{k}": round(float(np.mean([made[s][r][k] for s in styles])), 2)
               for k in ("hairpin_cresc_db", "hairpin_dim_db")},
            **{f"quartets_{k}": mean_of(quartet_rows, k, r) for k in (
                "f_over_p_rms_db", "staccato_gap_drop_db", "detached_gap_drop_db",
                "reattacked_in_slurs", "reattacked_after_detached")},
            **{f"chorale_soprano_{p}{k}": mean_of(chorale_rows, p + k, r) for p in ("", "swift_f0_")
               for k in ("raw_pitch_accuracy", "raw_chroma_accuracy", "voiced_accuracy", "voicing_recall")},
            "render_s": round(renderers.seconds[r], 1)}
    info["machine"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    models = [renderers.neural.synth_meta["name"], renderers.neural.vocoder_meta["name"],
              f"harmonic_bins={renderers.neural.harmonic_bins}", f"rise_limit={renderers.neural.rise_limit}",
              f"hairpin_gain={renderers.neural.hairpin_gain}", f"legato_rate={renderers.neural.legato_rate}"]
    trackers = ["librosa.pyin", "swift-f0 (chorale_soprano_swift_f0_...)"]
    print(json.dumps({**info, "pitch_trackers": trackers, "wall_s": round(time.perf_counter() - t0, 1),
                      "neural_models": models, "summary": summary, "crafted": made, "quartets": quartet_rows,
                      "chorales": chorale_rows}, indent=1))


if __name__ == "__main__":
    main()

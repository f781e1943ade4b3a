"""How good the composer's music is (issue 16, item 8), on the held-out Bach chorales.

    python -m benchmarks.compose_eval --model models/pretrained/composer-satb.pt \
        --json benchmarks/compose_eval.json --midi-dir /tmp/compose-eval

Sections (``--only`` picks some):

- ``nll``: held-out NLL and perplexity per note (teacher forced; conditions given, not scored).
- ``muspy``: the MusPy metrics of pieces written for each held-out chorale's meter, key and length
  (from scratch: no chords), and of pieces written over each chorale's own chords, beside the 5th-95th
  percentile band of the real chorales; computed by ``models.composer.metrics`` and cross-checked
  against the ``muspy`` package on the MIDI files written (``--midi-dir``). The chord-tone ratio of the
  chord-conditioned pieces is measured against the same chords as the real music's.
- ``infill``: hide one voice of a held-out chorale, write it again from the other three, the key and
  the chords the three sound (what the rule baseline sees), note F1 (onset and pitch) against the
  hidden voice; the rule baseline (``models.composer.baselines``) on the same pieces.
- ``accompany``: the soprano given, the other voices written: is the soprano kept note for note.
- ``controls``: random requests with per-track controls (instruments, density, pitch range,
  polyphony, rhythm): the share whose output obeys every control.
- ``speed``: 8 bars, 4 tracks, every cell written, over a held-out chorale's chords and key, end to
  end (request to Score), batch 1, one thread: the median over requests.

``--json`` adds the sections run to the file (each with its own command, commit and load), so
sections may run as separate commands. Every piece is written with one seed per piece (``--seed``
+ its index), temperature and top-p as given.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from bridge.chords import identify_chords
from models.composer import metrics as M
from models.composer.baselines import VOICES, infill_voice
from models.composer.data import bar_count, load_pieces, select_tracks
from models.composer.grammar import OursGrammar
from models.composer.inference import GRID_RHYTHMS, RHYTHMS, Composer, ComposeRequest
from models.composer.tokens import GRID_TICKS, METERS, density_bounds, density_bucket, meter_ticks
from models.data.multitrack import MultiPiece

SECTIONS = ("nll", "muspy", "infill", "accompany", "controls", "speed")


def held_out(split: str, limit: int = 0) -> list[MultiPiece]:
    """The split's chorales with all four voices, reduced to them, in a meter the model knows."""
    pieces = [p for p in select_tracks(load_pieces("bach", split), list(VOICES))
              if list(p.instruments) == list(VOICES) and _meter(p) in METERS]
    return pieces[:limit or None]


def _meter(p: MultiPiece) -> tuple[int, int]:
    return int(p.meters[0]["numerator"]), int(p.meters[0]["denominator"])


def _key(p: MultiPiece) -> tuple[int, int] | None:
    return (int(p.keys[0]["fifths"]), int(p.keys[0]["minor"])) if len(p.keys) else None


def write(composer: Composer, piece: MultiPiece, request: ComposeRequest,
          chords: np.ndarray | None = None) -> MultiPiece:
    """Compose for ``request`` with the piece's meter and key (and ``chords``, CHORD_DTYPE records
    as the set stores them) as the bar conditions; the result as a MultiPiece of the four voices with
    the real piece's meters, keys and chords."""
    plan = composer.plan(request)
    plan.bar_conditions = composer.tok.request_conditions(_meter(piece), _key(piece), chords, request.bars)
    bars = list(composer._compose(request, plan, OursGrammar(composer.tok, plan)))
    notes = np.concatenate([b.notes for b in bars])
    track = np.concatenate([b.track for b in bars]).astype(np.int16)
    index = [composer.instruments.index(v) for v in VOICES]
    remap = np.full(len(composer.instruments), -1, np.int16)
    remap[index] = np.arange(4)
    return MultiPiece(**{**piece.__dict__, "notes": notes, "track": remap[track]})


def _request(piece: MultiPiece, seed: int, args, **fields) -> ComposeRequest:
    return ComposeRequest(bars=bar_count(piece), meter=_meter(piece), seed=seed,
                          temperature=args.temperature, top_p=args.top_p, harmony=args.harmony, **fields)


# sections

def nll(args) -> dict:
    from models.composer.data import Sequences, evaluate
    from models.composer.export import load_eager
    from models.composer.representations import make_tokenizer

    model, tcfg, _ = load_eager(args.model)
    pieces = select_tracks(load_pieces("bach", args.split), list(tcfg.instruments))
    return {"pieces": len(pieces), **evaluate(model, Sequences(pieces, make_tokenizer(tcfg)))}


def muspy_section(composer: Composer, pieces: list[MultiPiece], args) -> dict:
    real = M.reference_band(pieces)
    out = {"real_band": real, "pieces": len(pieces)}
    for mode in args.modes:
        chords = mode == "chords"
        written = [write(composer, p, _request(p, args.seed + i, args), p.chords if chords else None)
                   for i, p in enumerate(tqdm(pieces, desc=f"muspy {mode}"))]
        values = M.evaluate(written)
        means = {k: float(np.nanmean(v)) for k, v in values.items()}
        if mode == "scratch":
            means.pop("chord_tone_ratio")  # no chords were asked for
        out[mode] = {"means": means, "inside": M.inside_band(means, real),
                     "notes_per_piece": float(np.mean([len(w.notes) for w in written])),
                     "real_notes_per_piece": float(np.mean([len(p.notes) for p in pieces]))}
        if args.midi_dir:
            out[mode]["muspy_check"] = cross_check(written, Path(args.midi_dir) / mode)
    return out


def cross_check(pieces: list[MultiPiece], folder: Path) -> dict:
    """Write each piece as MIDI, read it with the muspy package, and compare its six metrics with
    ours on the same notes: the largest absolute difference per metric."""
    import warnings

    import muspy

    from bridge.midi import write_midi
    from bridge.score import KEY_DTYPE, METER_DTYPE, TEMPO_DTYPE, Score, Track

    folder.mkdir(parents=True, exist_ok=True)
    worst = {k: 0.0 for k in M.MUSPY_METRICS}
    empty = 0
    for i, p in enumerate(pieces):
        tracks = [Track(name, int(p.programs[t]), notes=p.notes[p.track == t], role=name)
                  for t, name in enumerate(p.instruments)]
        score = Score(p.resolution, tracks, tempos=np.array([(0, p.qpm)], TEMPO_DTYPE),
                      meters=np.array([(0, *_meter(p))], METER_DTYPE), keys=np.zeros(0, KEY_DTYPE))
        path = folder / f"{i:03d}.mid"
        write_midi(score, path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            music = muspy.read_midi(path)
        if not any(len(t.notes) for t in music.tracks):  # muspy's groove fails on a file of no notes
            empty += 1
            continue
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
    return {"files": len(pieces), "files_without_notes": empty, "max_abs_diff": worst, "folder": str(folder)}


def infill(composer: Composer, pieces: list[MultiPiece], args) -> dict:
    model = {v: [] for v in VOICES}
    rule = {v: [] for v in VOICES}
    skipped: list[str] = []
    for i, p in enumerate(tqdm(pieces, desc="infill")):
        for h, voice in enumerate(VOICES):
            others = {v: p.notes[p.track == j] for j, v in enumerate(VOICES) if j != h}
            visible = np.concatenate(list(others.values()))
            end = int((p.notes["time"] + p.notes["duration"]).max())
            chords = identify_chords(visible, p.resolution, end)
            rhythm = {voice: args.infill_rhythm} if args.infill_rhythm else {}
            request = _request(p, args.seed + i, args, given=others, infill={voice: (0, bar_count(p))},
                               rhythm=rhythm)
            try:
                out = write(composer, p, request, chords)
            except ValueError as e:  # a given voice outside the model's range for it
                skipped.append(f"{p.name} {voice}: {e}")
                continue
            ref = p.notes[p.track == h]
            model[voice].append(M.note_f1(ref, out.notes[out.track == h])["f1"])
            rule[voice].append(M.note_f1(ref, infill_voice(p, h))["f1"])
    summary = {}
    for name, scores in (("model", model), ("rule", rule)):
        summary[name] = {f"f1/{v}": float(np.mean(s)) for v, s in scores.items()}
        summary[name]["f1"] = float(np.mean([x for s in scores.values() for x in s]))
    summary["pieces"] = len(pieces)
    summary["skipped"] = skipped
    summary["points_above_rule"] = 100 * (summary["model"]["f1"] - summary["rule"]["f1"])
    return summary


def accompany(composer: Composer, pieces: list[MultiPiece], args) -> dict:
    kept, changed = 0, []
    for i, p in enumerate(tqdm(pieces, desc="accompany")):
        melody = p.notes[p.track == 0]
        try:
            out = write(composer, p, _request(p, args.seed + i, args, given={"soprano": melody}))
        except ValueError as e:
            changed.append(f"{p.name}: {e}")
            continue
        got = out.notes[out.track == 0]
        want = np.sort(melody, order=["time", "pitch"])
        same = len(got) == len(want) and all((got[f] == want[f]).all() for f in ("time", "pitch", "duration"))
        kept += same
        if not same:
            changed.append(p.name)
    return {"pieces": len(pieces), "kept_note_for_note": kept, "changed": changed}


def controls(composer: Composer, pieces: list[MultiPiece], args) -> dict:
    """Random controls per request; each checked on the output. Density: every bar of the track
    holds a note count in the requested count's bucket; range: every note inside; rhythm: every
    onset on its grid; polyphony: no more notes starting together; instruments: no other track."""
    rng = random.Random(args.seed)
    counts = {k: [0, 0] for k in ("instruments", "density", "range", "rhythm", "polyphony", "all")}
    for i in tqdm(range(args.control_requests), desc="controls"):
        p = pieces[i % len(pieces)]
        names = rng.sample(list(VOICES), rng.randint(1, 4))
        fields: dict = {"instruments": tuple(names)}
        target = rng.choice(names)
        low, high = composer.tok.cfg.ranges[composer.instruments.index(target)]
        mid = rng.randint(low + 6, high - 6)
        fields["ranges"] = {target: (mid - 6, mid + 6)}
        fields["rhythm"] = {target: rng.choice(list(GRID_RHYTHMS))}
        fields["polyphony"] = {target: 1}
        if composer.tok.cfg.density:  # a count the rhythm leaves room for
            onsets = {"plain": 1, "moderate": 2, "busy": 8}[fields["rhythm"][target]] * _meter(p)[0]
            fields["density"] = {target: rng.choice([n for n in (1, 2, 3, 4, 6, 8) if n <= onsets])}
        request = ComposeRequest(bars=8, meter=_meter(p), seed=args.seed + i, temperature=args.temperature,
                                 top_p=args.top_p, **fields)
        out = write(composer, p, request, p.chords)
        t = VOICES.index(target)
        notes = out.notes[out.track == t]
        bar = meter_ticks(_meter(p))
        ok = {"instruments": set(np.unique(out.track).tolist()) <= {VOICES.index(n) for n in names},
              "range": bool(((notes["pitch"] >= mid - 6) & (notes["pitch"] <= mid + 6)).all()),
              "polyphony": len(np.unique(notes["time"])) == len(notes)}
        grid = RHYTHMS[fields["rhythm"][target]]
        step = int(bar // _meter(p)[0] * grid) if grid else GRID_TICKS
        ok["rhythm"] = bool((notes["time"] % step == 0).all())
        if "density" in fields:
            lo, hi = density_bounds(density_bucket(fields["density"][target]))
            per_bar = np.bincount(notes["time"] // bar, minlength=8)[:8]
            ok["density"] = bool(((per_bar >= lo) & (per_bar <= hi)).all())
        ok["all"] = all(ok.values())
        for k, v in ok.items():
            counts[k][0] += v
            counts[k][1] += 1
    return {k: {"obeyed": a, "requests": n, "rate": a / n} for k, (a, n) in counts.items() if n}


def speed(composer: Composer, pieces: list[MultiPiece], args) -> dict:
    """Every cell of 8 bars written; and 8 bars of a chorale with one voice (in turn soprano, alto,
    tenor, bass) hidden and filled, the other three given."""
    seconds, cpu, notes = [], [], []
    fill_seconds, fill_cpu = [], []
    for i in range(args.speed_requests):
        p = pieces[i % len(pieces)]
        end = 8 * meter_ticks(_meter(p))
        chords = p.chords[p.chords["time"] < end]
        request = ComposeRequest(bars=8, meter=_meter(p), seed=args.seed + i, temperature=args.temperature,
                                 top_p=args.top_p)
        t, c = time.perf_counter(), time.process_time()
        out = write(composer, p, request, chords)
        seconds.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)  # the cores are shared: CPU time shows the work itself
        notes.append(len(out.notes))
        hidden = VOICES[i % 4]
        given = {v: p.notes[(p.track == j) & (p.notes["time"] < end)]
                 for j, v in enumerate(VOICES) if v != hidden}
        request = ComposeRequest(bars=8, meter=_meter(p), seed=args.seed + i, temperature=args.temperature,
                                 top_p=args.top_p, given=given, infill={hidden: (0, 8)})
        t, c = time.perf_counter(), time.process_time()
        write(composer, p, request, chords)
        fill_seconds.append(time.perf_counter() - t)
        fill_cpu.append(time.process_time() - c)
    return {"requests": len(seconds), "median_s": statistics.median(seconds),
            "p90_s": float(np.percentile(seconds, 90)), "median_cpu_s": statistics.median(cpu),
            "notes_per_request": float(np.mean(notes)), "infill_median_s": statistics.median(fill_seconds),
            "infill_p90_s": float(np.percentile(fill_seconds, 90)),
            "infill_median_cpu_s": statistics.median(fill_cpu)}


def markdown(result: dict) -> str:
    """The RESULTS tables of an evaluation file (or several merged)."""
    lines = []
    if "nll" in result:
        n = result["nll"]
        lines += [f"Held-out NLL per note {n['nll_per_note']:.3f} nats, perplexity per note "
                  f"{n['ppl_per_note']:.2f} ({n['pieces']} pieces, {n['notes']:,} notes, "
                  f"{n['tokens_per_bar']:.1f} tokens per bar).", ""]
    if "muspy" in result:
        m = result["muspy"]
        band = m["real_band"]
        lines += ["| metric | real 5th–95th % (mean) | from scratch | inside | over the chorales' chords "
                  "| inside |", "|---|---|---:|---|---:|---|"]
        for k in (*M.MUSPY_METRICS, "chord_tone_ratio"):
            b = band[k]
            row = f"| {k} | {b['low']:.3f}–{b['high']:.3f} ({b['mean']:.3f}) |"
            for mode in ("scratch", "chords"):
                v = m[mode]["means"].get(k) if mode in m else None
                inside = "yes" if v is not None and m[mode]["inside"][k] else "no"
                row += " — | — |" if v is None else f" {v:.3f} | {inside} |"
            lines.append(row)
        lines += ["", f"Notes per piece: real {m['scratch']['real_notes_per_piece']:.1f}, from scratch "
                  f"{m['scratch']['notes_per_piece']:.1f}, over the chords "
                  f"{m['chords']['notes_per_piece']:.1f}."]
        for mode in ("scratch", "chords"):
            c = m.get(mode, {}).get("muspy_check")
            if c:
                worst = max(c["max_abs_diff"].values())
                lines.append(f"muspy package on the {c['files']} MIDI files written ({mode}): largest "
                             f"difference from ours {worst:.2g} ({c.get('files_without_notes', 0)} files "
                             "without notes skipped).")
        lines.append("")
    if "infill" in result:
        f = result["infill"]
        lines += ["| voice infill, note F1 | soprano | alto | tenor | bass | mean |",
                  "|---|---:|---:|---:|---:|---:|"]
        for who in ("model", "rule"):
            lines.append(f"| {who} | " + " | ".join(f"{f[who][f'f1/{v}']:.3f}" for v in VOICES)
                         + f" | {f[who]['f1']:.3f} |")
        lines += ["", f"Model minus rule: {f['points_above_rule']:+.1f} points over {f['pieces']} pieces "
                  f"(temperature {f['run']['temperature']}, top-p {f['run']['top_p']}).", ""]
    if "accompany" in result:
        a = result["accompany"]
        lines += [f"Accompaniment: the soprano kept note for note in {a['kept_note_for_note']} of "
                  f"{a['pieces']} pieces.", ""]
    if "controls" in result:
        c = result["controls"]
        lines += ["| control | obeyed | requests |", "|---|---:|---:|"]
        lines += [f"| {k} | {v['rate']:.1%} | {v['requests']} |" for k, v in c.items() if k != "run"] + [""]
    if "speed" in result:
        sp = result["speed"]
        lines += [f"8 bars, 4 tracks, every cell written: median {sp['median_s']:.2f} s wall "
                  f"({sp['median_cpu_s']:.2f} s CPU), p90 {sp['p90_s']:.2f} s, "
                  f"{sp['notes_per_request']:.0f} notes per request, {sp['requests']} requests, load "
                  f"average at the start {sp['run']['machine']['load_avg_start'][0]}."]
        if "infill_median_s" in sp:
            lines.append(f"8 bars, one of the 4 voices filled, three given: median "
                         f"{sp['infill_median_s']:.2f} s wall ({sp['infill_median_cpu_s']:.2f} s CPU), "
                         f"p90 {sp['infill_p90_s']:.2f} s.")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    from benchmarks.protocol_rtt import run_info

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="models/pretrained/composer-satb.pt")
    p.add_argument("--split", default="test", choices=["valid", "test"])
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--pieces", type=int, default=0, help="the first N held-out chorales (0: all)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--harmony", type=float, default=None,
                   help="chord-tone bias in nats where bars carry chords (default: the composer's HARMONY)")
    p.add_argument("--modes", nargs="+", choices=["scratch", "chords"], default=["scratch", "chords"],
                   help="muspy: from scratch, over the chorales' chords, or both")
    p.add_argument("--infill-rhythm", choices=list(GRID_RHYTHMS),
                   help="infill: the filled voice's rhythm control (plain: onsets on beats, as the rule's)")
    p.add_argument("--control-requests", type=int, default=100)
    p.add_argument("--speed-requests", type=int, default=11)
    p.add_argument("--midi-dir", help="muspy: write the generated pieces here and read them with muspy")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--report", nargs="+", help="print the RESULTS tables of these files and stop")
    args = p.parse_args(argv)
    if args.report:
        merged = {k: v for f in args.report for k, v in json.loads(Path(f).read_text()).items()}
        print(markdown(merged))
        return merged
    torch.set_num_threads(1)
    # sections run one command at a time go into one file: each section keeps its own run
    result = json.loads(Path(args.json).read_text()) if args.json and Path(args.json).exists() else {}
    run = {**run_info(), "model": args.model, "split": args.split, "temperature": args.temperature,
           "top_p": args.top_p, "seed": args.seed, "harmony": args.harmony}
    composer = Composer.load(args.model)
    pieces = held_out(args.split, args.pieces)
    sections = {"nll": lambda: nll(args), "muspy": lambda: muspy_section(composer, pieces, args),
                "infill": lambda: infill(composer, pieces, args),
                "accompany": lambda: accompany(composer, pieces, args),
                "controls": lambda: controls(composer, pieces, args),
                "speed": lambda: speed(composer, pieces, args)}
    for name in args.only:
        result[name] = {"run": run, **sections[name]()}
        print(name, json.dumps(result[name]), flush=True)
        if args.json:  # after each section: a long run keeps what it finished
            Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()

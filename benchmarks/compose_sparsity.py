"""Why a composer writes sparse music: teacher-forced calibration against free-running samples.

    python -m benchmarks.compose_sparsity --model models/pretrained/composer-satb.pt --json out.json

Teacher forced on held-out chorales (test split, first 256 tokens of each): the model's expected
duration against the real one, and its probability of ending a track bar after a note, split by
whether the note fills the bar. Free running (8 bars, key C, seeds 0..3; 4/4 and 3/4 without chords,
4/4 over "C G Am F", the request the first model card measured):
notes per track bar, mean duration, and where each track bar's last note ends, in 32nd-note steps
(a 4/4 bar is 32, a 3/4 bar 24), beside the real chorales' notes per bar and durations.
"""
from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.composer.baselines import VOICES
from models.composer.data import bar_count, load_pieces, select_tracks
from models.composer.export import load_eager
from models.composer.grammar import OursGrammar
from models.composer.inference import Composer, ComposeRequest
from models.composer.representations import make_tokenizer


@torch.no_grad()
def teacher_forced(path: str, pieces: list) -> dict:
    model, tcfg, _ = load_eager(path)
    tok = make_tokenizer(tcfg)
    v, kinds = tok.vocab, tok.kind_names
    ends = torch.tensor(sorted({*v.span("TRACK"), *v.span("BAR"), v.id("EOS")}))
    dur0, n_dur = v.kinds["DUR"]
    pos0 = v.kinds["POS"][0]
    expected, actual = [], []
    end_p = {True: [], False: []}
    end_real = {True: [], False: []}
    for p in pieces:
        ids = tok.encode(p)[:model.block_size]
        bar_steps = int(p.meters[0]["numerator"]) * 32 // int(p.meters[0]["denominator"])
        probs = F.softmax(model(torch.from_numpy(ids[None]))[0], -1)
        pos = 0
        for t in range(len(ids) - 1):
            kind, nxt = kinds[tok.kind_of[ids[t]]], int(ids[t + 1])
            if kind == "POS":
                pos = int(ids[t]) - pos0
            if kinds[tok.kind_of[nxt]] == "DUR":
                d = probs[t, dur0:dur0 + n_dur]
                expected.append(float((d / d.sum() * torch.arange(1, n_dur + 1)).sum()))
                actual.append(nxt - dur0 + 1)
            if kind == "DUR":
                filled = pos + int(ids[t]) - dur0 + 1 >= bar_steps
                end_p[filled].append(float(probs[t, ends].sum()))
                end_real[filled].append(nxt in ends.tolist())
    out = {"expected_duration_steps": float(np.mean(expected)), "real_duration_steps": float(np.mean(actual))}
    for f, name in ((True, "filled"), (False, "unfilled")):
        out[f"p_end_{name}"], out[f"real_end_{name}"] = float(np.mean(end_p[f])), float(np.mean(end_real[f]))
    return out


def free_running(path: str, seeds: int = 4) -> dict:
    composer = Composer.load(path)
    out = {}
    for meter, chords in (((4, 4), None), ((3, 4), None), ((4, 4), "C G Am F")):
        ends, notes, durs = collections.Counter(), 0, []
        for seed in range(seeds):
            request = ComposeRequest(bars=8, meter=meter, key="C", seed=seed, chords=chords)
            plan = composer.plan(request)
            grammar = OursGrammar(composer.tok, plan)
            list(composer._compose(request, plan, grammar))
            last: dict = {}
            for bar, pos, _, dur, inst in grammar.notes:
                last[(bar, inst)] = max(last.get((bar, inst), 0), pos + dur)
                durs.append(dur)
            ends.update(min(e, 40) for e in last.values())
            notes += len(grammar.notes)
        cells = seeds * 8 * len(composer.instruments)
        out[f"{meter[0]}/{meter[1]}" + (f" over {chords}" if chords else "")] = {
            "notes_per_track_bar": notes / cells, "mean_duration_steps": float(np.mean(durs)),
            "track_bar_end_steps": {str(k): n for k, n in sorted(ends.items())},
            "empty_track_bars": cells - sum(ends.values())}
    return out


def real(pieces: list) -> dict:
    notes = sum(len(p.notes) for p in pieces)
    cells = sum(bar_count(p) * len(VOICES) for p in pieces)
    return {"notes_per_track_bar": notes / cells,
            "mean_duration_steps": float(np.mean(np.concatenate([p.notes["duration"] for p in pieces]) / 3))}


def main(argv: list[str] | None = None) -> dict:
    from benchmarks.protocol_rtt import run_info

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="models/pretrained/composer-satb.pt")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    pieces = [p for p in select_tracks(load_pieces("bach", "test"), list(VOICES))
              if list(p.instruments) == list(VOICES)]
    result = {**run_info(), "model": args.model, "teacher_forced": teacher_forced(args.model, pieces),
              "free_running": free_running(args.model), "real": real(pieces)}
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()

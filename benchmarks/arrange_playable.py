"""Playable parts: what the range- and polyphony-aware decoder changes, before and after.

1. Held-out Bach chorales (test split), the paper's protocol (first 2000 notes of each piece,
   micro-averaged): per-note accuracy of each shipped SATB model with the decoder as it was
   (one note at a time per part, no ranges) and as it is (the ensemble's ranges and notes at once,
   monophonic stretches kept in one part).
2. Real keyboard music and folk tunes from the music21 corpus, arranged for SATB and string
   quartet by the offline models: notes out of their part's range, notes stacked on a part that
   plays one note at a time (divisi), and how many parts a monophonic tune is spread over.

    git archive 6f43107 | (mkdir -p /tmp/dm-before && tar -x -C /tmp/dm-before)
    python -m benchmarks.arrange_playable --before-tree /tmp/dm-before \
        --json benchmarks/arrange_playable.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from bridge.scorefile import read_score
from engine.registry import Registry
from engine.tasks.arrange import ArrangeOptions, arrange, part_limits
from models.arranger import decoding
from models.arranger.features import FeatureConfig
from models.arranger.inference import log_probs
from models.arranger.metrics import EVAL_NOTES

PIANO = ("joplin/maple_leaf_rag.mxl", "mozart/k545/movement1_exposition.mxl", "chopin/mazurka06-2.krn",
         "bach/bwv846.mxl", "schumann_clara/polonaise_op1n1.mxl")
TUNES = ("essenFolksong/altdeu10.abc", "ryansMammoth/AcaciaReel.abc")


# Run in the tree of the code before (``--before-tree``): the labels it gives, as JSON on stdout.
BEFORE_SNIPPET = """
import json, sys
import numpy as np, torch
from music21 import corpus
from bridge.scorefile import read_score
from engine.registry import Registry
from engine.tasks.arrange import arrange
from models.arranger import decoding
from models.arranger.features import FeatureConfig
from models.arranger.inference import log_probs
from models.data import corpus as ds
torch.set_num_threads(1)
registry, out = Registry(), {}
pieces = ds.load("bach", "test")
for mode in ("online", "offline"):
    model = registry.find_arranger("satb", mode)
    meta = model.metadata
    labels = []
    for piece in pieces:
        notes = piece.notes[:%(eval_notes)d]
        logp = log_probs(model.module, notes, FeatureConfig(**meta["features"]), len(meta["parts"]))
        labels.append(decoding.DECODERS[meta["decoder"]](notes, logp).tolist())
    out["chorales/" + mode] = labels
for name in %(pieces)r:
    score = read_score(str(corpus.getWork(name)))
    for ensemble in ("satb", "string_quartet"):
        a = arrange(score, registry.find_arranger(ensemble, "offline"))
        out[name + "/" + ensemble] = [a.notes.tolist(), a.labels.tolist()]
json.dump(out, sys.stdout)
"""


def labels_before(tree: Path) -> dict:
    code = BEFORE_SNIPPET % {"eval_notes": EVAL_NOTES, "pieces": PIANO + TUNES}
    done = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(tree)})
    return json.loads(done.stdout)


def chorale_rows(registry: Registry, before: dict) -> list[dict]:
    from models.data import corpus as ds

    pieces = ds.load("bach", "test")
    rows = []
    for mode in ("online", "offline"):
        model = registry.find_arranger("satb", mode)
        meta = model.metadata
        fcfg = FeatureConfig(**meta["features"])
        decode = decoding.DECODERS[meta["decoder"]]
        limits = part_limits(model, ArrangeOptions())
        right_before = right_after = total = 0
        for piece, old in zip(pieces, before[f"chorales/{mode}"]):
            notes, labels = piece.notes[:EVAL_NOTES], piece.labels[:EVAL_NOTES]
            logp = log_probs(model.module, notes, fcfg, len(meta["parts"]))
            right_before += int((np.array(old) == labels).sum())
            right_after += int((decode(notes, logp, limits) == labels).sum())
            total += len(notes)
        rows.append({"model": model.name, "decoder": meta["decoder"], "notes": total,
                     "accuracy_before": right_before / total, "accuracy_after": right_after / total})
    return rows


def _counts(arrangement) -> dict:
    flags = arrangement.flags()
    return {"out_of_range": int((flags == decoding.OUT_OF_RANGE).sum()),
            "stacked": int((flags == decoding.DIVISI).sum()),
            "extra": int((flags == decoding.EXTRA).sum()),
            "parts_used": int(len(np.unique(arrangement.labels)))}


def piece_rows(registry: Registry, before: dict) -> list[dict]:
    from music21 import corpus

    rows = []
    for name in PIANO + TUNES:
        score = read_score(str(corpus.getWork(name)))
        for ensemble in ("satb", "string_quartet"):
            model = registry.find_arranger(ensemble, "offline")
            after = arrange(score, model)
            notes, labels = before[f"{name}/{ensemble}"]
            old = dataclasses.replace(after, notes=np.array([tuple(n) for n in notes], after.notes.dtype),
                                      labels=np.array(labels, np.int64))
            extras = arrange(score, model, ArrangeOptions(keep_extras=True))
            rows.append({"piece": name, "ensemble": ensemble, "notes": len(after.notes),
                         "before": _counts(old), "after": _counts(after), "keep_extras": _counts(extras)})
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before-tree", required=True, type=Path,
                   help="a checkout of the code to compare with (git archive REV | tar -x -C DIR)")
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    registry = Registry()
    before = labels_before(args.before_tree)
    out = {"chorales": chorale_rows(registry, before), "pieces": piece_rows(registry, before)}
    print("| model | decoder | notes | accuracy before % | accuracy after % |")
    print("|---|---|---:|---:|---:|")
    for r in out["chorales"]:
        print(f"| {r['model']} | {r['decoder']} | {r['notes']} | {100 * r['accuracy_before']:.2f} | "
              f"{100 * r['accuracy_after']:.2f} |")
    print()
    print("| piece | ensemble | notes | out of range before → after | stacked before → after | "
          "parts used before → after | --keep-extras: to Keyboard |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in out["pieces"]:
        b, a = r["before"], r["after"]
        print(f"| {r['piece']} | {r['ensemble']} | {r['notes']} | "
              f"{b['out_of_range']} → {a['out_of_range']} | {b['stacked']} → {a['stacked']} | "
              f"{b['parts_used']} → {a['parts_used']} | {r['keep_extras']['extra']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

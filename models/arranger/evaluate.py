"""Evaluate arrangers and baselines with the Arranger paper's protocol.

Per-note accuracy on the first 2000 notes of each test piece, micro-averaged, plus soundness,
completeness and per-part F1. Models are checkpoints (``best.pt``) or exported ``.pt`` files; each
is scored with plain argmax and with the monophonic-part decoder of its mode (an ablation row).

    python -m models.arranger.evaluate --data bach --models models/pretrained/arranger-satb-*.pt \
        --json runs/eval-bach.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from models.arranger.baselines import all_baselines, first_notes
from models.arranger.decoding import default_decoder
from models.arranger.metrics import Scores
from models.arranger.model import ArrangerConfig
from models.data import corpus as ds
from models.data.splits import SPLIT_NAMES


def load_any(path: str | Path):
    """(module, ArrangerConfig, name) from a training checkpoint or an exported model (TorchScript
    .pt or torch.export .pt2)."""
    from models.arranger.train import load_checkpoint
    from models.format import load_exported, load_scripted

    path = Path(path)
    try:
        module, meta = load_exported(path) if path.suffix == ".pt2" else load_scripted(path)
    except Exception:  # not TorchScript: a training checkpoint
        model, mcfg, _ = load_checkpoint(path)
        return model, mcfg, path.parent.name
    return module, ArrangerConfig.from_dict(meta["model"]), meta["name"]


def evaluate_all(data: str, model_paths: list[str], split: str = "test",
                 baselines: bool = True) -> list[dict]:
    from models.arranger.train import evaluate

    torch.set_num_threads(1)
    train, test = ds.load(data, "train"), ds.load(data, split)
    if not test:
        raise ValueError(f"dataset {data!r} has no {split} pieces")
    n_parts = int(max(p.labels.max() for p in train + test)) + 1
    rows = []
    if baselines:
        for b in all_baselines():
            b.fit(train)
            s = Scores(n_parts)
            for p in test:
                s.add(b.predict(p.notes, first_notes(p.labels, n_parts)), p.labels)
            rows.append({"model": b.name, "decoder": "-", **s.summary()})
    for path in model_paths:
        module, mcfg, name = load_any(path)
        mode = "online" if mcfg.causal else "offline"
        hints = mcfg.features.use_entry_hints or mcfg.features.use_pitch_hints
        default = default_decoder(mcfg.causal, mcfg.features.use_chord_context)
        if mcfg.features.use_voice_state:
            decoders = ("argmax", "notewise")
        elif default == "chordwise":
            decoders = ("argmax", "chordwise", "chordwise-ordered")
        else:
            decoders = ("argmax", "notewise")
        for decoder, result in evaluate(module, test, mcfg, decoders, hints=hints).items():
            rows.append({"model": name, "mode": mode, "decoder": decoder, **result})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| model | mode | decoder | accuracy % | soundness % | completeness % | F1 per part |",
             "|---|---|---|---:|---:|---:|---|"]
    for r in rows:
        f1 = " / ".join(f"{100 * x:.1f}" for x in r["f1_per_part"])
        lines.append(f"| {r['model']} | {r.get('mode', '-')} | {r['decoder']} | {100 * r['accuracy']:.2f} | "
                     f"{100 * r['soundness']:.2f} | {100 * r['completeness']:.2f} | {f1} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="bach", help="built dataset name or .npz path")
    p.add_argument("--models", nargs="*", default=[], help="checkpoints or exported .pt files")
    p.add_argument("--split", default="test", choices=SPLIT_NAMES)
    p.add_argument("--no-baselines", action="store_true")
    p.add_argument("--json", help="also write the rows as JSON here")
    args = p.parse_args(argv)
    rows = evaluate_all(args.data, args.models, args.split, not args.no_baselines)
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

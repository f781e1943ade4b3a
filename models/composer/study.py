"""The representation study: the same small decoder trained the same number of tokens on each
tokenisation, then held-out NLL per note, tokens per bar and decoding speed; and the KV-cache
decoding benchmark (cached ``step`` against a plain no-cache loop, same dimensions, batch 1).

    python -m models.composer.study run --out runs/study --max-steps 400      # trains, one at a time
    python -m models.composer.study bench --out runs/study                    # KV cache vs plain
    python -m models.composer.study report --out runs/study                   # -> docs/representations.md
    python -m models.composer.study test --checkpoint runs/composer-satb/best.pt   # test-split NLL
    python -m models.composer.study speed --model models/pretrained/composer-satb.pt
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from models.composer.data import bar_count, load_pieces, select_tracks, without_conditions
from models.composer.model import Composer, ComposerConfig, generate_cached, generate_plain
from models.composer.representations import make_tokenizer
from models.composer.tokens import REPRESENTATIONS
from models.composer.train import TrainConfig, load_checkpoint, train

STUDY = dict(data="bach", d_model=128, n_layers=3, n_heads=4, block_size=256, batch_size=8,
             lr=2e-3, min_lr=2e-4, warmup_steps=40, dropout=0.1, eval_every=100000, threads=1)
BENCH = dict(d_model=256, n_layers=5, n_heads=8, block_size=512)  # ~4M parameters with its vocabulary


@torch.no_grad()
def decode_speed(model, n_new: int, prompt: int = 1, repeats: int = 2, plain: bool = False) -> float:
    """Tokens per second sampling ``n_new`` tokens at batch 1 (best of ``repeats``)."""
    model.eval()
    best = 0.0
    for r in range(repeats):
        g = torch.Generator().manual_seed(r)
        idx = torch.randint(0, model.cfg.vocab_size, (1, prompt), generator=g)
        t = time.perf_counter()
        (generate_plain if plain else generate_cached)(model, idx, n_new, generator=g)
        best = max(best, n_new / (time.perf_counter() - t))
    return best


def run(out: Path, max_steps: int, minutes: float, reps: tuple[str, ...], instruments: str = "") -> None:
    torch.set_num_threads(1)
    results = _read(out)
    for rep in reps:
        conditions = rep != "ours-meter"  # the ablation: ours with meter tokens only
        cfg = TrainConfig(**STUDY, rep=rep.split("-")[0], out=str(out / rep), max_steps=max_steps,
                          minutes=minutes, conditions=conditions, instruments=instruments)
        result = train(cfg, progress=False)
        model, mcfg, _, ckpt = load_checkpoint(out / rep / "best.pt")
        tok_s = decode_speed(model, n_new=mcfg.block_size - 1)
        valid = ckpt["metrics"]
        results[rep] = {**valid, "steps": result["steps"], "train_minutes": result["seconds"] / 60,
                        "tokens_seen": result["steps"] * cfg.batch_size * cfg.block_size,
                        "n_params": result["n_params"], "vocab": mcfg.vocab_size,
                        "decode_tok_s": tok_s, "decode_notes_s": tok_s / valid["tokens_per_note"]}
        (out / "study.json").write_text(json.dumps(results, indent=1))
        print(rep, json.dumps(results[rep]), flush=True)


def bench(out: Path, n_new: int = 384) -> dict:
    """KV cache against the plain loop on the ~4M config, then every study model's decoding speed
    again, back to back, so that they are measured under the same load on the shared CPU."""
    torch.set_num_threads(1)
    results = _read(out)
    valid = load_pieces("bach", "valid")
    for rep in [r for r in (*REPRESENTATIONS, "ours-meter") if r in results]:
        model, mcfg, tcfg, ckpt = load_checkpoint(out / rep / "best.pt")
        pieces = valid
        if ckpt["train_config"].get("instruments"):  # a run with --instruments: its tracks only
            pieces = select_tracks(valid, list(tcfg.instruments))
        if rep == "ours-meter":
            pieces = without_conditions(pieces)
        # bars of music (the first run counted REMI's per-track BAR tokens)
        results[rep]["tokens_per_bar"] = evaluate_lengths(make_tokenizer(tcfg), pieces)
        tok_s = decode_speed(model, n_new=mcfg.block_size - 1, repeats=3)
        results[rep].update(decode_tok_s=tok_s, decode_notes_s=tok_s / results[rep]["tokens_per_note"])
    model = Composer(ComposerConfig(vocab_size=630, dropout=0.0, **BENCH)).eval()
    cached = decode_speed(model, n_new)
    plain = decode_speed(model, n_new, plain=True, repeats=1)
    result = {"n_params": model.n_params(), "n_new": n_new, "cached_tok_s": cached,
              "plain_tok_s": plain, "speedup": cached / plain, "config": BENCH, "threads": 1}
    results["bench"] = result
    (out / "study.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(result), flush=True)
    return result


def compose_speed(path: Path, bars: int = 8, seeds: int = 5, chords: str | None = "C G Am F") -> dict:
    """An exported composer writing ``bars`` bars for all its instruments over ``chords``, grammar
    and range masks on, batch 1, one thread: median seconds per request, notes and tokens per second."""
    import statistics

    from models.composer.grammar import OursGrammar
    from models.composer.inference import Composer, ComposeRequest

    torch.set_num_threads(1)
    composer = Composer.load(path)
    seconds, notes, tokens = [], 0, 0
    for seed in range(seeds):
        request = ComposeRequest(bars=bars, chords=chords, key="C", seed=seed)
        plan = composer.plan(request)
        grammar = OursGrammar(composer.tok, plan)
        t = time.perf_counter()
        written = list(composer._compose(request, plan, grammar))
        seconds.append(time.perf_counter() - t)
        notes += sum(len(b.notes) for b in written)
        tokens += len(grammar.tokens)
    return {"bars": bars, "seeds": seeds, "median_s": statistics.median(seconds),
            "notes_s": notes / sum(seconds), "tokens_s": tokens / sum(seconds), "notes": notes / seeds}


def held_out(checkpoint: Path, split: str = "test") -> dict:
    """A checkpoint's NLL per note on a split of its training set (the model card's figures)."""
    from models.composer.data import Sequences, evaluate

    torch.set_num_threads(1)
    model, _, tcfg, ckpt = load_checkpoint(checkpoint)
    # the tracks the model writes (a set's other instruments are not in its vocabulary)
    pieces = select_tracks(load_pieces(ckpt["train_config"]["data"], split), list(tcfg.instruments))
    if not ckpt["train_config"].get("conditions", True):
        pieces = without_conditions(pieces)
    return {"split": split, "pieces": len(pieces), **evaluate(model, Sequences(pieces, make_tokenizer(tcfg)))}


def evaluate_lengths(tok, pieces: list) -> float:
    """Tokens per bar of music over ``pieces``."""
    tokens = sum(len(tok.encode(p)) for p in pieces)
    return tokens / sum(bar_count(p) for p in pieces)


def _read(out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "study.json"
    return json.loads(path.read_text()) if path.exists() else {}


def report(out: Path, doc: Path, marker: str = "study") -> str:
    """The measured table, in markdown, spliced into ``doc`` between ``<!-- marker -->`` and
    ``<!-- /marker -->``."""
    r = _read(out)
    rows = ["| representation | NLL/note (nats) | perplexity/note | tokens/note | tokens/bar | vocab | "
            "steps | minutes | decoding tok/s | decoding notes/s |", "|---" * 10 + "|"]
    for rep in (*REPRESENTATIONS, "ours-meter"):
        if rep in r:
            m = r[rep]
            rows.append(f"| {rep} | {m['nll_per_note']:.3f} | {m['ppl_per_note']:.2f} | "
                        f"{m['tokens_per_note']:.2f} | {m['tokens_per_bar']:.1f} | {m['vocab']} | "
                        f"{m['steps']} | "
                        f"{m['train_minutes']:.1f} | {m['decode_tok_s']:.0f} | {m['decode_notes_s']:.0f} |")
    if "remi" in r and "ours" in r:
        cut = 1 - r["ours"]["ppl_per_note"] / r["remi"]["ppl_per_note"]
        rows.append(f"\nOurs against REMI+: per-note perplexity {cut:.1%} lower "
                    "(target: at least 20 % lower).")
    if "bench" in r:
        b = r["bench"]
        rows.append(f"\nKV cache, batch 1, {b['n_params'] / 1e6:.1f}M parameters ({b['config']}), "
                    f"{b['n_new']} new tokens, 1 thread: {b['cached_tok_s']:.0f} tok/s cached against "
                    f"{b['plain_tok_s']:.0f} tok/s for the plain loop: {b['speedup']:.1f}x.")
    table = "\n".join(rows)
    text = doc.read_text() if doc.exists() else f"<!-- {marker} -->\n<!-- /{marker} -->\n"
    head, _, rest = text.partition(f"<!-- {marker} -->")
    _, _, tail = rest.partition(f"<!-- /{marker} -->")
    doc.write_text(f"{head}<!-- {marker} -->\n{table}\n<!-- /{marker} -->{tail}")
    return table


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["run", "bench", "report", "speed", "test"])
    p.add_argument("--checkpoint", help="test: a checkpoint whose held-out NLL to measure")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"], help="test: which split")
    p.add_argument("--model", help="speed: an exported composer file")
    p.add_argument("--out", default="runs/study")
    p.add_argument("--max-steps", type=int, default=400)
    p.add_argument("--minutes", type=float, default=9.0, help="cap per representation")
    p.add_argument("--reps", nargs="+", default=list(REPRESENTATIONS),
                   choices=(*REPRESENTATIONS, "ours-meter"))
    p.add_argument("--doc", default="docs/representations.md")
    p.add_argument("--marker", default="study", help="report: the doc section to fill")
    p.add_argument("--instruments", default="", help="run: keep these tracks, e.g. soprano,alto,tenor,bass")
    p.add_argument("--new-tokens", type=int, default=384, help="bench: tokens generated after one")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.what == "run":
        run(out, args.max_steps, args.minutes, tuple(args.reps), args.instruments)
    elif args.what == "bench":
        bench(out, args.new_tokens)
    elif args.what == "test":
        print(json.dumps(held_out(Path(args.checkpoint), args.split)))
    elif args.what == "speed":
        print(json.dumps(compose_speed(Path(args.model))))
    else:
        print(report(out, Path(args.doc), args.marker))


if __name__ == "__main__":
    main()


__all__ = ["STUDY", "bench", "decode_speed", "report", "run"]

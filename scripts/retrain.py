"""Retrain, evaluate, benchmark, export and document one shipped model: the one command each model
card names.

    python scripts/retrain.py arranger-satb-offline            # config in models/configs/<name>.json
    python scripts/retrain.py arranger-satb-offline --skip-train --run runs/x   # card from a run

Builds the dataset if it is missing, trains into runs/<name>, scores the test split with the
paper's protocol (with the baselines), measures speed, exports the TorchScript file with the
metrics embedded to models/pretrained/<name>.pt, and writes models/pretrained/<name>.md.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.arranger_speed import bench  # noqa: E402
from models.arranger.decoding import default_decoder  # noqa: E402
from models.arranger.evaluate import evaluate_all, markdown  # noqa: E402
from models.arranger.export import arranger_metadata, export_arranger  # noqa: E402
from models.arranger.train import TrainConfig, load_checkpoint, train  # noqa: E402
from models.data import corpus as ds  # noqa: E402

PRETRAINED = ROOT / "models" / "pretrained"
PAPER = {  # Dong et al. 2021, Table 2, Bach chorales (per-note accuracy %)
    "bach": "paper (Bach): zone-based 73.14, closest pitch (mono) 89.76, online LSTM 93.02, "
            "online LSTM + durations 96.17 (best online), offline BiLSTM 97.13, + entry hints 97.39",
    "quartets": "the paper's string quartets are MusicNet files, not music21's: not directly comparable",
}
# Performer models: the commands their cards name, run in order (the cards are written by hand)
PERFORMER_STEPS = {
    "performer-synth": [
        ["-m", "models.data.performance", "build", "bach", "--jobs", "2", "--minutes", "7"],
        ["-m", "models.performer.train_synth", "--data", "bach", "--minutes", "33", "--out", "runs/synth"],
        ["-m", "models.performer.train_synth", "--data", "bach", "--conditioning", "pianoroll",
         "--minutes", "33", "--out", "runs/synth-roll"],
        ["-m", "models.performer.evaluate_synth", "--data", "bach", "--synth", "runs/synth/best.pt",
         "--baseline", "runs/synth-roll/best.pt", "--plot", "docs/performer-synth-example.png",
         "--export", "models/pretrained/performer-synth.pt"],
    ],
    "performer-synth-expressive": [  # five stages of one lineage (its card); about 3 h of one CPU thread
        *[["-m", "models.data.performance", "build", name, "--fonts", "FluidR3_GM", "--jobs", "2"]
          for name in ("bach", "bach-marked", "bach-lines")],
        ["-m", "models.performer.train_synth", "--data", "bach", "--minutes", "33", "--out", "runs/synth"],
        ["-m", "models.performer.train_synth", "--data", "bach-marked", "--init", "runs/synth/best.pt",
         "--lr", "3e-4", "--decay-every", "2000", "--minutes", "45", "--out", "runs/synth-marked"],
        ["-m", "models.performer.train_synth", "--data", "bach-marked", "--init", "runs/synth-marked/best.pt",
         "--lr", "1.5e-4", "--warmup-steps", "50", "--decay-every", "2000", "--minutes", "30",
         "--out", "runs/synth-marked2"],
        ["-m", "models.performer.train_synth", "--data", "bach,bach-marked", "--init",
         "runs/synth-marked2/best.pt", "--flux-weight", "1", "--lr", "1.5e-4", "--warmup-steps", "50",
         "--decay-every", "2000", "--steps", "2000", "--out", "runs/synth-flux"],
        ["-m", "models.performer.train_synth", "--data", "bach,bach-marked,bach-lines", "--init",
         "runs/synth-flux/last.pt", "--flux-weight", "1", "--lr", "1.5e-4", "--warmup-steps", "50",
         "--decay-every", "2000", "--minutes", "64", "--out", "runs/synth-lines"],
        ["-m", "models.performer.train_synth", "--data", "bach,bach-marked,bach-lines", "--conditioning",
         "pianoroll", "--steps", "1670", "--out", "runs/synth-roll-lines"],
        ["-m", "models.performer.evaluate_synth", "--data", "bach", "--synth", "runs/synth-lines/last.pt",
         "--baseline", "runs/synth-roll-lines/best.pt", "--export",
         "models/pretrained/performer-synth-expressive.pt", "--half", "--name", "performer-synth-expressive"],
    ],
}


def retrain_performer(name: str) -> None:
    import subprocess

    for step in PERFORMER_STEPS[name]:
        print("$ python " + " ".join(step), flush=True)
        subprocess.run([sys.executable, *step], cwd=ROOT, check=True)


def _describe(meta: dict, cfg: dict, speed: dict) -> str:
    online = meta["mode"] == "online"
    if not online:
        sees = "sees the whole region"
    elif meta["features"].get("use_chord_context"):
        sees = "sees the past and the current chord: usable while the DAW plays"
    else:
        sees = "sees only past notes: usable while the DAW plays"
    arch = f"{meta['arch']}, {cfg['n_layers']} layers, width {cfg['d_model']}"
    if not online and meta["arch"] == "lstm":
        arch += f" (bidirectional, 2 x {cfg['d_model'] // 2})"
    feats = meta["features"]
    extras = [text for flag, text in (
        ("use_chord_context", "chord context (size of the note's chord, its rank in it)"),
        ("use_voice_state", "its own past part choices (voice state)"),
        ("use_entry_hints", "entry hints"), ("use_pitch_hints", "pitch hints"),
    ) if feats.get(flag)]
    if extras:
        arch += "; inputs beyond the paper's: " + ", ".join(extras)
    parts = ", ".join(p["name"] for p in meta["parts"])
    return (f"Arranges a solo part for **{meta['ensemble']}** ({parts}), **{meta['mode']}** ({sees}). "
            f"Architecture: {arch}. {speed['params']:,} parameters; file {speed['size_mb']} MB "
            "(TorchScript with metadata.json).")


def card(name: str, meta: dict, cfg: dict, rows: list[dict], speed: dict, stats: dict,
         command: str, history: list[dict]) -> str:
    best = next(r for r in rows if r["model"] == name and r["decoder"] == meta["decoder"])
    s, sp = stats, stats["split"]
    train_keys = ("batch_size", "crop", "lr", "transpose_low", "transpose_high", "steps", "patience",
                  "dropout")
    stopped = history[-1]["step"] if history else "?"
    best_valid = 100 * max(h["valid_accuracy"] for h in history) if history else float("nan")
    ts, eg = speed["offline_batch1_notes_per_s"]["torchscript"], speed["offline_batch1_notes_per_s"]["eager"]
    lines = [
        f"# {name}", "", _describe(meta, cfg, speed), "",
        "## Data and split", "",
        f"music21 corpus set `{cfg['data']}`: {s['files']} files, {s['notes']:,} notes, {s['hours']:.2f} h, "
        f"{s['parts']} parts (most common label {100 * s['most_common_share']:.1f}%). Cleaning as in the "
        "paper (zero-length notes and in-part duplicates dropped, at least two parts with more than 10 "
        "notes), "
        "24 ticks per quarter. Split 8:1:1 by work, committed in "
        f"`models/data/split_lists/{cfg['data']}.json`: "
        f"{sp['train']} train / {sp['valid']} valid / {sp['test']} test files.", "",
        "## Retrain", "", "```bash", command, "```", "",
        f"Training: {json.dumps({k: cfg[k] for k in train_keys})}; stopped at step {stopped}, best "
        f"validation accuracy {best_valid:.2f}% (the checkpoint shipped).", "",
        "## Held-out test metrics (the paper's protocol)", "",
        "Per-note accuracy on the first 2000 notes of each test piece, micro-averaged; soundness and "
        "completeness over pairs of consecutive notes in a part; F1 per part in part order. `decoder`: "
        "`argmax` is the paper's; `notewise` (causal in note order) and `chordwise` (each chord "
        "jointly, causal in time) keep each part monophonic; `chordwise-ordered` also keeps parts "
        "from crossing within a chord (see models/arranger/decoding.py).", "",
        markdown(rows), "", PAPER.get(cfg["data"], ""), "",
        f"**This model as shipped: {100 * best['accuracy']:.2f}%** (`{meta['decoder']}` decoder; "
        f"what it sees: {meta['causality']}).", "",
        "## Speed", "",
        "One intra-op thread; TorchScript and the eager model with the same weights in the same process.",
        "", "| measure | TorchScript | eager |", "|---|---:|---:|",
        f"| offline, batch 1, notes/s | {ts:,.0f} | {eg:,.0f} |",
    ]
    if "offline_2_workers_notes_per_s" in speed:
        w = speed["offline_2_workers_notes_per_s"]
        lines.append(f"| offline, whole pieces on 2 worker threads (both cores), notes/s | "
                     f"{w['torchscript']:,.0f} | {w['eager']:,.0f} |")
    if "offline_padded_one_batch_notes_per_s" in speed:
        b = speed["offline_padded_one_batch_notes_per_s"]
        lines.append(f"| offline, all test pieces padded into one batch (one thread), notes/s | "
                     f"{b['torchscript']:,.0f} | "
                     f"{b['eager']:,.0f} |")
    if "online_step_ms" in speed:
        o = speed["online_step_ms"]
        lines.append(f"| online step, one note in, p50 / p99 ms | {o['torchscript']['p50']:.3f} / "
                     f"{o['torchscript']['p99']:.3f} | {o['eager']['p50']:.3f} / {o['eager']['p99']:.3f} |")
    if "live_push_per_chord_ms" in speed:
        live = speed["live_push_per_chord_ms"]
        lines.append(f"| live: one chord in, labels out (engine path, {live['notes_per_chord']:.1f} notes "
                     f"per chord), p50 / p99 ms | {live['p50']:.3f} / {live['p99']:.3f} | - |")
    lines += ["", f"Measured by `python -m benchmarks.arranger_speed --data {cfg['data']}` on "
              f"{platform.machine()} ({speed['notes']} test notes), while other jobs shared the 2 cores: "
              "see benchmarks/RESULTS.md for quiet-machine figures.", "",
              "## Limits", "",
              "Trained on one corpus; music far from it (dense piano textures, pop) is arranged less "
              "idiomatically. Every input note is always kept. The default decoder treats parts as "
              "monophonic; a chord with more notes than parts puts several notes in one part.", ""]
    return "\n".join(lines)


# models retrained by their own commands, run in order (the card beside each file is written by hand)
COMMANDS = {
    "performer-vocoder": [
        "python -m models.data.performance build bach --jobs 2 --minutes 7",
        "python -m models.performer.train_vocoder --data bach --minutes 40 --steps 2200 --gan-start-step 900 "
        "--eval-every 100 --out runs/performer-vocoder",
        "python -m models.performer.vocoder_eval --checkpoint runs/performer-vocoder/best.pt "
        "--data bach,bach-soprano --out benchmarks/performer_vocoder.json "
        "--export models/pretrained/performer-vocoder.pt",
    ],
    "performer-vocoder-gl": [  # no training: Griffin-Lim's iterations, exported with the vocoder metadata
        "python -m models.performer.griffin_lim --iters 16 "
        "--export models/pretrained/performer-vocoder-gl.pt",
    ],
    "performer-vocoder-pghi": [  # no training: the phase computed from the magnitude, exported likewise
        "python -m models.performer.phase_gradient --export models/pretrained/performer-vocoder-pghi.pt",
    ],
}


def main(argv: list[str] | None = None) -> None:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] in COMMANDS:
        import shlex
        import subprocess

        for command in COMMANDS[argv[0]]:
            print(f"$ {command}", flush=True)
            subprocess.run(shlex.split(command), cwd=ROOT, check=True)
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", help="a config in models/configs (without .json)")
    p.add_argument("--run", help="run folder (default runs/<name>)")
    p.add_argument("--skip-train", action="store_true", help="use the run's best.pt as it is")
    p.add_argument("--version", default="1.0.0")
    args = p.parse_args(argv)
    if args.name in PERFORMER_STEPS:
        retrain_performer(args.name)
        return
    conf = json.loads((ROOT / "models" / "configs" / f"{args.name}.json").read_text())
    run = Path(args.run or ROOT / "runs" / args.name)
    try:
        ds.resolve(conf["data"])
    except FileNotFoundError:
        ds.build(conf["data"])
    if not args.skip_train:
        train(TrainConfig(**{**conf, "out": str(run)}))
    model, mcfg, ckpt = load_checkpoint(run / "best.pt")
    ensemble = ds.ensemble_of(conf["data"])
    tmp = run / f"{args.name}.pt"
    export_arranger(model, mcfg, tmp, arranger_metadata(mcfg, args.name, ensemble, version=args.version))
    rows = evaluate_all(conf["data"], [str(tmp)])
    speed = bench(tmp, ds.load(conf["data"], "test"), repeats=3)
    decoder = default_decoder(mcfg.causal, mcfg.features.use_chord_context)
    best = next(r for r in rows if r["model"] == args.name and r["decoder"] == decoder)
    metrics = {"test_accuracy": best["accuracy"], "test_soundness": best["soundness"],
               "test_completeness": best["completeness"], "decoder": best["decoder"],
               "data": conf["data"], "protocol": "first 2000 notes per test piece, micro-averaged"}
    meta = arranger_metadata(mcfg, args.name, ensemble, metrics, version=args.version)
    out = export_arranger(model, mcfg, PRETRAINED / f"{args.name}.pt", meta)
    history = json.loads((run / "history.json").read_text()) if (run / "history.json").exists() else []
    command = f"python scripts/retrain.py {args.name}"
    text = card(args.name, meta, ckpt["train_config"], rows, speed, ds.stats(conf["data"]), command, history)
    (PRETRAINED / f"{args.name}.md").write_text(text)
    (run / "eval.json").write_text(json.dumps({"rows": rows, "speed": speed}, indent=1))
    print(text)
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()

"""Speed of the vocoder generators (models/performer/vocoder.py): real-time factor on one CPU thread,
eager and TorchScript (frozen, as the engine loads models), untrained weights (speed does not depend
on them). Prints JSON; with --out writes it beside RESULTS.md with its command and commit.

    python benchmarks/vocoder_speed.py --seconds 10 --repeats 5 --out benchmarks/vocoder_speed.json

real-time factor = seconds of audio / seconds of wall time (and of the process's CPU time), batch 1,
the median of `repeats` calls after one warm-up call. `vocos-13.5M` is Vocos's published size
(dim 512, 1536, 8 layers), the generator the issue quotes at 31.6x.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.format import quiet_jit  # noqa: E402
from models.performer.vocoder import Vocoder, VocoderConfig, n_parameters  # noqa: E402
from models.performer.vocoder_eval import real_time_factor  # noqa: E402

CONFIGS = {
    "vocos": VocoderConfig(generator="vocos"),
    "hifigan-v3": VocoderConfig(generator="hifigan"),
    "vocos-13.5M": VocoderConfig(generator="vocos", dim=512, intermediate_dim=1536, n_layers=8),
}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0, help="audio per call (default %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="(default %(default)s)")
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--out", help="write the JSON here too")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    results = {}
    for name in args.configs:
        cfg = CONFIGS[name]
        frames = int(args.seconds * cfg.sample_rate_hz / cfg.hop) + 1
        mel = torch.randn(1, cfg.n_mels, frames) - 4.0
        model = Vocoder(cfg).prepare_for_export()
        with quiet_jit():
            frozen = torch.jit.freeze(torch.jit.script(model))
            eager = real_time_factor(model, mel, cfg.sample_rate_hz, args.repeats)
            scripted = real_time_factor(frozen, mel, cfg.sample_rate_hz, args.repeats)
        results[name] = {
            "parameters": n_parameters(model),
            "eager_rtf_wall": eager[0],
            "eager_rtf_cpu": eager[1],
            "torchscript_rtf_wall": scripted[0],
            "torchscript_rtf_cpu": scripted[1],
        }
        print(name, results[name], file=sys.stderr)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    report = {
        "command": "python benchmarks/vocoder_speed.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": commit,
        "threads": 1,
        "seconds_per_call": args.seconds,
        "results": results,
    }
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()

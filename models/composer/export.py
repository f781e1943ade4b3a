"""Export a trained composer as a verified artifact: TorchScript (``.pt``) or torch.export (``.pt2``).

The engine calls one thing: ``module(idx (1, T) int64, pos () int64, k_cache, v_cache (L, 1, H, S, D)
float32) -> (logits (1, V), k_cache, v_cache)``, the decoder's ``step`` (a prompt when T > 1, one
token when T = 1). The file carries ``metadata.json`` (task "compose", the model and tokenizer
configs, instruments and their ranges, chord qualities, metrics). After saving, the file is
reloaded and its steps are checked against eager mode.

    python -m models.composer.export runs/composer-ours/best.pt models/pretrained/composer-satb.pt
    python -m models.composer.export runs/composer-ours/best.pt mine/composer-satb.pt2 --format pt2
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import Tensor, nn

from bridge.protocol import PROTOCOL_VERSION
from models.composer.model import Composer, ComposerConfig
from models.composer.tokens import GRID_TICKS, RESOLUTION, TokenizerConfig, chord_qualities
from models.format import (
    FORMAT_VERSION,
    FORMATS,
    METADATA_FILE,
    by_suffix,
    check_read_back,
    load_exported,
    load_scripted,
    quiet_jit,
)

MONOPHONIC = ("soprano", "alto", "tenor", "bass", "flute", "oboe", "clarinet", "bassoon", "horn",
              "trumpet", "trombone", "tuba")


class Stepper(nn.Module):
    """The decoder's ``step`` as ``forward``: what both formats save and the engine calls."""

    def __init__(self, model: Composer) -> None:
        super().__init__()
        self.model = model

    def forward(self, idx: Tensor, pos: Tensor, k_cache: Tensor,
                v_cache: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.model.step(idx, pos, k_cache, v_cache)


def composer_metadata(mcfg: ComposerConfig, tcfg: TokenizerConfig, name: str, metrics: dict | None = None,
                      version: str = "1.0.0", data: str = "", qualities: list[str] | None = None) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "protocol_version": PROTOCOL_VERSION,  # information only (see models.format)
        "task": "compose",
        "name": name,
        "version": version,
        "representation": tcfg.rep,
        "instruments": [{"name": n, "program": p, "low": lo, "high": hi}
                        for n, p, (lo, hi) in zip(tcfg.instruments, tcfg.programs, tcfg.ranges)],
        "monophonic": [n for n in tcfg.instruments if n in MONOPHONIC],
        "tokenizer": tcfg.to_dict(),
        "chord_qualities": list(qualities or chord_qualities()),  # the names its CHORD tokens index
        "resolution": RESOLUTION,
        "grid_ticks": GRID_TICKS,
        "model": mcfg.to_dict(),
        "data": data,
        "inputs": ["idx (1,T) int64", "pos () int64",
                   "k_cache (L,1,H,S,D) float32", "v_cache (L,1,H,S,D) float32"],
        "outputs": ["logits (1,V) float32", "k_cache", "v_cache"],
        "methods": ["forward"],
        "metrics": metrics or {},
    }


def _example(mcfg: ComposerConfig, T: int, pos: int, seed: int = 0) -> tuple[Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    shape = (mcfg.n_layers, 1, mcfg.n_heads, mcfg.block_size, mcfg.d_model // mcfg.n_heads)
    return (torch.randint(0, mcfg.vocab_size, (1, T), generator=g), torch.tensor(pos),
            torch.randn(shape, generator=g), torch.randn(shape, generator=g))


def export_composer(model: Composer, path: str | Path, metadata: dict, atol: float = 1e-4) -> Path:
    """Save in the format the suffix names, reload, and compare prompts and single steps to eager."""
    path = Path(path)
    save = by_suffix(SAVERS, path, "export to")
    path.parent.mkdir(parents=True, exist_ok=True)
    stepper = Stepper(model.prepare_for_export()).eval()
    loaded, meta = save(stepper, model.cfg, path, metadata)
    check_read_back(meta, metadata, path)
    with torch.no_grad():
        for T, pos in ((7, 0), (1, 7), (1, model.cfg.block_size - 1), (3, 5)):
            x = _example(model.cfg, T, pos, seed=T + pos)
            # each its own copy of the caches: both update them in place
            want_all = stepper(x[0], x[1], x[2].clone(), x[3].clone())
            got_all = loaded(x[0], x[1], x[2].clone(), x[3].clone())
            for name, want, got in zip(("logits", "k_cache", "v_cache"), want_all, got_all):
                err = float((want - got).abs().max())
                if not err <= atol:
                    raise RuntimeError(f"exported composer differs from eager in {name} for {T} tokens at "
                                       f"position {pos}: max abs error {err:.3g} > {atol}")
    return path


def _save_torchscript(stepper: Stepper, mcfg, path: Path, metadata: dict):
    with quiet_jit():
        scripted = torch.jit.script(stepper)
        torch.jit.save(scripted, str(path), _extra_files={METADATA_FILE: json.dumps(metadata)})
        return load_scripted(path)


def _save_pt2(stepper: Stepper, mcfg, path: Path, metadata: dict):
    from torch.export import Dim, export
    from torch.export.pt2_archive._package import package_pt2

    tokens = Dim("tokens", min=1, max=mcfg.block_size)
    with torch.no_grad():
        program = export(stepper, _example(mcfg, 5, 0), dynamic_shapes=({1: tokens}, None, None, None))
    package_pt2(str(path), exported_programs={"forward": program},
                extra_files={METADATA_FILE: json.dumps(metadata)})
    return load_exported(path)


SAVERS = {".pt": _save_torchscript, ".pt2": _save_pt2}


def load_eager(path: str | Path) -> tuple[Composer, TokenizerConfig, dict]:
    """The eager decoder inside an exported TorchScript composer (``.pt``), its tokenizer config and
    metadata: for teacher-forced evaluation (``forward`` over whole windows), which the exported
    ``step`` does not offer."""
    path = Path(path)
    if path.suffix != ".pt":
        raise ValueError(f"load_eager reads TorchScript composers (.pt); got {path.name}")
    scripted, meta = load_scripted(path)
    if meta.get("task") != "compose":
        raise ValueError(f"{path} is a {meta.get('task')} model, not a compose one")
    model = Composer(ComposerConfig.from_dict(meta["model"]))
    prefix = "model."
    state = {k[len(prefix):]: v for k, v in scripted.state_dict().items() if k.startswith(prefix)}
    model.load_state_dict(state, strict=False)  # the RoPE tables are rebuilt, not stored
    missing = set(model.state_dict()) - set(state) - {"cos", "sin"}
    if missing:
        raise ValueError(f"{path} lacks the weights {sorted(missing)[:3]}; re-export it")
    return model.eval(), TokenizerConfig.from_dict(meta["tokenizer"]), meta


def main(argv: list[str] | None = None) -> None:
    from models.composer.train import load_checkpoint

    p = argparse.ArgumentParser(description="Export a composer checkpoint to TorchScript (.pt) or "
                                            "torch.export (.pt2).")
    p.add_argument("checkpoint", help="best.pt written by models.composer.train")
    p.add_argument("output", help="the file to write: .pt for --format torchscript, .pt2 for pt2")
    p.add_argument("--format", choices=sorted(FORMATS), default="torchscript",
                   help="torchscript (libtorch hosts) or pt2 (torch.export) (default: %(default)s)")
    p.add_argument("--name", help="model name (default: the output's stem)")
    p.add_argument("--metrics", help="JSON file of held-out metrics to embed (default: the checkpoint's)")
    args = p.parse_args(argv)
    suffix = FORMATS[args.format]
    if Path(args.output).suffix != suffix:
        p.error(f"--format {args.format} writes {suffix} files (the engine finds models by suffix); "
                f"got output {args.output!r}, name it {Path(args.output).with_suffix(suffix).name!r}")
    model, mcfg, tcfg, ckpt = load_checkpoint(args.checkpoint)
    if tcfg.rep != "ours":
        p.error(f"only 'ours' models are sampled by models.composer.inference; this one is {tcfg.rep!r}")
    metrics = json.loads(Path(args.metrics).read_text()) if args.metrics else ckpt.get("metrics", {})
    meta = composer_metadata(mcfg, tcfg, args.name or Path(args.output).stem, metrics,
                             data=ckpt["train_config"]["data"], qualities=ckpt.get("chord_qualities"))
    out = export_composer(model, args.output, meta)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB), reloaded and verified against eager mode")


if __name__ == "__main__":
    main()

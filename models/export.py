"""Export a trained model as a verified TorchScript artifact.

The file carries ``metadata.json`` (task, name, version, ensemble, parts, feature config...) as a
TorchScript extra file, so the engine needs nothing from outside to use it. After saving, the file
is reloaded and every method the engine calls is checked against eager mode.

    python -m models.export runs/bach-online-lstm/best.pt models/pretrained/arranger-satb-online.pt

TorchScript is what the product brief and C++ hosts (libtorch) load, but since torch 2.13 every
``torch.jit`` call warns that it is deprecated in favour of ``torch.export``. Saving and loading
live only here and in ``engine/registry.py`` so ``.pt2`` programs can sit beside ``.pt`` files
later; ``quiet_jit`` keeps those warnings out of users' logs.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from models.dataset import RESOLUTION
from models.decoding import default_decoder
from models.ensembles import get_ensemble
from models.features import VOICE_FEATURES

FORMAT_VERSION = 2  # bump when the metadata or the model's call contract changes
PROTOCOL_VERSION = 1
METADATA_FILE = "metadata.json"


@contextlib.contextmanager
def quiet_jit():
    """Silence torch 2.13's per-call TorchScript deprecation warnings (see module docstring)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.jit.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.export.*")
        yield


def causality(mcfg) -> str:
    """What the model may see: the engine's live path and the model card say it in these words."""
    if not mcfg.causal:
        return "none: whole region"
    if mcfg.features.use_chord_context:
        return "time: a chord once its onset has arrived"
    return "note order"


def arranger_metadata(mcfg, name: str, ensemble: str, metrics: dict | None = None,
                      version: str = "1.0.0") -> dict:
    ens = get_ensemble(ensemble)
    if len(ens.parts) != mcfg.n_parts:
        raise ValueError(f"ensemble {ensemble!r} has {len(ens.parts)} parts but the model predicts "
                         f"{mcfg.n_parts}")
    return {
        "format_version": FORMAT_VERSION,
        "protocol_version": PROTOCOL_VERSION,
        "task": "arrange",
        "name": name,
        "version": version,
        "ensemble": ensemble,
        "mode": "online" if mcfg.causal else "offline",
        "causality": causality(mcfg),
        "decoder": default_decoder(mcfg.causal, mcfg.features.use_chord_context),
        "arch": mcfg.arch,
        "parts": [{"name": p.name, "program": p.program, "low": p.low, "high": p.high} for p in ens.parts],
        "monophonic_parts": ens.monophonic,
        "resolution": RESOLUTION,
        "features": mcfg.to_dict()["features"],
        "model": mcfg.to_dict(),
        "inputs": ["ints (1,N,5) int64: pitch, position in beat, beat, duration, chord context",
                   "entry_hints (1,N,P) float32", "pitch_hints (1,P) float32",
                   f"voice_state (1,N,P*{VOICE_FEATURES}) float32"],
        "outputs": ["logits (1,N,P) float32"],
        "methods": ["forward"] + (["initial_state", "step"] if mcfg.causal and mcfg.arch == "lstm" else []),
        "metrics": metrics or {},
    }


def _example_inputs(mcfg, n: int = 37, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random but well-formed inputs: sorted onsets, so chord context is meaningful."""
    from models.inference import to_inputs
    from models.score_utils import random_notes

    gen = np.random.default_rng(seed)
    x = to_inputs(random_notes(gen, n, mcfg.features.resolution), mcfg.features, mcfg.n_parts,
                  entries=gen.integers(0, 48, mcfg.n_parts), pitch_hints=gen.random(mcfg.n_parts))
    voice = torch.from_numpy(gen.random((1, n, mcfg.n_parts * VOICE_FEATURES)).astype(np.float32))
    return (*x[:3], voice)


def export_arranger(model, mcfg, path: str | Path, metadata: dict, atol: float = 1e-4) -> Path:
    """Script, save with metadata, reload, and compare every engine-called method to eager."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.prepare_for_export()
    with quiet_jit():
        scripted = torch.jit.script(model)
        torch.jit.save(scripted, str(path), _extra_files={METADATA_FILE: json.dumps(metadata)})
        loaded, meta = load_scripted(path)
    if meta != json.loads(json.dumps(metadata)):
        raise RuntimeError(f"metadata read back from {path} differs from what was written")
    x = _example_inputs(mcfg)
    with torch.no_grad():
        _check_close("forward", model(*x), loaded(*x), atol)
        if "step" in metadata["methods"]:
            h, c = loaded.initial_state()
            eager_h, eager_c = model.initial_state()
            for t in range(x[0].shape[1]):
                xt = (x[0][:, t:t + 1], x[1][:, t:t + 1], x[2], x[3][:, t:t + 1])
                got, h, c = loaded.step(*xt, h, c)
                want, eager_h, eager_c = model.step(*xt, eager_h, eager_c)
                _check_close(f"step {t}", want, got, atol)
            # stepping note by note must equal the whole-sequence forward of the online model
            _check_close("step vs forward", model(*x)[:, -1:], got, atol)
    return path


def _check_close(what: str, want: torch.Tensor, got: torch.Tensor, atol: float) -> None:
    err = float((want - got).abs().max())
    if not err <= atol:
        raise RuntimeError(f"exported model differs from eager in {what}: max abs error {err:.3g} > {atol}")


def load_scripted(path: str | Path) -> tuple[torch.jit.ScriptModule, dict]:
    """Load a TorchScript file and its embedded metadata (on CPU)."""
    extra = {METADATA_FILE: ""}
    with quiet_jit():
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    if not extra[METADATA_FILE]:
        raise ValueError(f"{path} has no embedded {METADATA_FILE}; re-export it with models.export")
    return module.eval(), json.loads(extra[METADATA_FILE])


def load_for_inference(path: str | Path) -> tuple[torch.jit.ScriptModule, dict]:
    """Load a TorchScript file frozen for inference: weights become constants and TorchScript
    folds and fuses around them, which cuts per-call overhead (what a one-note ``step`` is made
    of). The file itself stays unfrozen so it keeps its parameters for libtorch hosts."""
    module, meta = load_scripted(path)
    keep = [m for m in meta.get("methods", []) if m != "forward"]
    with quiet_jit():
        frozen = torch.jit.freeze(module, preserved_attrs=keep)
    return frozen, meta


def main(argv: list[str] | None = None) -> None:
    from models.train_arranger import load_checkpoint

    p = argparse.ArgumentParser(description="Export an arranger checkpoint to TorchScript.")
    p.add_argument("checkpoint", help="best.pt written by models.train_arranger")
    p.add_argument("output", help="the .pt file to write")
    p.add_argument("--name", help="model name (default: the output's stem)")
    p.add_argument("--ensemble", help="ensemble name (default: the dataset's)")
    p.add_argument("--metrics", help="JSON file of held-out metrics to embed")
    args = p.parse_args(argv)
    model, mcfg, ckpt = load_checkpoint(args.checkpoint)
    from models import dataset as ds

    ensemble = args.ensemble or ds.ensemble_of(ckpt["train_config"]["data"])
    metrics = json.loads(Path(args.metrics).read_text()) if args.metrics else {}
    meta = arranger_metadata(mcfg, args.name or Path(args.output).stem, ensemble, metrics)
    out = export_arranger(model, mcfg, args.output, meta)
    size_mb = out.stat().st_size / 1e6
    print(f"wrote {out} ({size_mb:.2f} MB), reloaded and verified against eager mode")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()

"""Export a trained arranger as a verified artifact: TorchScript (``.pt``) or torch.export (``.pt2``).

The file carries ``metadata.json`` (task, name, version, ensemble, parts, feature config...) inside
it, in the format ``models.format`` reads. After saving, the file is reloaded and every method the
engine calls is checked against eager mode.

    python -m models.arranger.export runs/bach-online-lstm/best.pt models/pretrained/arranger-satb-online.pt
    python -m models.arranger.export runs/bach-offline/best.pt mine/arranger-satb-offline.pt2 --format pt2
"""
from __future__ import annotations

import argparse
import copy
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bridge.protocol import PROTOCOL_VERSION
from bridge.score import make_notes, sort_order
from models.arranger.decoding import default_decoder
from models.arranger.features import VOICE_FEATURES
from models.data import RESOLUTION
from models.ensembles import get_ensemble
from models.format import (
    FORMAT_VERSION,
    FORMATS,
    METADATA_FILE,
    ExportedModel,
    by_suffix,
    check_read_back,
    load_exported,
    load_scripted,
    quiet_jit,
)


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
        # information only: models.format does not check it (see REQUIRED_KEYS there)
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


def _random_notes(gen: np.random.Generator, n: int, resolution: int) -> np.ndarray:
    """``n`` plausible notes (chords included) sorted by (onset, pitch, duration)."""
    onsets = np.sort(gen.integers(0, max(1, n // 2), n)) * (resolution // 2)
    notes = make_notes(onsets, gen.integers(36, 90, n), gen.integers(1, 4 * resolution, n),
                       gen.integers(30, 120, n))
    return notes[sort_order(notes)]


def _example_inputs(mcfg, n: int = 37, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random but well-formed inputs: sorted onsets, so chord context is meaningful."""
    from models.arranger.inference import to_inputs

    gen = np.random.default_rng(seed)
    x = to_inputs(_random_notes(gen, n, mcfg.features.resolution), mcfg.features, mcfg.n_parts,
                  entries=gen.integers(0, 48, mcfg.n_parts), pitch_hints=gen.random(mcfg.n_parts))
    voice = torch.from_numpy(gen.random((1, n, mcfg.n_parts * VOICE_FEATURES)).astype(np.float32))
    return (*x[:3], voice)


def export_arranger(model, mcfg, path: str | Path, metadata: dict, atol: float = 1e-4) -> Path:
    """Save in the format the suffix names (see ``FORMATS``), reload the file, and compare every
    engine-called method to eager."""
    path = Path(path)
    save = by_suffix(SAVERS, path, "export to")
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.prepare_for_export()
    loaded, meta = save(model, mcfg, path, metadata)
    check_read_back(meta, metadata, path)
    x = _example_inputs(mcfg)
    with torch.no_grad():
        _check_close("forward", model(*x), loaded(*x), atol)
        # a length other than the traced one (and a single note) catches a .pt2 whose number of
        # notes was fixed at export time
        for n in (1, 64):
            xn = _example_inputs(mcfg, n=n, seed=n)
            _check_close(f"forward on {n} notes", model(*xn), loaded(*xn), atol)
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


# TorchScript (.pt)

def _save_torchscript(model, mcfg, path: Path, metadata: dict) -> tuple[torch.jit.ScriptModule, dict]:
    with quiet_jit():
        scripted = torch.jit.script(model)
        torch.jit.save(scripted, str(path), _extra_files={METADATA_FILE: json.dumps(metadata)})
        return load_scripted(path)


# torch.export (.pt2)

class _Method(nn.Module):
    """One method of a model as the ``forward`` that torch.export traces."""

    def __init__(self, model: nn.Module, name: str) -> None:
        super().__init__()
        self.model = model
        self.method = name

    def forward(self, *args: torch.Tensor):
        return getattr(self.model, self.method)(*args)


class _CausalEncoder(nn.Module):
    """A Transformer encoder told that its mask is causal. Given the mask alone,
    ``nn.TransformerEncoder`` compares it with a causal mask to find out: a branch on tensor
    values that torch.export cannot trace. The online Arranger's mask is causal by construction."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, src: torch.Tensor, mask: torch.Tensor | None = None,
                src_key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(src, mask=mask, src_key_padding_mask=src_key_padding_mask,
                            is_causal=mask is not None)


class _InitialState(nn.Module):
    """The model's ``initial_state`` traced without its weights (it reads only sizes), so that
    program's copy of the weights is not stored in the file."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.n_layers = model.n_layers
        self.d_model = model.d_model
        self.initial_state = type(model).initial_state

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.initial_state(self)


def _traced_modules(model, methods: list[str]) -> dict[str, nn.Module]:
    """What each program traces. Each program stores its own copy of the weights it is given, so
    each gets only the ones it reads: ``forward`` not the stacked ``step_w``/``step_b`` that
    ``prepare_for_export`` adds, ``step`` (which runs on those) not the library LSTM's."""
    forward = copy.deepcopy(model)
    forward.step_w, forward.step_b = torch.zeros(0), torch.zeros(0)
    if forward.transformer is not None and forward.causal:
        forward.transformer = _CausalEncoder(forward.transformer)
    traced = {"forward": forward}
    if "step" in methods:
        step = copy.deepcopy(model)
        step.lstm = nn.Module()  # step() only checks that there is an LSTM
        traced["initial_state"] = _InitialState(model)
        traced["step"] = _Method(step, "step")
    return traced


def export_programs(model, mcfg, methods: list[str]) -> dict:
    """One ``torch.export.ExportedProgram`` per method the engine calls: ``forward`` for any
    number of notes (1 or more), ``initial_state`` and ``step`` (one note) for online LSTMs."""
    from torch.export import Dim, export
    from torch.export._patches import register_lstm_while_loop_decomposition

    traced = _traced_modules(model, methods)
    x = _example_inputs(mcfg)
    notes = Dim("notes", min=1)
    dynamic = ({1: notes}, {1: notes}, None, {1: notes})  # pitch hints are per part, not per note
    with torch.no_grad(), warnings.catch_warnings():
        # nn.LSTM re-assigns its flat weight list when traced, and torch's own LSTM decomposition
        # below calls a deprecated check: both harmless, neither the user's to fix
        warnings.filterwarnings("ignore", message=r".*_flat_weights.*")
        warnings.filterwarnings("ignore", message=r".*_check_is_size.*")
        # Export's default LSTM decomposition unrolls the notes axis, which fixes the number of
        # notes to the example's. With torch's while_loop one registered, shapes are worked out
        # for any length and aten.lstm stays one op in the graph (the native kernel at run time).
        with register_lstm_while_loop_decomposition():
            programs = {"forward": export(traced["forward"], x, dynamic_shapes=dynamic)}
        if "step" in methods:
            h, c = model.initial_state()
            one_note = (x[0][:, :1], x[1][:, :1], x[2], x[3][:, :1], h, c)
            programs["initial_state"] = export(traced["initial_state"], ())
            programs["step"] = export(traced["step"], one_note)
    return programs


def _save_pt2(model, mcfg, path: Path, metadata: dict) -> tuple[ExportedModel, dict]:
    from torch.export.pt2_archive._package import package_pt2

    # torch.export.save writes a single program; the archive format it uses holds several
    programs = export_programs(model, mcfg, metadata["methods"])
    package_pt2(str(path), exported_programs=programs, extra_files={METADATA_FILE: json.dumps(metadata)})
    return load_exported(path)


# suffix -> how to save; models.format.LOADERS reads them back
SAVERS = {".pt": _save_torchscript, ".pt2": _save_pt2}


def main(argv: list[str] | None = None) -> None:
    from models.arranger.train import load_checkpoint

    p = argparse.ArgumentParser(description="Export an arranger checkpoint to TorchScript (.pt) or "
                                            "torch.export (.pt2).")
    p.add_argument("checkpoint", help="best.pt written by models.arranger.train")
    p.add_argument("output", help="the file to write: .pt for --format torchscript, .pt2 for pt2")
    p.add_argument("--format", choices=sorted(FORMATS), default="torchscript",
                   help="torchscript (libtorch hosts) or pt2 (torch.export) (default: %(default)s)")
    p.add_argument("--name", help="model name (default: the output's stem)")
    p.add_argument("--ensemble", help="ensemble name (default: the dataset's)")
    p.add_argument("--metrics", help="JSON file of held-out metrics to embed")
    args = p.parse_args(argv)
    suffix = FORMATS[args.format]
    if Path(args.output).suffix != suffix:
        p.error(f"--format {args.format} writes {suffix} files (the engine finds models by suffix); "
                f"got output {args.output!r}, name it {Path(args.output).with_suffix(suffix).name!r}")
    model, mcfg, ckpt = load_checkpoint(args.checkpoint)
    from models.data.corpus import ensemble_of

    ensemble = args.ensemble or ensemble_of(ckpt["train_config"]["data"])
    metrics = json.loads(Path(args.metrics).read_text()) if args.metrics else {}
    meta = arranger_metadata(mcfg, args.name or Path(args.output).stem, ensemble, metrics)
    out = export_arranger(model, mcfg, args.output, meta)
    size_mb = out.stat().st_size / 1e6
    print(f"wrote {out} ({size_mb:.2f} MB), reloaded and verified against eager mode")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()

"""Export a trained model as a verified artifact: TorchScript (``.pt``) or torch.export (``.pt2``).

Either file carries ``metadata.json`` (task, name, version, ensemble, parts, feature config...)
inside it, so the engine needs nothing from outside to use it. After saving, the file is reloaded
and every method the engine calls is checked against eager mode.

    python -m models.export runs/bach-online-lstm/best.pt models/pretrained/arranger-satb-online.pt
    python -m models.export runs/bach-offline/best.pt my-models/arranger-satb-offline.pt2 --format pt2

TorchScript is what the product brief and C++ hosts (libtorch) load, but since torch 2.13 every
``torch.jit`` call warns that it is deprecated in favour of ``torch.export``; ``quiet_jit`` keeps
those warnings out of users' logs. A ``.pt2`` file is a torch.export archive holding one
ExportedProgram per method the engine calls (``forward``; online LSTMs add ``initial_state`` and
``step``); ``load_for_inference`` picks the loader by suffix and returns an object the engine calls
the same way for both formats.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

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
    """Save in the format the suffix names (see ``FORMATS``), reload the file, and compare every
    engine-called method to eager."""
    path = Path(path)
    save = _by_suffix(SAVERS, path, "export to")
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.prepare_for_export()
    loaded, meta = save(model, mcfg, path, metadata)
    if meta != json.loads(json.dumps(metadata)):
        raise RuntimeError(f"metadata read back from {path} differs from what was written")
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


def _by_suffix(table: dict[str, Callable], path: Path, verb: str) -> Callable:
    if path.suffix not in table:
        allowed = ", ".join(f"{suffix} ({name})" for name, suffix in FORMATS.items())
        raise ValueError(f"cannot {verb} {path.name}: model files end in {allowed}, got "
                         f"{path.suffix or 'no suffix'!r}")
    return table[path.suffix]


# TorchScript (.pt)

def _save_torchscript(model, mcfg, path: Path, metadata: dict) -> tuple[torch.jit.ScriptModule, dict]:
    with quiet_jit():
        scripted = torch.jit.script(model)
        torch.jit.save(scripted, str(path), _extra_files={METADATA_FILE: json.dumps(metadata)})
        return load_scripted(path)


def load_scripted(path: str | Path) -> tuple[torch.jit.ScriptModule, dict]:
    """Load a TorchScript file and its embedded metadata (on CPU)."""
    extra = {METADATA_FILE: ""}
    with quiet_jit():
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    if not extra[METADATA_FILE]:
        raise ValueError(f"{path} has no embedded {METADATA_FILE}; re-export it with models.export")
    return module.eval(), json.loads(extra[METADATA_FILE])


def load_frozen(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.jit.ScriptModule, dict]:
    """Load a TorchScript file frozen for inference on `device`: weights become constants and
    TorchScript folds and fuses around them, which cuts per-call overhead (what a one-note ``step``
    is made of). Moved before freezing: a frozen module's constants no longer follow ``.to()``.
    The file itself stays unfrozen so it keeps its parameters for libtorch hosts."""
    module, meta = load_scripted(path)
    module = module.to(device)
    keep = [m for m in meta.get("methods", []) if m != "forward"]
    with quiet_jit():
        frozen = torch.jit.freeze(module, preserved_attrs=keep)
    return frozen, meta


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


class ExportedArranger:
    """An arranger read from a ``.pt2`` archive, called as the engine calls a TorchScript one:
    ``module(ints, entry_hints, pitch_hints, voice_state)`` gives logits (1, N, P); online LSTMs
    also have ``initial_state()`` and ``step(...)``. The programs keep nothing between calls (the
    LSTM state goes in and out), so worker threads may share one."""

    def __init__(self, programs: dict, path: Path, device: torch.device = torch.device("cpu")) -> None:
        self.programs = programs
        self.path = path
        self.device = device
        self._modules = {name: ep.module() for name, ep in programs.items()}

    def __call__(self, ints: torch.Tensor, entry_hints: torch.Tensor, pitch_hints: torch.Tensor,
                 voice_state: torch.Tensor) -> torch.Tensor:
        return self._modules["forward"](ints, entry_hints, pitch_hints, voice_state)

    def initial_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._method("initial_state")()

    def step(self, ints: torch.Tensor, entry_hints: torch.Tensor, pitch_hints: torch.Tensor,
             voice_state: torch.Tensor, h: torch.Tensor, c: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self._method("step")(ints, entry_hints, pitch_hints, voice_state, h, c)

    def _method(self, name: str):
        if name not in self._modules:
            raise RuntimeError(f"{self.path.name} has no {name!r} program (it has "
                               f"{', '.join(sorted(self._modules))}): only online LSTM arrangers "
                               "run note by note")
        return self._modules[name]

    def eval(self) -> ExportedArranger:
        return self  # exported for inference: dropout is already off in the programs

    def to(self, device: str | torch.device) -> ExportedArranger:
        device = torch.device(device)
        if device == self.device:
            return self
        from torch.export.passes import move_to_device_pass

        # the programs name the device of the tensors they create, so moving the weights is not enough
        return ExportedArranger({k: move_to_device_pass(ep, device) for k, ep in self.programs.items()},
                                self.path, device)


def _save_pt2(model, mcfg, path: Path, metadata: dict) -> tuple[ExportedArranger, dict]:
    from torch.export.pt2_archive._package import package_pt2

    # torch.export.save writes a single program; the archive format it uses holds several
    programs = export_programs(model, mcfg, metadata["methods"])
    package_pt2(str(path), exported_programs=programs, extra_files={METADATA_FILE: json.dumps(metadata)})
    return load_exported(path)


def load_exported(path: str | Path, device: str | torch.device = "cpu") -> tuple[ExportedArranger, dict]:
    """Load a ``.pt2`` archive written by ``export_arranger`` and its embedded metadata, on `device`."""
    from torch.export.pt2_archive._package import load_pt2

    path = Path(path)
    try:
        contents = load_pt2(str(path))
    except Exception as exc:
        raise ValueError(f"{path} is not a torch.export archive that torch {torch.__version__} can read "
                         f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                         "re-export it with `python -m models.export ... --format pt2`") from exc
    if METADATA_FILE not in contents.extra_files:
        raise ValueError(f"{path} has no embedded {METADATA_FILE}; re-export it with models.export")
    if "forward" not in contents.exported_programs:
        raise ValueError(f"{path} has no 'forward' program; re-export it with models.export")
    module = ExportedArranger(contents.exported_programs, path).to(device)
    return module, json.loads(contents.extra_files[METADATA_FILE])


# suffix -> how to save / load; the registry finds model files by these suffixes
FORMATS = {"torchscript": ".pt", "pt2": ".pt2"}
SAVERS = {".pt": _save_torchscript, ".pt2": _save_pt2}
LOADERS = {".pt": load_frozen, ".pt2": load_exported}


def load_for_inference(path: str | Path, device: str | torch.device = "cpu") -> tuple[object, dict]:
    """A model file and its metadata, ready for the engine on `device`, whatever its format: called
    as ``module(*inputs)``, with ``initial_state()`` and ``step()`` for online LSTMs. Inputs must be
    on the same device (models.inference moves them)."""
    path = Path(path)
    return _by_suffix(LOADERS, path, "load")(path, device)


def main(argv: list[str] | None = None) -> None:
    from models.train_arranger import load_checkpoint

    p = argparse.ArgumentParser(description="Export an arranger checkpoint to TorchScript (.pt) or "
                                            "torch.export (.pt2).")
    p.add_argument("checkpoint", help="best.pt written by models.train_arranger")
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

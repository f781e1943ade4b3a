"""The model file format the engine loads: TorchScript (``.pt``) or torch.export (``.pt2``).

Either file carries ``metadata.json`` (task, name, version, and each task's own keys) inside it, so
the engine needs nothing from outside to use it. This module only reads files and checks their
metadata; writing and verifying them is each family's export (``models.arranger.export``), so the
engine imports no training code.

TorchScript is what the product brief and C++ hosts (libtorch) load, but since torch 2.13 every
``torch.jit`` call warns that it is deprecated in favour of ``torch.export``; ``quiet_jit`` keeps
those warnings out of users' logs. A ``.pt2`` file is a torch.export archive holding one
ExportedProgram per method the engine calls (``forward``; online LSTM arrangers add
``initial_state`` and ``step``); ``load_for_inference`` picks the loader by suffix and returns an
object the engine calls the same way for both formats.
"""
from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

FORMAT_VERSION = 2  # bump when the metadata or the model's call contract changes
METADATA_FILE = "metadata.json"
REEXPORT = "re-export it with `python -m models.<family>.export`"

# Every model file's metadata has these. ``protocol_version`` (the wire protocol the model was
# exported beside) is kept in the metadata as information only and is not checked: the wire
# protocol versions the engine's messages, not the model's call contract, which ``format_version``
# versions, so a wire change must not make every shipped model file unloadable.
REQUIRED_KEYS = ("format_version", "task", "name", "version")
# task -> the keys its models add; a family adds its task's row
TASK_KEYS: dict[str, tuple[str, ...]] = {
    "arrange": ("ensemble", "mode", "decoder", "parts", "features", "model"),
    "compose": ("representation", "instruments", "tokenizer", "chord_qualities", "model"),
    "compose_arrange": ("config", "slots", "directions", "model"),  # models.composer.arrangement
    "perform_align": ("performers", "features", "targets", "model"),
    "perform_synth": ("performers", "mel", "window", "model"),
    "perform_vocoder": ("sample_rate_hz", "hop", "mel", "model"),
}
# metadata key: the dtype the file's weights are stored in. "float16" halves a file that is only
# ever run in float32: the loader widens the weights back on load, before anything runs.
WEIGHTS_DTYPE = "weights_dtype"


def validate(metadata: dict, path: Path | None = None) -> str:
    """An empty string if the metadata is usable, else a sentence saying what is wrong."""
    missing = [k for k in REQUIRED_KEYS if k not in metadata]
    if missing:
        return f"metadata lacks {', '.join(missing)}; {REEXPORT}"
    if metadata["format_version"] != FORMAT_VERSION:
        return (f"model format version {metadata['format_version']} is not the supported "
                f"{FORMAT_VERSION}; re-export it with this version of Deep Musician")
    missing = [k for k in TASK_KEYS.get(metadata["task"], ()) if k not in metadata]
    if missing:
        return f"{metadata['task']} model metadata lacks {', '.join(missing)}"
    return ""


@contextlib.contextmanager
def quiet_jit():
    """Silence torch 2.13's per-call TorchScript deprecation warnings (see module docstring)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.jit.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.export.*")
        yield


def check_read_back(read: dict, written: dict, path: str | Path) -> None:
    """A RuntimeError when the metadata read back from an exported file is not what was written."""
    if read != json.loads(json.dumps(written)):
        raise RuntimeError(f"metadata read back from {path} differs from what was written")


# TorchScript (.pt)

def save_scripted(module: torch.nn.Module, path: str | Path, metadata: dict) -> torch.jit.ScriptModule:
    """Script ``module`` and save it with ``metadata`` embedded; the file read back (``load_scripted``),
    its metadata checked against what was written (``check_read_back``)."""
    extra = {METADATA_FILE: json.dumps(metadata)}
    with quiet_jit():
        torch.jit.save(torch.jit.script(module), str(path), _extra_files=extra)
    loaded, read = load_scripted(path)
    check_read_back(read, metadata, path)
    return loaded


def load_scripted(path: str | Path) -> tuple[torch.jit.ScriptModule, dict]:
    """Load a TorchScript file and its embedded metadata (on CPU)."""
    extra = {METADATA_FILE: ""}
    with quiet_jit():
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    if not extra[METADATA_FILE]:
        raise ValueError(f"{path} has no embedded {METADATA_FILE}; {REEXPORT}")
    metadata = json.loads(extra[METADATA_FILE])
    if metadata.get(WEIGHTS_DTYPE, "float32") == "float16":
        module = module.float()
    return module.eval(), metadata


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

class ExportedModel:
    """A model read from a ``.pt2`` archive, called as the engine calls a TorchScript one:
    ``module(*inputs)`` runs ``forward`` (an arranger's: ints, entry_hints, pitch_hints,
    voice_state -> logits (1, N, P)); online LSTM arrangers also have ``initial_state()`` and
    ``step(...)``. The programs keep nothing between calls (the LSTM state goes in and out), so
    worker threads may share one."""

    def __init__(self, programs: dict, path: Path, device: torch.device = torch.device("cpu")) -> None:
        self.programs = programs
        self.path = path
        self.device = device
        self._modules = {name: ep.module() for name, ep in programs.items()}

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self._modules["forward"](*inputs)

    def initial_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._method("initial_state")()

    def step(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self._method("step")(*inputs)

    def _method(self, name: str):
        if name not in self._modules:
            raise RuntimeError(f"{self.path.name} has no {name!r} program (it has "
                               f"{', '.join(sorted(self._modules))}): only online LSTM arrangers "
                               "run note by note")
        return self._modules[name]

    def eval(self) -> ExportedModel:
        return self  # exported for inference: dropout is already off in the programs

    def to(self, device: str | torch.device) -> ExportedModel:
        device = torch.device(device)
        if device == self.device:
            return self
        from torch.export.passes import move_to_device_pass

        # the programs name the device of the tensors they create, so moving the weights is not enough
        return ExportedModel({k: move_to_device_pass(ep, device) for k, ep in self.programs.items()},
                             self.path, device)


def load_exported(path: str | Path, device: str | torch.device = "cpu") -> tuple[ExportedModel, dict]:
    """Load a ``.pt2`` archive written by a family's export and its embedded metadata, on `device`."""
    from torch.export.pt2_archive._package import load_pt2

    path = Path(path)
    try:
        contents = load_pt2(str(path))
    except Exception as exc:
        raise ValueError(f"{path} is not a torch.export archive that torch {torch.__version__} can read "
                         f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                         f"{REEXPORT} and --format pt2") from exc
    if METADATA_FILE not in contents.extra_files:
        raise ValueError(f"{path} has no embedded {METADATA_FILE}; {REEXPORT}")
    if "forward" not in contents.exported_programs:
        raise ValueError(f"{path} has no 'forward' program; {REEXPORT}")
    module = ExportedModel(contents.exported_programs, path).to(device)
    return module, json.loads(contents.extra_files[METADATA_FILE])


# format name -> suffix; the registry finds model files by these suffixes
FORMATS = {"torchscript": ".pt", "pt2": ".pt2"}
LOADERS = {".pt": load_frozen, ".pt2": load_exported}
MODEL_SUFFIXES = tuple(LOADERS)  # ".pt" TorchScript, ".pt2" torch.export


def by_suffix(table: dict[str, Callable], path: Path, verb: str) -> Callable:
    """The entry of a suffix-keyed table (loaders here, savers in a family's export) for `path`,
    or a ValueError naming the suffixes allowed."""
    if path.suffix not in table:
        allowed = ", ".join(f"{suffix} ({name})" for name, suffix in FORMATS.items())
        raise ValueError(f"cannot {verb} {path.name}: model files end in {allowed}, got "
                         f"{path.suffix or 'no suffix'!r}")
    return table[path.suffix]


def load_for_inference(path: str | Path, device: str | torch.device = "cpu") -> tuple[object, dict]:
    """A model file and its metadata, ready for the engine on `device`, whatever its format: called
    as ``module(*inputs)``, with ``initial_state()`` and ``step()`` for online LSTMs. Inputs must be
    on the same device (models.arranger.inference moves them)."""
    path = Path(path)
    return by_suffix(LOADERS, path, "load")(path, device)

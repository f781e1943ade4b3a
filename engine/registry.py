"""Model registry: finds exported models, validates their metadata, loads them on a device.

Models are TorchScript (``.pt``) or torch.export (``.pt2``) files, loaded through one interface
(``models.format.load_for_inference``) and called the same way. They are discovered in folders
passed with ``--models``, then in folders named by ``$DEEP_MUSICIAN_MODELS`` (``os.pathsep``-
separated), then in the shipped folder (``models/pretrained``); a folder named that does not exist
is an error. When two files carry one model name, the first found is used and says which files it
shadows. A broken file is reported with the reason and skipped; the rest still load.

Finding reads only each file's embedded ``metadata.json`` (both formats are zip archives); a model
is loaded when it is first used (``entry.module``), so a one-shot command loads the one model it
runs. The engine loads every model at start-up (``load_all``), so broken ones are reported then.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from models.format import METADATA_FILE, MODEL_SUFFIXES, load_for_inference, validate

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "models" / "pretrained"
log = logging.getLogger("engine.registry")
_load_lock = threading.Lock()  # one load at a time: worker threads may reach one entry together


@dataclass
class ModelEntry:
    path: Path
    metadata: dict = field(default_factory=dict)
    loaded: object = None  # the module, once loaded
    error: str = ""
    device: str = "cpu"  # where the module runs; its inputs go there too
    shadows: list[Path] = field(default_factory=list)  # files of the same name found after this one
    shadowed_by: Path | None = None  # the file of the same name found first, which is used instead

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def name(self) -> str:
        return self.metadata.get("name", self.path.stem)

    @property
    def module(self) -> object:
        """The loaded model (loaded now if it was not yet); None for a broken file."""
        if self.loaded is None and self.ok:
            self.load()
        return self.loaded

    def load(self) -> bool:
        """Load the file on this entry's device if not yet done; False (and ``error`` set) if broken."""
        with _load_lock:
            if self.loaded is None and self.ok:
                try:
                    self.loaded, metadata = load_for_inference(self.path, self.device)
                except Exception as exc:  # a broken file must not stop the others
                    self.error = f"could not load: {str(exc).splitlines()[0]}"
                else:
                    self.metadata = metadata
                    self.error = validate(metadata, self.path)
                    if self.error:
                        self.loaded = None
        return self.ok

    def describe(self) -> str:
        m = self.metadata
        if not self.ok:
            return f"{self.path.name}: BROKEN — {self.error}"
        extra = f" ensemble={m['ensemble']} mode={m['mode']}" if m.get("task") == "arrange" else ""
        shadowed = "".join(f"; shadows {p}" for p in self.shadows)
        if self.shadowed_by is not None:
            shadowed += f"; not used: {self.shadowed_by} has the same name and comes first"
        return f"{m['name']} v{m['version']} task={m['task']}{extra} ({self.path}){shadowed}"


def model_dirs(extra: list[str | os.PathLike] | None = None) -> list[Path]:
    """The folders searched, first to last; ValueError for one named that is not a folder."""
    named = [(Path(d), "--models") for d in (extra or [])]
    env = os.environ.get("DEEP_MUSICIAN_MODELS", "")
    named += [(Path(d), "$DEEP_MUSICIAN_MODELS") for d in env.split(os.pathsep) if d]
    for d, source in named:
        if not d.is_dir():
            what = "does not exist" if not d.exists() else "is not a folder"
            raise ValueError(f"the model folder {d} (from {source}) {what}; give a folder of .pt or .pt2 "
                             "model files")
    return [d for d, _ in named] + [SHIPPED_DIR]


def read_metadata(path: Path) -> dict | None:
    """The metadata embedded in a model file, read without loading it (None when it cannot be read
    this way: loading the file then says why)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith(f"/extra/{METADATA_FILE}")]
            return json.loads(archive.read(min(names, key=len))) if names else None
    except (OSError, zipfile.BadZipFile, ValueError, KeyError):
        return None


class Registry:
    def __init__(self, dirs: list[str | os.PathLike] | None = None, device: str = "cpu") -> None:
        self.device = device
        self.entries: list[ModelEntry] = []
        self._elsewhere: dict[tuple[Path, str], ModelEntry] = {}  # (path, device) -> entry, see on()
        first: dict[str, ModelEntry] = {}  # model name -> the entry that is used for it
        for d in model_dirs(dirs):
            for path in sorted(d.iterdir()):
                if path.suffix in MODEL_SUFFIXES:
                    entry = self._find(path)
                    self.entries.append(entry)
                    if entry.ok and entry.name in first:
                        first[entry.name].shadows.append(entry.path)
                        entry.shadowed_by = first[entry.name].path
                    elif entry.ok:
                        first[entry.name] = entry

    def _find(self, path: Path) -> ModelEntry:
        metadata = read_metadata(path)
        entry = ModelEntry(path, metadata or {}, device=self.device)
        if metadata is None:
            entry.load()  # not readable as an archive: loading it finds the reason
        else:
            entry.error = validate(metadata, path)
        return entry

    def load_all(self) -> Registry:
        """Load every model now (the engine does at start-up); broken ones get their ``error``."""
        for entry in self.entries:
            entry.load()
        return self

    def on(self, entry: ModelEntry, device: str) -> ModelEntry:
        """``entry`` loaded on ``device`` (each task says where its models run): the entry itself
        when it is there already, else a copy loaded once and kept."""
        if device == entry.device or not entry.ok:
            return entry
        key = (entry.path, device)
        if key not in self._elsewhere:
            module, metadata = load_for_inference(entry.path, device)
            self._elsewhere[key] = ModelEntry(entry.path, metadata, module, "", device)
        return self._elsewhere[key]

    def usable(self, task: str | None = None) -> list[ModelEntry]:
        """The models that can be used (a file whose name an earlier one has is not), in search order."""
        return [e for e in self.entries if e.ok and e.shadowed_by is None
                and (task is None or e.metadata["task"] == task)]

    def use(self, e: ModelEntry) -> bool:
        """Load ``e`` for use (False if it cannot load) and say when it shadows a model of its name."""
        if not e.load():
            return False
        if e.shadows:
            log.warning("using %s from %s, which shadows the model of that name at %s", e.name,
                        e.path, ", ".join(str(p) for p in e.shadows))
        return True

    def find_arranger(self, ensemble: str, mode: str) -> ModelEntry:
        """The first usable arrange model for an ensemble and mode (user folders come first), loaded."""
        for e in self.usable("arrange"):
            if e.metadata["ensemble"] == ensemble and e.metadata["mode"] == mode and self.use(e):
                return e
        have = sorted({(e.metadata["ensemble"], e.metadata["mode"]) for e in self.usable("arrange")})
        listing = ", ".join(f"{ens} ({m})" for ens, m in have) or "none"
        raise ValueError(f"no {mode} arrange model for ensemble {ensemble!r}; available: {listing}. "
                         "Pick one with --ensemble/--mode, or add a model folder with --models DIR")

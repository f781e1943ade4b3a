"""Model registry: finds exported models, validates their metadata, loads them on a device.

Models are TorchScript (``.pt``) or torch.export (``.pt2``) files, loaded through one interface
(``models.format.load_for_inference``) and called the same way. They are discovered in the shipped
folder (``models/pretrained``), in folders named by ``$DEEP_MUSICIAN_MODELS``
(``os.pathsep``-separated) and in folders passed with ``--models``.
A broken file is reported with the reason and skipped; the rest still load.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from models.format import MODEL_SUFFIXES, load_for_inference, validate

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "models" / "pretrained"


@dataclass
class ModelEntry:
    path: Path
    metadata: dict = field(default_factory=dict)
    module: object = None
    error: str = ""
    device: str = "cpu"  # where the module runs; its inputs go there too

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def name(self) -> str:
        return self.metadata.get("name", self.path.stem)

    def describe(self) -> str:
        m = self.metadata
        if not self.ok:
            return f"{self.path.name}: BROKEN — {self.error}"
        extra = f" ensemble={m['ensemble']} mode={m['mode']}" if m.get("task") == "arrange" else ""
        return f"{m['name']} v{m['version']} task={m['task']}{extra} ({self.path})"


def model_dirs(extra: list[str | os.PathLike] | None = None) -> list[Path]:
    dirs = [Path(d) for d in (extra or [])]
    env = os.environ.get("DEEP_MUSICIAN_MODELS", "")
    dirs += [Path(d) for d in env.split(os.pathsep) if d]
    dirs.append(SHIPPED_DIR)
    return dirs


class Registry:
    def __init__(self, dirs: list[str | os.PathLike] | None = None, device: str = "cpu") -> None:
        self.device = device
        self.entries: list[ModelEntry] = []
        self._elsewhere: dict[tuple[Path, str], ModelEntry] = {}  # (path, device) -> entry, see on()
        for d in model_dirs(dirs):
            if d.is_dir():
                for path in sorted(d.iterdir()):
                    if path.suffix in MODEL_SUFFIXES:
                        self.entries.append(self._load(path))

    def _load(self, path: Path) -> ModelEntry:
        try:
            module, metadata = load_for_inference(path, self.device)
        except Exception as exc:  # a broken file must not stop the others
            return ModelEntry(path, error=f"could not load: {str(exc).splitlines()[0]}")
        error = validate(metadata, path)
        return ModelEntry(path, metadata, None if error else module, error, self.device)

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
        return [e for e in self.entries if e.ok and (task is None or e.metadata["task"] == task)]

    def find_arranger(self, ensemble: str, mode: str) -> ModelEntry:
        """The first usable arrange model for an ensemble and mode (user folders come first)."""
        arrangers = self.usable("arrange")
        for e in arrangers:
            if e.metadata["ensemble"] == ensemble and e.metadata["mode"] == mode:
                return e
        have = sorted({(e.metadata["ensemble"], e.metadata["mode"]) for e in arrangers})
        listing = ", ".join(f"{ens} ({m})" for ens, m in have) or "none"
        raise ValueError(f"no {mode} arrange model for ensemble {ensemble!r}; available: {listing}. "
                         "Pick one with --ensemble/--mode, or add a model folder with --models DIR")

from __future__ import annotations

import json

import torch

from engine.registry import Registry
from models.format import FORMAT_VERSION, METADATA_FILE


def test_broken_and_outdated_files_are_reported_and_skipped(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    old = torch.jit.script(torch.nn.Linear(2, 2))
    meta = {"format_version": FORMAT_VERSION - 1, "protocol_version": 1, "task": "arrange",
            "name": "old", "version": "0.1"}
    torch.jit.save(old, str(tmp_path / "old.pt"), _extra_files={METADATA_FILE: json.dumps(meta)})
    torch.jit.save(old, str(tmp_path / "bare.pt"))
    reg = Registry([tmp_path])
    errors = {e.path.name: e.error for e in reg.entries if not e.ok}
    assert set(errors) == {"junk.pt", "old.pt", "bare.pt"}
    assert "re-export" in errors["old.pt"] and f"{FORMAT_VERSION}" in errors["old.pt"]
    assert "metadata.json" in errors["bare.pt"]
    assert reg.usable("arrange")  # the shipped models still load


def test_user_folder_comes_before_shipped(tmp_path, monkeypatch):
    import shutil

    from engine.registry import SHIPPED_DIR

    src = SHIPPED_DIR / "arranger-satb-offline.pt"
    shutil.copy(src, tmp_path / "mine.pt")
    monkeypatch.setenv("DEEP_MUSICIAN_MODELS", str(tmp_path))
    reg = Registry()
    assert reg.find_arranger("satb", "offline").path == tmp_path / "mine.pt"

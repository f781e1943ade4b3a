"""The model file format: what makes metadata usable, and which versions a loader accepts."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from bridge.protocol import PROTOCOL_VERSION
from models.format import FORMAT_VERSION, METADATA_FILE, load_for_inference, load_scripted, validate

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "pretrained" / "arranger-satb-offline.pt"


def test_validate_names_missing_keys():
    assert "lacks" in validate({"task": "arrange"}, None)
    meta = {"format_version": FORMAT_VERSION, "protocol_version": 1, "task": "arrange", "name": "x",
            "version": "1"}
    assert "ensemble" in validate(meta, None)


def test_unknown_format_version_is_refused_with_a_sentence():
    _, meta = load_scripted(SHIPPED)
    assert validate(meta) == ""
    meta["format_version"] = FORMAT_VERSION + 1
    assert validate(meta) == (f"model format version {FORMAT_VERSION + 1} is not the supported "
                              f"{FORMAT_VERSION}; re-export it with this version of Deep Musician")


def test_a_file_whose_protocol_version_differs_still_loads(tmp_path):
    module, meta = load_scripted(SHIPPED)
    meta["protocol_version"] = PROTOCOL_VERSION + 1
    path = tmp_path / "other-protocol.pt"
    torch.jit.save(module, str(path), _extra_files={METADATA_FILE: json.dumps(meta)})
    _, got = load_for_inference(path)
    assert got["protocol_version"] == PROTOCOL_VERSION + 1 and validate(got, path) == ""
    del got["protocol_version"]  # information only, so not required either
    assert validate(got, path) == ""

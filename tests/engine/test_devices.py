"""Where models run (engine/devices.py): the rule for live work, on the shipped online models."""
from __future__ import annotations

import pytest

from engine import devices
from engine.registry import Registry


@pytest.fixture(scope="module")
def registry():
    return Registry()


def test_a_probe_session_times_real_chords_of_a_shipped_online_arranger(registry):
    entry = next(e for e in registry.usable("arrange") if e.metadata.get("mode") == "online")
    ms = devices.chord_ms(registry, entry, "cpu", chords=8)
    assert 0 < ms < 1000


def test_live_work_stays_on_the_cpu_when_batch_work_is_there(registry):
    assert devices.live_device(registry, "cpu") == "cpu"


@pytest.mark.parametrize(("accelerator_ms", "chosen"), [(0.5, "cuda"), (0.95, "cpu"), (3.2, "cpu")])
def test_an_accelerator_takes_live_work_only_when_clearly_faster(registry, monkeypatch, accelerator_ms,
                                                                 chosen):
    # No GPU on this machine: the per-chord times are given, the decision is the real function's.
    monkeypatch.setattr(devices, "chord_ms",
                        lambda reg, entry, device: 1.0 if device == "cpu" else accelerator_ms)
    assert devices.live_device(registry, "cuda") == chosen


def test_asking_for_a_gpu_torch_cannot_see_names_the_fix():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(ValueError, match="--device cpu"):
        devices.resolve("cuda")
    assert devices.resolve("auto") == "cpu"

"""Golden outputs: the bytes each job wrote before the structure moved (issue 15) must be the bytes
it writes after. Recorded once on the code as it stood (HEAD 9cc289d) with

    DM_GOLDEN_RECORD=1 python -m pytest tests/test_golden.py

and compared on every run since. Each case is one file the user would get (a MIDI from `arrange`,
a WAV from `perform`) or the replies of a live session through a real engine, hashed (sha256).
Inputs: the shipped example and three held-out chorales (test split of models/splits/bach.json),
in both ensembles and both modes.

Re-recorded once since, on purpose: the arrange goldens of the three chorales when MIDI output
gained its pickup meter (issue 17; each file's note tracks compared chunk by chunk before and after:
byte-identical, only the conductor track's meters changed from [4/4] to [1/4, 4/4 at beat 1]).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from bridge.client import Client
from bridge.score import sort_order

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden" / "outputs.json"
RECORD = os.environ.get("DM_GOLDEN_RECORD") == "1"
CHORALES = ("bach/bwv103.6.mxl", "bach/bwv108.6.mxl", "bach/bwv128.5.mxl")  # held out (test split)
ENSEMBLES = ("satb", "string_quartet")
MODES = ("offline", "online")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _inputs() -> dict[str, Path]:
    from music21 import corpus

    out = {"example": ROOT / "examples" / "piano.mid"}
    for name in CHORALES:
        out[Path(name).stem] = Path(str(corpus.getWork(name)))
    return out


@pytest.fixture(scope="module")
def golden():
    if RECORD:
        found: dict[str, str] = {}
        yield found
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
        return
    yield json.loads(GOLDEN.read_text())


def check(golden: dict[str, str], key: str, digest: str) -> None:
    if RECORD:
        golden[key] = digest
    else:
        assert key in golden, f"no golden output for {key}; record with DM_GOLDEN_RECORD=1"
        assert digest == golden[key], f"{key}: the output changed"


def _cli(*argv: str) -> None:
    from engine.cli import main

    assert main(list(argv)) == 0


@pytest.mark.slow
@pytest.mark.parametrize("ensemble", ENSEMBLES)
@pytest.mark.parametrize("mode", MODES)
def test_arrange_writes_the_same_midi(golden, tmp_path, ensemble, mode):
    for name, src in _inputs().items():
        out = tmp_path / f"{name}-{ensemble}-{mode}.mid"
        _cli("arrange", str(src), "-o", str(out), "--ensemble", ensemble, "--mode", mode)
        check(golden, f"arrange/{name}/{ensemble}/{mode}", _sha(out.read_bytes()))


needs_synth = pytest.mark.skipif(shutil.which("fluidsynth") is None and not RECORD,
                                 reason="FluidSynth is not installed (bash scripts/setup.sh)")


@needs_synth
@pytest.mark.slow
def test_perform_writes_the_same_wav(golden, tmp_path):
    for name in ("example", "bwv103.6"):
        mid, wav = tmp_path / f"{name}.mid", tmp_path / f"{name}.wav"
        _cli("arrange", str(_inputs()[name]), "-o", str(mid))
        # The raw level: the goldens predate loudness normalisation (issue 18), which changes
        # every sample by one gain; tests/bridge/test_loudness.py covers the normalised output.
        _cli("perform", str(mid), "-o", str(wav), "--sample-rate", "22050", "--loudness", "raw")
        check(golden, f"perform/{name}", _sha(wav.read_bytes()))


def _chords(notes: np.ndarray) -> list[np.ndarray]:
    notes = notes[sort_order(notes)]
    starts = np.flatnonzero(np.concatenate([[True], notes["time"][1:] != notes["time"][:-1]]))
    return np.split(notes, starts[1:])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_live_sessions_reply_the_same(golden, tmp_path):
    from bridge.scorefile import read_score
    from tests.engine.test_server import Engine

    engine = Engine(tmp_path).wait_ready()
    try:
        with Client(engine.endpoint, timeout_s=30.0) as c:
            for name, src in _inputs().items():
                score = read_score(src)
                notes, _ = score.merged(include_drums=False)
                for ensemble in ENSEMBLES:
                    labels = [c.live_notes(f"{name}-{ensemble}", chord, int(chord["time"][0]),
                                           ensemble=ensemble, resolution=score.resolution).labels
                              for chord in _chords(notes)[:120]]
                    check(golden, f"live_arrange/{name}/{ensemble}",
                          _sha(np.concatenate(labels).astype(np.uint8).tobytes()))
            # live perform: the example as the plugin sends it, 6 ticks (0.125 s) a block, notes open
            # (duration 0) and released at their ends, each voice its own part
            score = read_score(_inputs()["example"])
            notes, _ = score.merged(include_drums=False)
            notes = notes[sort_order(notes)][:80]
            parts = (notes["pitch"] % 4).astype(np.uint8)
            ends = notes["time"] + notes["duration"]
            audio = []
            for k in range(int(ends.max()) // 6 + 2):
                inside = (notes["time"] >= 6 * k) & (notes["time"] < 6 * k + 6)
                done = (ends >= 6 * k) & (ends < 6 * k + 6)
                opened = notes[inside].copy()
                opened["duration"] = 0
                releases = np.stack([ends[done], notes["pitch"][done], parts[done]], 1).astype(np.int64)
                start, block = c.live_perform("golden-perform", opened, 6 * k, block_samples=2756,
                                              sample_rate_hz=22_050, qpm=120.0, parts=parts[inside],
                                              releases=releases, programs=[52, 52, 42, 32])
                assert start == 2756 * k
                audio.append(block)
            check(golden, "live_perform/example", _sha(np.concatenate(audio, 1).tobytes()))
    finally:
        engine.stop()

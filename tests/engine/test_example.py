"""The shipped example: an original chorale (written for this project, so no model trained on it),
written in four voices and merged into one piano track. The shipped SATB models should find the
voices it was written in."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from bridge.midi import read_midi
from engine.registry import Registry
from engine.tasks.arrange import arrange

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))
import make_example  # noqa: E402


@pytest.mark.parametrize("mode", ["online", "offline"])
def test_shipped_models_recover_the_written_voices(mode):
    truth = {}
    for k, (voice, text) in enumerate(make_example.VOICES.items()):
        for n in make_example.parse_voice(voice, text, make_example.VOICE_VELOCITY[voice]).tolist():
            truth.setdefault((n[0], n[1]), set()).add(k)
    out = arrange(read_midi(EXAMPLES / "piano.mid"), Registry().find_arranger("satb", mode)).to_score()
    hits = [k in truth[(n[0], n[1])] for k, t in enumerate(out.tracks) for n in t.notes.tolist()]
    assert len(hits) == 249
    assert np.mean(hits) >= 0.95  # 100% for the models shipped with this release

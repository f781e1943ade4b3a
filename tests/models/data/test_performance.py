from __future__ import annotations

import json

import numpy as np
import pytest

from bridge import synth
from models.data import performance as pdata
from models.data.splits import load_split_file
from models.performer import expression as ex
from models.performer import render

pytestmark = pytest.mark.skipif(synth.available() != "" or not render.installed_performers(),
                                reason="needs libfluidsynth and a GM SoundFont")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The first Bach chorale of the music21 corpus, soprano only, by two performers: a real render."""
    out = tmp_path_factory.mktemp("perf") / "bach-soprano"
    summary = pdata.build("bach-soprano", out_dir=out, limit=1, jobs=1, progress=False)
    return out, summary


def test_build_writes_a_shard_per_performer_with_mel_and_alignment_targets(built):
    out, summary = built
    assert summary["shards"] == 2 and summary["pieces"] == 1 and summary["notes"] > 20
    rows = json.loads((out / "index.json").read_text())
    assert rows[0]["split"] == load_split_file("bach")[rows[0]["name"]]
    pieces = pdata.load(out, with_mel=True)
    assert {p.performer for p in pieces} == set(summary["performers"])
    for p in pieces:
        assert p.notes.dtype == ex.PERFORMED_DTYPE and set(np.unique(p.notes["part"])) == {0}
        assert p.mel.shape[0] == render.N_MELS and np.isfinite(p.mel).all()
        # the mel covers the performance (plus the release tail), frame by frame
        end_s = float((p.notes["onset_s"] + p.notes["duration_s"]).max())
        mel_s = p.mel.shape[1] * render.HOP / render.SAMPLE_RATE_HZ
        assert mel_s == pytest.approx(end_s + render.TAIL_S, abs=0.1)
        assert (out / "audio" / f"{p.key}.wav").stat().st_size > 0
    a, b = pieces
    assert np.array_equal(a.notes["onset_beats"], b.notes["onset_beats"])
    assert not np.allclose(a.notes["onset_s"], b.notes["onset_s"])  # two performers, two timings


def test_rebuild_skips_finished_shards_and_reindexes(built):
    out, summary = built
    shard = sorted((out / "shards").glob("*.npz"))[0]
    stamp = shard.stat().st_mtime_ns
    again = pdata.build("bach-soprano", out_dir=out, limit=1, jobs=1, progress=False)
    assert shard.stat().st_mtime_ns == stamp
    assert again["shards"] == summary["shards"]
    (out / "index.json").unlink()  # an interrupted build: the index comes back from the shards
    assert pdata.write_index(out)["shards"] == summary["shards"]


def test_bad_input_is_a_sentence(tmp_path):
    with pytest.raises(ValueError, match="unknown performance set"):
        pdata.build("nope", out_dir=tmp_path)
    with pytest.raises(ValueError, match="not a folder"):
        pdata.build("mine", source=tmp_path / "missing", out_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="not built"):
        pdata.load(tmp_path / "nowhere")


def test_a_user_midi_folder_renders(tmp_path):
    from bridge.midi import write_midi
    from bridge.score import Score, Track, make_notes

    src = tmp_path / "src"
    src.mkdir()
    score = Score(tracks=[Track("a", notes=make_notes(np.arange(8) * 24, 60 + np.arange(8), 24, 80)),
                          Track("b", notes=make_notes(np.arange(4) * 48, 48, 48, 70))])
    write_midi(score, src / "tune.mid")
    summary = pdata.build("mine", source=src, out_dir=tmp_path / "out", performers_per_piece=1, jobs=1,
                          progress=False)
    assert summary["shards"] == 1 and summary["notes"] == 12

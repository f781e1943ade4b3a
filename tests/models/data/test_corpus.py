from __future__ import annotations

import numpy as np
import pytest

from bridge.midi import write_midi
from bridge.score import Score, Track, make_notes
from models.data import corpus as ds
from models.data.splits import load_split_file


def test_clean_drops_zero_length_and_in_part_duplicates_and_sorts():
    notes = make_notes([10, 0, 0, 5, 0, 0], [60, 64, 60, 62, 60, 60], [4, 8, 8, 0, 8, 8])
    labels = np.array([0, 1, 2, 3, 1, 2])
    n, lab = ds.clean(notes, labels)
    # the zero-length (5, 62) is gone; part 2's repeated (0, 60, 8) is dropped once; the unison
    # of parts 1 and 2 on (0, 60, 8) stays: those are two real notes
    assert n["time"].tolist() == [0, 0, 0, 10]
    assert n["pitch"].tolist() == [60, 60, 64, 60]
    assert lab.tolist() == [1, 2, 1, 0]


def test_corpus_build_matches_committed_split(tiny_bach):
    pieces = ds.load(tiny_bach)
    assert len(pieces) >= 20
    committed = load_split_file("bach")
    for p in pieces:
        assert p.split == committed[p.name]
        assert set(np.unique(p.labels)) <= {0, 1, 2, 3}
        order = np.lexsort((p.notes["duration"], p.notes["pitch"], p.notes["time"]))
        assert (order == np.arange(len(order))).all()
    assert ds.ensemble_of(tiny_bach) == "satb"


def test_build_from_user_folder_labels_parts_by_name(tmp_path):
    src = tmp_path / "mine"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        tracks = []
        for name, base in (("Violin I", 76), ("Violin II", 69), ("Viola", 60), ("Violoncello", 48),
                           ("Piano", 60)):
            t = np.arange(0, 24 * 20, 24)
            tracks.append(Track(name, 40, notes=make_notes(t, base + rng.integers(-3, 4, len(t)), 24)))
        write_midi(Score(24, tracks), src / f"piece{i}.mid")
    (src / "broken.mid").write_bytes(b"not midi")
    path = ds.build("mine", source=src, ensemble="string_quartet", out_dir=tmp_path, jobs=1,
                    progress=False)
    pieces = ds.load(path)
    assert len(pieces) == 3
    # 4 matched parts x 20 notes; the Piano track matches no part and is dropped
    assert all(len(p.labels) == 80 and sorted(set(p.labels.tolist())) == [0, 1, 2, 3] for p in pieces)
    assert "broken.mid" in (tmp_path / "mine.skipped.txt").read_text()
    s = ds.stats(path)
    assert s["files"] == 3 and s["notes"] == 240 and s["parts"] == 4


def test_build_refuses_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        ds.build("x", source=tmp_path / "nope", ensemble="satb", out_dir=tmp_path)


def test_unbuilt_set_says_how_to_build(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEP_MUSICIAN_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="deep-musician data build bach"):
        ds.load("bach")


def test_a_voice_set_keeps_the_pieces_with_that_many_voices_ranked_by_pitch(tmp_path, monkeypatch):
    src = tmp_path / "mine"
    src.mkdir()
    for i, voices in enumerate((4, 5, 5, 6)):
        t = np.arange(0, 24 * 12, 24)
        tracks = [Track(f"Voice {v}", 52, notes=make_notes(t, 40 + 7 * v + np.arange(len(t)) % 3, 24))
                  for v in range(voices)]
        write_midi(Score(24, tracks), src / f"piece{i}.mid")
    ds.build("mine", source=src, out_dir=tmp_path, jobs=1, progress=False)  # ensemble None: by pitch
    counts = ds.voice_counts(tmp_path / "mine.npz")
    assert {v: sum(row.values()) for v, row in counts.items()} == {4: 1, 5: 2, 6: 1}
    monkeypatch.setitem(ds.VOICE_SETS, "mine5", ("mine", 5, "five_voices"))
    path = ds.build("mine5", out_dir=tmp_path, progress=False)
    pieces = ds.load(path)
    assert sorted(p.name for p in pieces) == ["piece1.mid", "piece2.mid"]
    parent = {p.name: p for p in ds.load(tmp_path / "mine.npz")}
    for p in pieces:  # labels, notes and split as the parent set has them; top voice first
        assert np.array_equal(p.labels, parent[p.name].labels) and p.split == parent[p.name].split
        assert sorted(set(p.labels.tolist())) == [0, 1, 2, 3, 4]
        means = [p.notes["pitch"][p.labels == k].mean() for k in range(5)]
        assert means == sorted(means, reverse=True)
    assert ds.ensemble_of(path) == "five_voices" and ds.stats(path)["parts"] == 5

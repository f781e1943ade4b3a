from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bridge.chords import CHORD_DTYPE, chord_tone_ratio
from bridge.midi import write_midi
from bridge.score import KEY_DTYPE, METER_DTYPE, NOTE_DTYPE, Score, Track, make_notes
from engine.cli import main
from models.data import RESOLUTION
from models.data import multitrack as mt
from models.data import multitrack_read as read
from models.data.instruments import INSTRUMENTS, instrument_for
from models.data.splits import load_split_file


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("mtdata")
        mp.setenv("DEEP_MUSICIAN_DATA", str(root))
        yield root


@pytest.fixture(scope="module")
def tiny_bach(data_root):
    """The first 2 real chorales, then resumed to 4: the second build converts only the new ones."""
    mt.build("bach", limit=2, jobs=1, progress=False, shard_files=2)
    first = mt.set_dir("bach") / "shard-00000.npz"
    stamp = first.stat().st_mtime_ns
    mt.build("bach", limit=4, jobs=1, progress=False, shard_files=2)
    assert first.stat().st_mtime_ns == stamp
    return mt.set_dir("bach")


def check_piece(p: mt.MultiPiece) -> None:
    assert p.resolution == RESOLUTION and p.notes.dtype == NOTE_DTYPE and p.track.dtype == np.int16
    assert p.meters.dtype == METER_DTYPE and p.keys.dtype == KEY_DTYPE and p.chords.dtype == CHORD_DTYPE
    key = p.notes["time"] * 128 + p.notes["pitch"]
    assert (np.diff(key) >= 0).all()
    assert len(p.instruments) == len(p.programs) and p.track.max() < len(p.instruments)
    assert all(i in INSTRUMENTS for i in p.instruments)
    assert p.meters["time"][0] == 0 and p.keys["time"][0] == 0 and p.bar_starts[0] == 0
    assert (np.diff(p.bar_starts) > 0).all()
    end = int((p.notes["time"] + p.notes["duration"]).max())
    assert p.chords["time"][0] == 0 and (p.chords["duration"] > 0).all()
    assert (p.chords["time"][1:] == (p.chords["time"] + p.chords["duration"])[:-1]).all()
    assert int(p.chords["time"][-1] + p.chords["duration"][-1]) == end
    assert (p.chords["quality"] < len(mt.CHORD_QUALITIES)).all() and (p.chords["root"] < 12).all()


def test_bach_build_resumes_and_follows_the_committed_split(tiny_bach):
    shards = sorted(tiny_bach.glob("shard-*.npz"))
    assert len(shards) == 2  # one per build: the resumed build left the first shard alone
    pieces = mt.load("bach")
    assert len(pieces) == 4 and len({p.name for p in pieces}) == 4
    committed = load_split_file("bach")
    for p in pieces:
        check_piece(p)
        assert p.split == committed[p.name + ".mxl"]
        assert {"soprano", "alto", "tenor", "bass"} <= set(p.instruments)  # some add horn, oboe...
    assert {p.split for p in mt.load("bach", split="train")} == {"train"}
    assert (tiny_bach / "split.json").exists()
    s = mt.stats("bach")
    assert s["pieces"] == 4 and s["files"] == 4 and s["notes"] == sum(len(p.notes) for p in pieces)


def test_a_chorale_with_an_analysis_takes_its_chords_from_it():
    import music21

    path = next(iter(read._bach_analyses().items()))[1]
    bwv = next(k for k, v in read._bach_analyses().items() if v == path)
    score = (music21.__file__.rsplit("/", 1)[0]) + f"/corpus/bach/{bwv}.mxl"
    (name, arrays), = read.convert_file((score, f"bach/{bwv}.mxl", True))
    assert name == f"bach/{bwv}" and arrays["chord_source"] == "analysis"
    assert chord_tone_ratio(arrays["notes"], arrays["chords"]) > 0.8


def test_a_pickup_bar_starts_the_bar_lines(tiny_bach):
    pieces = {p.name: p for p in mt.load(tiny_bach)}
    (_, arrays), = read.convert_file((music21_path("bach/bwv66.6.mxl"), "bach/bwv66.6.mxl", True))
    assert arrays["bar_starts"][:3].tolist() == [0, RESOLUTION, 5 * RESOLUTION]  # one-beat pickup, 4/4
    assert tuple(arrays["keys"][0])[1:] == (3, 1)  # F# minor
    assert pieces  # the loaded set is real data too


def music21_path(rel: str) -> str:
    import music21

    return f"{music21.__file__.rsplit('/', 1)[0]}/corpus/{rel}"


def test_user_folder_of_midi_labels_instruments_and_skips_broken_files(data_root, tmp_path):
    src = tmp_path / "mine"
    src.mkdir()
    t = np.arange(0, RESOLUTION * 32, RESOLUTION)
    for i in range(3):
        write_midi(Score(RESOLUTION, [
            Track("Grand Piano", 0, notes=make_notes(t, 60 + (t // RESOLUTION) % 12, RESOLUTION)),
            Track("Bass", 33, notes=make_notes(t, 36 + i, RESOLUTION)),
            Track("Drums", 0, is_drum=True, notes=make_notes(t, 36, 6)),
        ]), src / f"song{i}.mid")
    (src / "broken.mid").write_bytes(b"not midi")
    folder = mt.build("mine", source=src, jobs=1, progress=False)
    pieces = mt.load(folder)
    assert [p.name for p in pieces] == ["song0", "song1", "song2"]
    for p in pieces:
        check_piece(p)
        assert p.instruments == ["piano", "bass_guitar", "drums"] and p.programs == [0, 33, 0]
        assert p.keys.shape == (1,)
    assert "broken" in (folder / "skipped.tsv").read_text()
    # drums stay where they are; the piano and bass move
    up = mt.transpose(pieces[0], 2)
    drums = up.instruments.index("drums")
    assert (up.notes["pitch"][up.track == drums] == 36).all()
    before = pieces[0].notes["pitch"][pieces[0].track == 0]
    assert sorted(up.notes["pitch"][up.track == 0]) == sorted(before + 2)


def test_folk_collection_gives_one_piece_per_tune(tmp_path):
    abc = tmp_path / "tunes.abc"
    four = "|".join(["cdef gabc'", "c'bag fedc"] * 4)
    three = "|".join(["def gab", "agf edc"] * 4)
    abc.write_text(f"X:1\nT:First\nM:4/4\nL:1/8\nK:G\n{four}|]\n\nX:2\nT:Second\nM:3/4\nL:1/8\nK:Dm\n"
                   f"{three}|]\n")
    results = read.convert_file((str(abc), "coll/tunes.abc", False))
    assert [n for n, _ in results] == ["coll/tunes/1", "coll/tunes/2"]
    first, second = (a for _, a in results)
    assert first["instruments"] == ["piano"] and tuple(first["keys"][0])[1:] == (1, 0)
    assert tuple(second["meters"][0])[1:] == (3, 4) and tuple(second["keys"][0])[1:] == (-1, 1)
    assert second["bar_starts"][:3].tolist() == [0, 3 * RESOLUTION, 6 * RESOLUTION]
    # the first three tunes of a real corpus collection: fiddle melodies
    text = open(music21_path("airdsAirs/book1.abc")).read()
    (tmp_path / "airdsAirs").mkdir()
    (tmp_path / "airdsAirs" / "book1.abc").write_text("\nX:".join(text.split("\nX:")[:4]))
    results = read.convert_file((str(tmp_path / "airdsAirs" / "book1.abc"), "airdsAirs/book1.abc", False))
    assert [n for n, _ in results] == ["airdsAirs/book1/1", "airdsAirs/book1/2", "airdsAirs/book1/3"]
    assert all(a["instruments"] == ["violin"] for _, a in results)
    # a melody's chords change at most once a bar
    assert (first["chords"]["time"] % (4 * RESOLUTION) == 0).all()
    assert (second["chords"]["time"] % (3 * RESOLUTION) == 0).all()


def test_transpose_refuses_to_leave_an_instruments_range(tiny_bach):
    piece = mt.load(tiny_bach)[0]
    soprano = piece.notes["pitch"][piece.track == 0]
    too_far = INSTRUMENTS["soprano"].high - int(soprano.max()) + 1
    assert mt.transpose(piece, too_far) is None
    up = mt.transpose(piece, 1)
    assert up is not None and (up.notes["pitch"].astype(int) - 1).tolist() == sorted_like(piece, up)
    assert ((up.chords["root"].astype(int) - piece.chords["root"]) % 12 == 1).all()
    assert ((up.keys["fifths"] - piece.keys["fifths"]) % 12 == 7).all()
    shifted = list(mt.augmentations(piece))
    assert 1 < len(shifted) <= 12 if piece.split == "train" else len(shifted) == 1


def sorted_like(piece: mt.MultiPiece, moved: mt.MultiPiece) -> list[int]:
    """The original pitches in the moved piece's note order (a semitone keeps the order)."""
    return piece.notes["pitch"].astype(int).tolist()


def test_non_training_pieces_are_not_augmented(tiny_bach):
    piece = next(p for p in mt.load(tiny_bach) if p.split != "train") if any(
        p.split != "train" for p in mt.load(tiny_bach)) else None
    if piece is None:
        piece = mt.load(tiny_bach)[0]
        piece.split = "test"
    assert list(mt.augmentations(piece)) == [piece]


def test_instrument_names_and_programs_map_to_the_vocabulary():
    assert instrument_for("Violin I", 0) == "violin"
    assert instrument_for("Violoncello", None) == "cello"
    assert instrument_for("Contrabass", None) == "contrabass"
    assert instrument_for("Bass", 33) == "bass_guitar"
    assert instrument_for("Bass", None) == "bass"
    assert instrument_for("Quintus", None, median_pitch=62) == "alto"
    assert instrument_for("Track 3", 73) == "flute"
    assert instrument_for("", None, vocal=True, median_pitch=48) == "bass"
    assert instrument_for("anything", 10, is_drum=True) == "drums"
    with pytest.raises(ValueError, match="0..127"):
        instrument_for("x", 200)


def test_cli_builds_a_multitrack_folder_and_refuses_bad_flags(data_root, tmp_path, capsys):
    src = tmp_path / "cli"
    src.mkdir()
    t = np.arange(0, RESOLUTION * 16, RESOLUTION)
    write_midi(Score(RESOLUTION, [Track("Flute", 73, notes=make_notes(t, 72, RESOLUTION))]), src / "a.mid")
    assert main(["data", "build", "clitest", "--multitrack", "--source", str(src), "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "clitest (multitrack): 1 pieces" in out and "flute 1" in out
    assert main(["data", "stats", "clitest"]) == 0
    assert main(["data", "build", "clitest", "--multitrack", "--ensemble", "satb", "--source", str(src)]) == 2
    assert main(["data", "build", "nope", "--multitrack"]) == 2
    assert "unknown corpus set" in capsys.readouterr().err


def test_a_set_named_like_its_source_folder_builds_from_beside_it(data_root, tmp_path, capsys,
                                                                    monkeypatch):
    # `deep-musician data build songs --source songs --multitrack` run next to the folder songs/
    src = tmp_path / "songs"
    src.mkdir()
    t = np.arange(0, RESOLUTION * 16, RESOLUTION)
    write_midi(Score(RESOLUTION, [Track("Flute", 73, notes=make_notes(t, 72, RESOLUTION))]), src / "a.mid")
    monkeypatch.chdir(tmp_path)
    assert main(["data", "build", "songs", "--multitrack", "--source", "songs", "--jobs", "1"]) == 0
    assert "songs (multitrack): 1 pieces" in capsys.readouterr().out
    assert mt.resolve("songs") == data_root / "multitrack" / "songs"
    assert len(mt.load("songs")) == 1


def test_unbuilt_set_says_how_to_build(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEP_MUSICIAN_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="--multitrack"):
        mt.load("quartets")
    with pytest.raises(ValueError, match="split must be one of"):
        mt.load("quartets", split="dev")


def test_quartet_parts_are_read_on_one_bar_line():
    """Haydn op. 74/1 ii: the second violin's bar 14 is an eighth short (a rest missing) and music21
    starts its later bars early; the first violin drifts too. The build reads every part on the
    score's bar lines (bridge.notation), so the four parts end together, in the last bar."""
    import music21

    path = Path(music21.__file__).parent / "corpus" / "haydn" / "opus74no1" / "movement2.mxl"
    [(_, arrays)] = read.convert_file((str(path), "haydn/opus74no1/movement2.mxl", False))
    notes, track = arrays["notes"], arrays["track"]
    ends = [int((notes["time"] + notes["duration"])[track == i].max()) for i in range(4)]
    bars = arrays["bar_starts"]
    assert len(bars) == 174 and len(set(ends)) == 1 and ends[0] > bars[-1], ends  # was 6180, 6204, 6240, 6240

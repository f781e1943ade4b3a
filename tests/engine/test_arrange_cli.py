"""`deep-musician arrange` as a user runs it: ensembles from files, faithful scores (read back, and
rendered by MuseScore 3 where it is installed), choosing tracks and tunes, and its errors."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bridge.midi import read_midi, write_midi
from bridge.score import DRUM_CHANNEL, Score, Track, make_notes

ROOT = Path(__file__).resolve().parents[2]


def _cli(*argv: str) -> int:
    from engine.cli import main

    return main(list(argv))


def _corpus(name: str) -> str:
    from music21 import corpus

    return str(corpus.getWork(name))


def test_a_users_ensemble_file_is_served_by_the_model_with_as_many_parts(tmp_path, capsys):
    own = tmp_path / "low_strings.toml"
    own.write_text((ROOT / "models/ensemble_files/string_quartet.toml").read_text()
                   .replace('"string_quartet"', '"low_strings"').replace('"Violin I"', '"Viola I"'))
    out = tmp_path / "out.mid"
    assert _cli("arrange", str(ROOT / "examples/piano.mid"), "-o", str(out), "--ensemble", str(own)) == 0
    said = capsys.readouterr().out
    assert "for low_strings with arranger-quartet-offline" in said
    assert [t.name for t in read_midi(out).tracks][:1] == ["Viola I"]


def test_seven_parts_cannot_be_served_and_say_why(tmp_path, capsys):
    own = tmp_path / "seven.toml"
    text = (ROOT / "models/ensemble_files/string_orchestra.toml").read_text().replace(
        '"string_orchestra"', '"seven_strings"')
    extra = "".join(f'\n[[parts]]\nname = "Violin {n}"\nprogram = 48\nrange = ["G3", "C7"]\n' for n in (3, 4))
    own.write_text(text + extra)
    out = tmp_path / "out.mid"
    src = str(ROOT / "examples/piano.mid")
    assert _cli("arrange", src, "-o", str(out), "--ensemble", str(own)) == 2
    err = capsys.readouterr().err
    assert "has 7 parts, and no installed offline arrange model has 7 (" in err
    assert "only 5 seven-voice works" in err
    assert not out.exists()


def test_a_bad_ensemble_file_is_one_sentence(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'\n[[parts]]\nname = 'A'\nprogram = 1\nrange = ['C9', 'C2']\n")
    assert _cli("arrange", str(ROOT / "examples/piano.mid"), "-o", str(tmp_path / "o.mid"),
                "--ensemble", str(bad)) == 2
    assert "goes down" in capsys.readouterr().err


def test_musicxml_keeps_keys_meters_tempo_title_composer_clefs_and_transpositions(tmp_path):
    from music21 import converter

    for ensemble, suffix in (("satb", ".musicxml"), ("saxophone_quartet", ".mxl")):
        out = tmp_path / f"out{suffix}"
        assert _cli("arrange", _corpus("bach/bwv103.6.mxl"), "-o", str(out), "--ensemble", ensemble) == 0
        score = converter.parse(str(out))
        assert score.metadata.composer == "J.S. Bach"
        keys = score.parts[0].flatten().getElementsByClass("KeySignature")
        if ensemble == "satb":  # at sounding pitch: the chorale's two sharps; the tenor's clef
            assert keys[0].sharps == 2
            assert score.parts[2].flatten().getElementsByClass("Clef")[0].octaveChange == -1
        else:  # soprano saxophone written a tone up: four sharps
            assert keys[0].sharps == 4
            assert score.parts[0].getInstrument().transposition.semitones == -2
        assert score.parts[0].flatten().getElementsByClass("TimeSignature")[0].ratioString == "4/4"
    rag = tmp_path / "rag.musicxml"
    assert _cli("arrange", _corpus("joplin/maple_leaf_rag.mxl"), "-o", str(rag)) == 0
    parsed = converter.parse(str(rag))
    assert parsed.parts[0].flatten().getElementsByClass("TimeSignature")[0].ratioString == "2/4"
    assert parsed.parts[0].flatten().getElementsByClass("KeySignature")[0].sharps == -4
    assert "div." in {t.content for t in parsed.flatten().getElementsByClass("TextExpression")}


@pytest.mark.skipif(shutil.which("mscore3") is None,
                    reason="MuseScore 3 is not installed (apt-get install musescore3)")
def test_musescore_renders_the_output(tmp_path):
    out = tmp_path / "satb.musicxml"
    assert _cli("arrange", _corpus("bach/bwv103.6.mxl"), "-o", str(out)) == 0
    env = {"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(["mscore3", "-o", str(tmp_path / "page.png"), str(out)], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    page = tmp_path / "page-1.png"
    assert page.exists() and page.stat().st_size > 20_000  # a page with notes on it, not a blank


def _band(path: Path) -> None:
    t = np.arange(16) * 240
    write_midi(Score(480, [Track("Lead", 0, notes=make_notes(t, 72 + (np.arange(16) % 5), 240)),
                           Track("Bass", 32, notes=make_notes(t, 40 + (np.arange(16) % 3), 240)),
                           Track("Drums", 0, True, make_notes(t, 36, 120))]), path)


def test_track_picks_source_tracks_and_drums_pass_through(tmp_path, capsys):
    src, out = tmp_path / "band.mid", tmp_path / "out.mid"
    _band(src)
    assert _cli("arrange", str(src), "-o", str(out), "--track", "lead") == 0
    back = read_midi(out)
    pitched = np.concatenate([t.notes for t in back.tracks if not t.is_drum])
    assert len(pitched) == 16 and pitched["pitch"].min() >= 72  # the lead only
    drums = [t for t in back.tracks if t.is_drum]
    assert len(drums) == 1 and len(drums[0].notes) == 16
    assert _cli("arrange", str(src), "-o", str(out), "--track", "9", "--force") == 2
    assert "1: Lead; 2: Bass; 3: Drums (drums)" in capsys.readouterr().err
    assert DRUM_CHANNEL == 9


def test_tune_picks_a_tune_and_the_program_says_which(tmp_path, capsys):
    abc = _corpus("essenFolksong/altdeu10.abc")
    out = tmp_path / "out.mid"
    assert _cli("arrange", abc, "-o", str(out)) == 0
    said = capsys.readouterr()
    assert "holds 313 tunes; used tune 1" in said.err and "--tune N (1..313)" in said.err
    assert "Soprano 60, Alto 0, Tenor 0, Bass 0" in said.out  # a melody stays in one part
    assert _cli("arrange", abc, "-o", str(out), "--tune", "Herzog Ernst", "--force") == 0
    assert "used tune 2 (X:2 'Herzog Ernst')" in capsys.readouterr().err
    assert _cli("arrange", abc, "-o", str(out), "--tune", "400", "--force") == 2
    assert "holds 313 tunes; give 1..313" in capsys.readouterr().err


def test_parse_errors_speak_the_format(tmp_path, capsys):
    abc = tmp_path / "bad.abc"
    abc.write_bytes(b"\x00\x01garbage")
    assert _cli("arrange", str(abc), "-o", str(tmp_path / "o.mid")) == 2
    err = capsys.readouterr().err
    assert "could not parse bad.abc as ABC" in err and "X:" in err and "<music21" not in err
    assert "MIDI or MusicXML" not in err
    krn = tmp_path / "bad.krn"
    krn.write_text("garbage\n")
    assert _cli("arrange", str(krn), "-o", str(tmp_path / "o.mid")) == 2
    assert "could not parse bad.krn as Humdrum" in capsys.readouterr().err
    assert not (tmp_path / "o.mid").exists()


def test_render_without_a_soundfont_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DEEP_MUSICIAN_SOUNDFONT", str(tmp_path / "missing.sf2"))
    out, wav, png = tmp_path / "o.mid", tmp_path / "o.wav", tmp_path / "o.png"
    assert _cli("arrange", str(ROOT / "examples/piano.mid"), "-o", str(out), "--render", str(wav),
                "--plot", str(png)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--render cannot work here" in err
    assert not out.exists() and not wav.exists() and not png.exists()


def test_zero_length_notes_are_kept(tmp_path, capsys):
    import mido

    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    for i in range(4):  # four zero-length notes, then one of a quarter
        track.append(mido.Message("note_on", note=60 + i, velocity=80, time=0 if i == 0 else 480))
        track.append(mido.Message("note_off", note=60 + i, time=0))
    track.append(mido.Message("note_on", note=50, velocity=80, time=480))
    track.append(mido.Message("note_off", note=50, time=480))
    mid.save(tmp_path / "zero.mid")
    out = tmp_path / "out.mid"
    assert _cli("arrange", str(tmp_path / "zero.mid"), "-o", str(out)) == 0
    assert "4 notes of no length (grace notes, zero-length MIDI notes) kept" in capsys.readouterr().out
    for keep, want in ((True, [0, 0, 0, 0, 480]), (False, [1, 1, 1, 1, 480])):
        back = read_midi(out, keep_zero_length=keep)
        assert np.sort(np.concatenate([t.notes for t in back.tracks])["duration"]).tolist() == want


def _graces(path: Path) -> list[tuple]:
    from music21 import converter

    return sorted((p.partName or "", float(n.offset), n.pitch.midi) for p in converter.parse(str(path)).parts
                  for n in p.flatten().notes if n.duration.isGrace)


def test_grace_notes_are_kept_as_grace_notes_in_their_part(tmp_path, capsys):
    from music21 import chord, note, stream

    melody, low = stream.Part(), stream.Part()
    for bar in range(4):  # a melody with a run of two grace notes (a turn) and one single, over chords
        for beat, pitch in enumerate((76, 74, 72, 74)):
            if beat == 2:
                for grace in ((77, 76) if bar % 2 else (75,)):
                    melody.append(note.Note(grace).getGrace())
            melody.append(note.Note(pitch, quarterLength=1))
        low.append(chord.Chord([48, 55, 60], quarterLength=4))
    src, out = tmp_path / "in.musicxml", tmp_path / "out.musicxml"
    stream.Score([melody, low]).write("musicxml", fp=str(src))
    assert _cli("arrange", str(src), "-o", str(out), "--ensemble", "string_quartet") == 0
    said = capsys.readouterr()
    assert "6 notes of no length (grace notes, zero-length MIDI notes) kept, each as a grace note" in said.out
    assert "2 runs of two or more grace notes before one note come out lowest first" in said.err
    graces = _graces(out)
    assert sorted(g[1:] for g in graces) == sorted(g[1:] for g in _graces(src))
    assert {g[0] for g in graces} == {"Violin I"}  # with the melody note they lead to


def test_a_pickup_keeps_the_bars_of_the_input(tmp_path):
    from music21 import converter, corpus

    src, out = tmp_path / "in.musicxml", tmp_path / "out.musicxml"
    corpus.parse("bach/bwv66.6").write("musicxml", fp=str(src))  # opens with a one-beat pickup
    assert _cli("arrange", str(src), "-o", str(out)) == 0

    def bars(path):
        return [[(m.number, float(m.offset), float(m.duration.quarterLength))
                 for m in p.getElementsByClass("Measure")] for p in converter.parse(str(path)).parts]

    want = bars(src)[0]
    assert want[:2] == [(0, 0.0, 1.0), (1, 1.0, 4.0)]
    assert all(part == want for part in bars(out))


def test_the_engine_serves_a_users_ensemble_and_keep_extras_as_embedded(tmp_path, capsys):
    from tests.engine.test_server import Engine

    own = tmp_path / "low_strings.toml"
    own.write_text((ROOT / "models/ensemble_files/string_quartet.toml").read_text()
                   .replace('"string_quartet"', '"low_strings"').replace('"Violin I"', '"Viola I"'))
    src = tmp_path / "chords.mid"  # six-note chords (more notes than parts), a melody, zero-length notes
    t = np.arange(8) * 96
    chords = make_notes(np.repeat(t, 6), np.tile([36, 48, 55, 64, 72, 79], 8), 96)
    melody = make_notes(768 + t, 72 + np.arange(8) % 5, 96)
    graces = make_notes([767, 863], [74, 75], 0)
    write_midi(Score(96, [Track("Piano", 0, notes=np.concatenate([chords, melody, graces]))]), src)
    engine = Engine(tmp_path).wait_ready()
    try:
        for extra in ([], ["--keep-extras"]):
            said = {}
            for how, flags in (("embedded", []), ("engine", ["--engine", engine.endpoint])):
                out = tmp_path / f"{how}{len(extra)}.mid"
                assert _cli("arrange", str(src), "-o", str(out), "--ensemble", str(own), *extra, *flags) == 0
                said[how] = capsys.readouterr().out.split(" with ")[0]
                said[how + " file"] = [(tr.name, tr.program, tr.notes.tolist())
                                       for tr in read_midi(out, keep_zero_length=True).tracks]
            assert said["embedded"] == said["engine"] == "arranged 58 notes for low_strings"
            assert said["embedded file"] == said["engine file"]
            names = [name for name, _, _ in said["engine file"]]
            assert names == ["Viola I", "Violin II", "Viola", "Cello"] + (["Keyboard"] if extra else [])
        from bridge.client import Client, EngineError

        bad = [{"name": "A", "program": 1, "range": ["C9", "C2"]}]
        with Client(engine.endpoint, timeout_s=30) as client:
            with pytest.raises(EngineError, match="goes down") as err:
                client.arrange(melody, "mine", ensemble_parts=bad)
        assert err.value.code == "bad_field"
    finally:
        engine.stop()

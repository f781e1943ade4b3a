"""Five-part ensembles (woodwind and brass quintets, string orchestra) served by the five-voice
arrangers with no retraining, from the command line and through a real engine; six parts by the
six-voice model; seven parts and more refused with the reason."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bridge.midi import read_midi
from bridge.scorefile import read_score
from models.ensembles import ENSEMBLES

ROOT = Path(__file__).resolve().parents[2]
PIANO = ROOT / "examples/piano.mid"
FIVE_PART = sorted(name for name, e in ENSEMBLES.items() if len(e.parts) == 5)


def _cli(*argv: str) -> int:
    from engine.cli import main

    return main([str(a) for a in argv])


def held_out_chorale() -> str:
    """A Bach chorale of the test split (MusicXML from the music21 corpus)."""
    from music21 import corpus

    from models.data.splits import SPLITS_DIR

    name = json.loads((SPLITS_DIR / "bach.json").read_text())["test"][1]
    return str(corpus.getWork(name.removeprefix("bach/")))


def _key(notes: np.ndarray) -> list[tuple]:
    return sorted(zip(notes["time"].tolist(), notes["pitch"].tolist(), notes["duration"].tolist(),
                      notes["velocity"].tolist()))


def check_arranged(src: str | Path, out: Path, ensemble: str, said: str) -> None:
    """Every input note exactly once in the output, one track per part of the ensemble, and every
    note outside its part's range counted on the summary line (the playable-by-default policy)."""
    source = read_score(src, keep_zero_length=True)
    result = read_midi(out, keep_zero_length=True)
    ens = ENSEMBLES[ensemble]
    assert result.resolution == source.resolution
    assert [t.name for t in result.tracks] == ens.part_names
    assert [t.program for t in result.tracks] == [p.program for p in ens.parts]
    source_notes = np.concatenate([t.notes for t in source.tracks if not t.is_drum])
    assert _key(np.concatenate([t.notes for t in result.tracks])) == _key(source_notes)
    outside = sum(int((~((t.notes["pitch"] >= p.low) & (t.notes["pitch"] <= p.high))).sum())
                  for t, p in zip(result.tracks, ens.parts))
    if outside:
        assert f"{outside} out of their part's range" in said
    else:
        assert "out of their part's range" not in said


def test_the_shipped_five_part_ensembles_are_the_voices_the_quintets_and_the_string_orchestra():
    assert FIVE_PART == ["brass_quintet", "five_voices", "string_orchestra", "woodwind_quintet"]


@pytest.mark.parametrize("mode", ["offline", "online"])
@pytest.mark.parametrize("ensemble", FIVE_PART)
def test_every_five_part_ensemble_is_served_by_the_five_voice_model(ensemble, mode, tmp_path, capsys):
    out = tmp_path / "out.mid"
    assert _cli("arrange", PIANO, "-o", out, "--ensemble", ensemble, "--mode", mode) == 0
    said = capsys.readouterr().out
    assert f"for {ensemble} with arranger-five-{mode} ({mode})" in said
    check_arranged(PIANO, out, ensemble, said)


def test_a_held_out_chorale_for_woodwind_quintet(tmp_path, capsys):
    out = tmp_path / "chorale.mid"
    src = held_out_chorale()
    assert _cli("arrange", src, "-o", out, "--ensemble", "woodwind_quintet") == 0
    said = capsys.readouterr().out
    assert "with arranger-five-offline" in said
    check_arranged(src, out, "woodwind_quintet", said)
    # four voices in five parts: each part a line, nearly no divisi
    assert "divisi" not in said or int(said.split(" in a divisi")[0].rsplit(" ", 1)[-1]) <= 5


def _parts(tmp_path: Path, n: int) -> Path:
    """string_orchestra with violins added up to ``n`` parts, as a user's own file."""
    text = (ROOT / "models/ensemble_files/string_orchestra.toml").read_text()
    text = text.replace('"string_orchestra"', f'"strings_{n}"')
    text += "".join(f'\n[[parts]]\nname = "Violin {k}"\nprogram = 48\nrange = ["G3", "C7"]\n'
                    for k in range(3, n - 2))
    path = tmp_path / f"strings_{n}.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_six_parts_are_served_by_the_six_voice_model(mode, tmp_path, capsys):
    out = tmp_path / "out.mid"
    assert _cli("arrange", PIANO, "-o", out, "--ensemble", _parts(tmp_path, 6), "--mode", mode) == 0
    said = capsys.readouterr().out
    assert f"for strings_6 with arranger-six-{mode}" in said
    # the count of each of the six parts (a four-voice chorale may leave one empty: MIDI drops it)
    assert said.split(": ", 1)[1].split("\n")[0].count(",") == 5


@pytest.mark.parametrize("n,why", [(7, "only 5 seven-voice works"), (8, "47 eight-voice works"),
                                   (9, "rank at most 8 voices")])
def test_seven_parts_and_more_are_refused_saying_what_and_why(n, why, tmp_path, capsys):
    own = _parts(tmp_path, n)
    out = tmp_path / "out.mid"
    for mode in ("offline", "online"):
        assert _cli("arrange", PIANO, "-o", out, "--ensemble", own, "--mode", mode) == 2
        err = capsys.readouterr().err
        assert f"ensemble 'strings_{n}' has {n} parts, and no installed {mode} arrange model has {n} (" in err
        assert why in err
        assert err.count("\n") == 1 and err.count(". ") == 0  # one sentence, on one line
        assert not out.exists()


@pytest.mark.timeout(420)
def test_a_real_engine_serves_five_parts_as_embedded_and_refuses_six(tmp_path, capsys):
    from bridge.client import Client, EngineError
    from engine.tasks.arrange import ensemble_to_wire
    from models.ensembles import load_ensemble_file
    from tests.engine.test_server import Engine

    engine = Engine(tmp_path).wait_ready()
    try:
        for src in (str(PIANO), held_out_chorale()):
            files = {}
            for how, flags in (("embedded", []), ("engine", ["--engine", engine.endpoint])):
                out = tmp_path / f"{how}.mid"
                assert _cli("arrange", src, "-o", out, "--ensemble", "woodwind_quintet", "--force",
                            *flags) == 0
                said = capsys.readouterr().out
                assert "for woodwind_quintet with arranger-five-offline" in said
                check_arranged(src, out, "woodwind_quintet", said)
                files[how] = [(t.name, t.program, sorted(t.notes.tolist())) for t in read_midi(out).tracks]
            assert files["embedded"] == files["engine"]
        piano = read_score(PIANO)
        notes = piano.merged(include_drums=False)[0]
        with Client(engine.endpoint, timeout_s=60) as client:
            for mode in ("offline", "online"):
                labels, parts, stats = client.arrange(notes, "brass_quintet", mode, piano.resolution)
                assert list(parts) == ENSEMBLES["brass_quintet"].part_names
                assert stats["model"] == f"arranger-five-{mode}" and len(labels) == len(notes)
                assert set(np.unique(labels)) <= set(range(5))
            seven = load_ensemble_file(_parts(tmp_path, 7))
            with pytest.raises(EngineError, match="has 7 parts.*seven-voice") as err:
                client.arrange(notes, seven.name, ensemble_parts=ensemble_to_wire(seven))
            assert err.value.code == "no_model"
    finally:
        engine.stop()

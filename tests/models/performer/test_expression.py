from __future__ import annotations

import numpy as np
import pytest

from models.performer import expression as ex


def marked_stream():
    """One part: p, a crescendo over four notes, f; staccato, tenuto, accent, a slur, a fermata."""
    from music21 import articulations, dynamics, expressions, note, spanner, stream

    part = stream.Part()
    notes = [note.Note(60 + i, quarterLength=1.0) for i in range(12)]
    notes[0].articulations.append(articulations.Staccato())
    notes[1].articulations.append(articulations.Tenuto())
    notes[2].articulations.append(articulations.Accent())
    notes[11].expressions.append(expressions.Fermata())
    part.insert(0, dynamics.Dynamic("p"))
    part.insert(8, dynamics.Dynamic("f"))
    for i, n in enumerate(notes):
        part.insert(float(i), n)
    part.insert(0, dynamics.Crescendo(notes[4], notes[7]))
    part.insert(0, spanner.Slur(notes[8], notes[9], notes[10]))
    score = stream.Score()
    score.insert(0, part)
    return score


def test_read_marked_finds_every_marking():
    notes, qpm = ex.read_marked(marked_stream())
    assert qpm == ex.DEFAULT_QPM and len(notes) == 12
    assert notes["onset_beats"].tolist() == list(range(12))
    names = ex.DYNAMIC_NAMES
    assert [names[d] for d in notes["dynamic"][[0, 7, 8]]] == ["p", "p", "f"]
    assert notes["hairpin"][4:8].tolist() == [1, 1, 1, 1] and notes["hairpin"][[3, 8]].tolist() == [0, 0]
    assert notes["marks"][0] & ex.STACCATO and notes["marks"][1] & ex.TENUTO and notes["marks"][2] & ex.ACCENT
    assert [bool(m & ex.SLUR) for m in notes["marks"][7:11]] == [False, True, True, True]
    assert notes["marks"][10] & ex.SLUR_END and not notes["marks"][9] & ex.SLUR_END
    assert notes["marks"][11] & ex.FERMATA


def test_ties_merge_into_one_note_keeping_the_fermata():
    from music21 import expressions, note, stream, tie

    part = stream.Part()
    a, b = note.Note(62, quarterLength=2.0), note.Note(62, quarterLength=1.0)
    a.tie, b.tie = tie.Tie("start"), tie.Tie("stop")
    b.expressions.append(expressions.Fermata())
    part.append([note.Note(60), a, b])
    notes, _ = ex.read_marked(part)
    assert notes["duration_beats"].tolist() == [1.0, 3.0]
    assert notes["marks"][1] & ex.FERMATA


def test_realise_plays_the_markings():
    notes, qpm = ex.read_marked(marked_stream())
    style = ex.Style(jitter_ms=0.0, velocity_jitter=0.0, rubato_depth=0.0)
    out, cc11 = ex.realise(notes, qpm, style, seed=0)
    beat = 60 / qpm
    # staccato ~half, tenuto full, unmarked detache, slurred notes overlap the next
    assert out["duration_s"][0] == pytest.approx(style.staccato * beat)
    assert out["duration_s"][1] == pytest.approx(style.tenuto * beat)
    assert out["duration_s"][3] == pytest.approx(style.detache * beat)
    assert out["onset_s"][8] + out["duration_s"][8] > out["onset_s"][9]
    # f louder than p, the accent above its neighbours, the crescendo rising
    assert out["performed_velocity"][8] > out["performed_velocity"][3]
    assert out["performed_velocity"][2] > out["performed_velocity"][3]
    assert list(out["performed_velocity"][4:8]) == sorted(out["performed_velocity"][4:8])
    assert cc11[0][:, 1].max() > ex.CC11_BASE
    # the fermata is held longer than its value at the performed tempo
    assert out["duration_s"][11] > 1.4 * beat
    # score timing kept beside the performance
    assert out["score_onset_s"][5] == pytest.approx(5 * beat)


def test_realise_is_seeded_and_performers_differ():
    notes, qpm = ex.read_marked(marked_stream())
    a, _ = ex.realise(notes, qpm, ex.Style.of(0), seed=1)
    b, _ = ex.realise(notes, qpm, ex.Style.of(0), seed=1)
    c, _ = ex.realise(notes, qpm, ex.Style.of(1), seed=1)
    assert np.array_equal(a, b)
    assert not np.allclose(a["onset_s"], c["onset_s"])
    assert ex.Style.of(3) == ex.Style.of(3)


def test_a_real_chorale_has_fermatas_that_slow_the_performance():
    from music21 import corpus

    notes, qpm = ex.read_marked(corpus.parse("bach/bwv10.7.mxl"))
    assert set(np.unique(notes["part"])) == {0, 1, 2, 3}
    assert (notes["marks"] & ex.FERMATA).sum() >= 4
    style = ex.Style(jitter_ms=0.0, rubato_depth=0.0, tempo_scale=1.0)
    out, _ = ex.realise(notes, qpm, style, seed=0)
    late = out["onset_s"] - out["score_onset_s"]
    assert late[-1] > late[0] + 1.0  # each held fermata delays what follows


def test_draw_markings_gives_a_chorale_every_level_and_articulation_per_phrase():
    from music21 import corpus

    pieces = [ex.read_marked(corpus.parse(f"bach/bwv{n}.mxl"))[0] for n in ("10.7", "26.6", "40.8", "66.6")]
    assert all(ex.is_unmarked(p) for p in pieces)
    plain = np.concatenate(pieces)
    drawn = np.concatenate([ex.draw_markings(p, seed=i) for i, p in enumerate(pieces)])
    assert np.array_equal(drawn[["part", "pitch", "onset_beats", "duration_beats"]],
                          plain[["part", "pitch", "onset_beats", "duration_beats"]])
    assert np.array_equal(drawn["marks"] & ex.FERMATA, plain["marks"] & ex.FERMATA)
    assert set(np.unique(drawn["dynamic"])) > {ex.DEFAULT_DYNAMIC}  # more than one level
    assert np.array_equal(drawn["velocity"], ex.LEVEL_VELOCITY[drawn["dynamic"]].astype(np.uint8))
    for flag in (ex.STACCATO, ex.TENUTO, ex.SLUR, ex.SLUR_END, ex.ACCENT):
        assert (drawn["marks"] & flag).any(), flag
    assert ((drawn["marks"] & ex.STACCATO) == 0)[drawn["duration_beats"] > 1.0].all()
    assert set(np.unique(drawn["hairpin"])) <= {-1, 0, 1} and (drawn["hairpin"] != 0).any()
    # a phrase (up to a fermata chord) holds one level in every part
    for i, piece in enumerate(pieces):
        again = ex.draw_markings(piece, seed=i)
        assert np.array_equal(again, drawn[len(np.concatenate(pieces[:i])) if i else 0:][:len(piece)])
        cut = (piece["onset_beats"] + piece["duration_beats"])[(piece["marks"] & ex.FERMATA) > 0].min()
        assert len(np.unique(again["dynamic"][piece["onset_beats"] < cut])) == 1
    # music with its own markings is left as it is; realised, the drawn levels are heard as velocity
    marked, _ = ex.read_marked(marked_stream())
    assert not ex.is_unmarked(marked) and ex.draw_markings(marked, seed=3) is marked
    out, _ = ex.realise(drawn, 90.0, ex.Style(velocity_jitter=0.0), seed=0)
    soft, loud = out["dynamic"] <= 2, (out["dynamic"] >= 5) & (out["hairpin"] == 0)
    assert out["performed_velocity"][loud].mean() > out["performed_velocity"][soft].mean() + 30

from __future__ import annotations

import numpy as np
import pytest

from bridge.chords import parse_progression
from bridge.score import make_notes
from models.composer import baselines as B
from models.data import RESOLUTION
from models.data import multitrack as mt
from models.data.instruments import INSTRUMENTS


def block_chorale() -> mt.MultiPiece:
    """Four bars of whole-note chords C F G C in close position, bass on the root."""
    voicings = [(72, 65, 60, 48), (72, 69, 65, 53), (71, 67, 62, 55), (72, 67, 64, 48)]
    notes, track = [], []
    for bar, chord in enumerate(voicings):
        for v, pitch in enumerate(chord):
            notes.append(make_notes([bar * 96 + b * 24 for b in range(4)], pitch, 24))
            track += [v] * 4
    notes = np.concatenate(notes)
    order = np.lexsort((notes["pitch"], notes["time"]))
    return mt.MultiPiece("toy", "test", RESOLUTION, notes[order], np.array(track, np.int16)[order],
                         list(B.VOICES), [52] * 4, np.array([(0, 4, 4)], mt.METER_DTYPE),
                         np.array([(0, 0, 0)], mt.KEY_DTYPE), parse_progression("C F G C"),
                         np.arange(0, 384, 96), 100.0)


def test_the_bass_of_block_chords_is_written_back_exactly():
    piece = block_chorale()
    written = B.infill_voice(piece, 3, piece.chords)
    truth = piece.notes[piece.track == 3]
    assert written["pitch"].tolist() == truth["pitch"].tolist()
    assert B.note_f1(truth, written)["f1"] == 1.0
    soprano = B.infill_voice(piece, 0)  # chords found from alto, tenor and bass
    assert (soprano["pitch"] >= piece.notes["pitch"][piece.track == 1].max()).all()  # never below the alto


def test_infill_on_real_chorales_stays_in_range_and_finds_part_of_the_voice():
    import music21

    pieces = []
    for rel in ("bach/bwv66.6.mxl", "bach/bwv269.mxl"):
        path = f"{music21.__file__.rsplit('/', 1)[0]}/corpus/{rel}"
        (name, a), = mt.convert_file((path, rel, True))
        pieces.append(mt.MultiPiece(name, "test", RESOLUTION, a["notes"], a["track"], a["instruments"],
                                    a["programs"], a["meters"], a["keys"], a["chords"], a["bar_starts"],
                                    a["qpm"]))
    for hidden, voice in enumerate(B.VOICES):
        notes = B.infill_voice(pieces[0], hidden)
        inst = INSTRUMENTS[voice]
        assert len(notes) and inst.low <= notes["pitch"].min() and notes["pitch"].max() <= inst.high
        assert (np.diff(notes["time"]) > 0).all()  # one line, one note at a time
    scores = B.evaluate_infill(pieces)
    assert scores["pieces"] == 2 and 0.15 < scores["f1"] < 0.9
    assert B.evaluate_infill(pieces, chord_source="data")["f1"] > scores["f1"]  # all four voices' chords help


def test_bad_requests_say_what_is_allowed():
    piece = block_chorale()
    with pytest.raises(ValueError, match="rhythm must be one of"):
        B.infill_voice(piece, 0, rhythm="swing")
    with pytest.raises(ValueError, match="voice index 0..3"):
        B.infill_voice(piece, 4)
    with pytest.raises(ValueError, match="chord_source must be one of"):
        B.evaluate_infill([piece], chord_source="oracle")
    solo = mt.MultiPiece(**{**piece.__dict__, "instruments": ["violin", "alto", "tenor", "bass"]})
    with pytest.raises(ValueError, match="no full set of soprano"):
        B.infill_voice(solo, 0)
    with pytest.raises(ValueError, match="no piece with soprano"):
        B.evaluate_infill([solo])

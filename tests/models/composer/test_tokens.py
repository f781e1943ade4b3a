"""Tokenisations: lossless round trips on real chorales, conditions, note counts."""
from __future__ import annotations

import numpy as np
import pytest

from models.composer.representations import make_tokenizer
from models.composer.tokens import REPRESENTATIONS, TokenizerConfig

INSTRUMENTS = ["soprano", "alto", "tenor", "bass"]


def _sorted(piece):
    order = np.lexsort((piece.track, piece.notes["duration"], piece.notes["pitch"], piece.notes["time"]))
    return piece.notes[order], piece.track[order]


@pytest.mark.parametrize("rep", REPRESENTATIONS)
def test_round_trip_is_lossless_on_real_chorales(chorales, rep):
    tok = make_tokenizer(TokenizerConfig.for_instruments(rep, INSTRUMENTS))
    for piece in chorales:
        ids = tok.encode(piece)
        got = tok.decode(ids)
        notes, track = _sorted(piece)
        for f in ("time", "pitch", "duration"):
            np.testing.assert_array_equal(got.notes[f], notes[f], err_msg=f"{rep} {piece.name} {f}")
        np.testing.assert_array_equal(got.track, track)
        assert tok.count_notes(ids) == len(piece.notes)  # one DUR per note: NLL per note compares


def test_ours_writes_conditions_at_bar_starts_and_ties_pitch_to_instrument(chorales):
    tok = make_tokenizer(TokenizerConfig.for_instruments("ours", INSTRUMENTS))
    names = [tok.vocab.names[i] for i in tok.encode(chorales[0])]
    assert names[:5] == ["BOS", "INST_soprano", "INST_alto", "INST_tenor", "INST_bass"]
    assert names[5] == "BAR" and names[6].startswith("METER_") and names[7].startswith("KEY_")
    assert any(n.startswith("NPITCH_bass") for n in names)
    # a bass pitch token exists only inside the bass range
    with pytest.raises(ValueError, match="outside bass's range"):
        tok.pitch_id(INSTRUMENTS.index("bass"), 90)
    conditions = {n.split("_")[0] for n, c in zip(tok.vocab.names, tok.condition) if c}
    assert conditions == {"PAD", "BOS", "INST", "METER", "KEY", "CPOS", "CHORD"}


def test_unknown_instrument_is_a_sentence():
    with pytest.raises(ValueError, match="unknown instrument 'kazoo'"):
        TokenizerConfig.for_instruments("ours", ["kazoo"])


def test_decoders_skip_malformed_groups():
    tok = make_tokenizer(TokenizerConfig.for_instruments("mmt", INSTRUMENTS))
    v = tok.vocab
    ids = [v.id("BOS"), v.id("BEAT", 2), v.id("PITCH", 60), v.id("BEAT", 1), v.id("POS", 0),
           v.id("PITCH", 60), v.id("DUR", 7), v.id("NOTEINST", 0)]
    got = tok.decode(ids)
    assert got.notes["time"].tolist() == [24] and got.notes["duration"].tolist() == [24]

"""What a request encodes agrees with what training encodes (chords, keys), and tracks written in
another order (composer-satb v3: a filled voice after the given ones in its bar)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bridge.chords import CHORD_QUALITIES, chord_pitch_classes, chord_tone_ratio
from models.composer.grammar import OursGrammar, Plan
from models.composer.inference import Composer, ComposeRequest, parse_chords
from models.composer.representations import OursTokenizer
from models.composer.tokens import N_CHORD_QUALITIES, TokenizerConfig, chord_qualities
from tests.models.composer.conftest import INSTRUMENTS


def _tok(**kw) -> OursTokenizer:
    return OursTokenizer(TokenizerConfig.for_instruments("ours", INSTRUMENTS, True, True, **kw))


def _bars(tok: OursTokenizer, ids) -> list[list[int]]:
    """Each bar's condition tokens (BAR METER KEY [CPOS CHORD]*) in an encoded sequence."""
    bars: list[list[int]] = []
    for t in np.asarray(ids).tolist():
        kind = tok.kind_names[tok.kind_of[t]]
        if kind == "BAR":
            bars.append([t])
        elif kind in ("METER", "KEY", "CPOS", "CHORD"):
            bars[-1].append(t)
    return bars


def _single_meter(pieces):
    return [p for p in pieces if len(p.meters) == 1 and len(p.keys)]


def test_a_request_encodes_a_pieces_chords_as_training_does(chorales):
    tok = _tok()
    pieces = _single_meter(chorales)
    assert pieces
    for p in pieces:
        bars = _bars(tok, tok.encode(p))
        meter = int(p.meters[0]["numerator"]), int(p.meters[0]["denominator"])
        key = int(p.keys[0]["fifths"]), int(p.keys[0]["minor"])
        assert tok.request_conditions(meter, key, p.chords, len(bars)) == bars, p.name


@pytest.mark.parametrize("text, key", [("C G Am F", None), ("I V vi IV", "C")])
def test_chord_symbols_name_the_chords_the_training_data_names(text, key):
    tok = _tok()
    chords = parse_chords(text, (4, 4), list(chord_qualities()), key=key)
    bars = tok.request_conditions((4, 4), (0, 0), chords, 4)
    chord0 = tok.vocab.kinds["CHORD"][0]
    got = [t - chord0 for b in bars for t in b if tok.kind_names[tok.kind_of[t]] == "CHORD"]
    names = [(i // N_CHORD_QUALITIES, CHORD_QUALITIES[i % N_CHORD_QUALITIES]) for i in got]
    assert names == [(0, "maj"), (7, "maj"), (9, "min"), (5, "maj")]
    # the chord-tone metric reads the same (root, quality) as the same pitch classes
    assert [set(chord_pitch_classes(r, CHORD_QUALITIES.index(q))) for r, q in names] == \
        [{0, 4, 7}, {7, 11, 2}, {9, 0, 4}, {5, 9, 0}]


def test_training_tokens_sound_the_chords_the_metric_measures(chorales):
    """Notes against the CHORD token sounding at their onset, read back from the tokens, score what
    ``chord_tone_ratio`` scores on the piece's own chords: the model learns the chords it is judged by."""
    tok = _tok()
    chord0, pos0 = tok.vocab.kinds["CHORD"][0], tok.vocab.kinds["POS"][0]
    cpos0 = tok.vocab.kinds["CPOS"][0]
    for p in _single_meter(chorales)[:4]:
        hits, n, chords, pos, cpos = 0, 0, [], 0, 0
        for t in tok.encode(p).tolist():
            kind = tok.kind_names[tok.kind_of[t]]
            if kind == "BAR":  # a chord held over the bar line has no token in the new bar
                chords = [(0, chords[-1][1])] if chords else []
            elif kind == "CPOS":
                cpos = t - cpos0
            elif kind == "CHORD":
                chords.append((cpos, t - chord0))
            elif kind == "POS":
                pos = t - pos0
            elif kind == "NPITCH":
                c = [c for at, c in chords if at <= pos][-1]
                pcs = chord_pitch_classes(c // N_CHORD_QUALITIES, c % N_CHORD_QUALITIES)
                hits += tok.pitch_of(t)[1] % 12 in pcs
                n += 1
        assert hits / n == pytest.approx(chord_tone_ratio(p.notes, p.chords), abs=0.02), p.name


def test_harmony_factors_share_a_pitch_class_between_chord_roots_keys_and_pitches():
    tok = _tok()
    f = tok.factors(harmony=True)
    assert set(f) == {"pitch", "instrument", "pitch_class", "chord_quality"}
    c_major = tok.vocab.id("CHORD", 0 * N_CHORD_QUALITIES + CHORD_QUALITIES.index("maj"))
    a_minor = tok.vocab.id("CHORD", 9 * N_CHORD_QUALITIES + CHORD_QUALITIES.index("min"))
    assert f["pitch_class"][c_major] == f["pitch_class"][tok.pitch_id(0, 72)] == 1
    assert f["pitch_class"][a_minor] == f["pitch_class"][tok.pitch_id(3, 45)] == 10
    assert f["chord_quality"][c_major] != f["chord_quality"][a_minor]
    assert "pitch_class" not in tok.factors()  # older models keep their two tables


def test_reordered_tracks_write_the_moved_ones_last_and_decode_the_same(chorales):
    tok = _tok(reorder_tracks=True)
    p = chorales[0]
    fixed, moved = tok.encode(p), tok.encode(p, last=(1,), fixed_bars=frozenset({0}))
    a, b = tok.decode(fixed), tok.decode(moved)
    np.testing.assert_array_equal(a.notes, b.notes)
    np.testing.assert_array_equal(a.track, b.track)
    track0 = tok.vocab.kinds["TRACK"][0]
    per_bar: list[list[int]] = []
    for t in moved.tolist():
        kind = tok.kind_names[tok.kind_of[t]]
        if kind == "BAR":
            per_bar.append([])
        elif kind == "TRACK":
            per_bar[-1].append(t - track0)
    assert per_bar[0] == [0, 1, 2, 3] and all(order == [0, 2, 3, 1] for order in per_bar[1:])


def _reorder_composer() -> Composer:
    from models.composer.export import composer_metadata
    from models.composer.model import Composer as Decoder
    from models.composer.model import ComposerConfig
    from models.composer.tokens import TokenizerConfig

    torch.manual_seed(0)
    tcfg = TokenizerConfig.for_instruments("ours", INSTRUMENTS, True, True, reorder_tracks=True)
    mcfg = ComposerConfig(vocab_size=len(OursTokenizer(tcfg)), block_size=96, d_model=32, n_layers=2,
                          n_heads=2, dropout=0.0)
    model = Decoder(mcfg).eval()

    class Step(torch.nn.Module):
        def forward(self, idx, pos, k, v):
            return model.step(idx, pos, k, v)

    return Composer(Step(), composer_metadata(mcfg, tcfg, "tiny-reorder"))


def test_infilling_writes_the_filled_voice_after_every_given_one():
    composer = _reorder_composer()
    given = {t.name: t.notes for t in composer.compose_score(ComposeRequest(bars=2, seed=11)).tracks}
    request = ComposeRequest(bars=2, seed=4, given=given, infill={"alto": (0, 2)})
    plan = composer.plan(request)
    assert plan.track_orders == [[0, 2, 3, 1], [0, 2, 3, 1]]
    grammar = OursGrammar(composer.tok, plan)
    bars = list(composer._compose(request, plan, grammar))
    track0 = composer.tok.vocab.kinds["TRACK"][0]
    kinds = composer.tok.kind_names
    tracks = [t - track0 for t in grammar.tokens if kinds[composer.tok.kind_of[t]] == "TRACK"]
    assert tracks == [0, 2, 3, 1, 0, 2, 3, 1]
    notes = np.concatenate([b.notes for b in bars])
    track = np.concatenate([b.track for b in bars])
    for i, name in enumerate(INSTRUMENTS):
        if name != "alto":
            want = np.sort(given[name], order=["time", "pitch"])
            np.testing.assert_array_equal(notes[track == i][["time", "pitch"]], want[["time", "pitch"]])
    # from scratch nothing is given: the vocabulary's order
    assert composer.plan(ComposeRequest(bars=2)).track_orders is None


def test_a_track_order_needs_a_tokenizer_trained_for_it():
    plan = Plan([0, 1, 2, 3], [[0]], [32], track_orders=[[0, 2, 3, 1]])
    with pytest.raises(ValueError, match="reorder_tracks"):
        OursGrammar(_tok(), plan)
    with pytest.raises(ValueError, match="track_orders\\[0\\] must order"):
        OursGrammar(_tok(reorder_tracks=True), Plan([0, 1, 2, 3], [[0]], [32], track_orders=[[0, 1, 2]]))

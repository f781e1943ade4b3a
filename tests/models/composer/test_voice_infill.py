"""The bidirectional voice-infill model: trains, fills hidden voices in range and span, exports, and
is the composer's companion for whole-voice infilling (also through ``deep-musician infill``)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.composer.voice_infill import (
    COMPANION_FILE,
    FRAME_TICKS,
    VOICES,
    VoiceInfiller,
    fill_request,
    to_frames,
    to_notes,
)
from models.data.instruments import INSTRUMENTS

PRETRAINED = Path(__file__).resolve().parents[3] / "models" / "pretrained"
SHIPPED = PRETRAINED / COMPANION_FILE
COMPOSER = PRETRAINED / "composer-satb.pt"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, chorales):
    """A tiny infiller trained for a few seconds on real chorales, and its exported file."""
    from models.composer.train_voice_infill import TrainConfig, export, train

    out = tmp_path_factory.mktemp("voice-infill")
    cfg = TrainConfig(out=str(out), max_steps=12, batch_size=4, crop_frames=64, d_model=32, n_blocks=2,
                      eval_every=6, eval_pieces=1, limit_train=6, limit_valid=2, warmup_steps=2)
    result = train(cfg, progress=False)
    return result, export(out / "best.pt", out / "tiny-infill.pt")


def _hide(piece, voice: int, first_bar: int, last_bar: int) -> tuple[list, np.ndarray, int, int]:
    T = -(-int((piece.notes["time"] + piece.notes["duration"]).max()) // FRAME_TICKS)
    start, stop = int(piece.bar_starts[first_bar]), int(piece.bar_starts[last_bar + 1])
    hidden = np.zeros((4, T), bool)
    hidden[voice, start // FRAME_TICKS:stop // FRAME_TICKS] = True
    return [piece.notes[piece.track == v] for v in range(4)], hidden, start, stop


def _meter(piece) -> tuple[int, int]:
    return int(piece.meters[0]["numerator"]), int(piece.meters[0]["denominator"])


def test_frames_round_trip_a_chorale_voice(chorales):
    from models.composer.voice_infill import VoiceInfillConfig

    cfg = VoiceInfillConfig()
    alto = chorales[0].notes[chorales[0].track == 1]
    pitch, onset = to_frames([alto], 400, cfg)
    back = to_notes(pitch[0], onset[0], np.ones(400, bool), cfg)
    np.testing.assert_array_equal(back[["time", "pitch", "duration"]], alto[["time", "pitch", "duration"]])


def test_a_tiny_model_trains_exports_and_fills_a_hidden_voice_inside_its_range(tiny_run, chorales):
    result, path = tiny_run
    assert result["steps"] == 12 and np.isfinite(result["valid"]["valid/loss/pitch"])
    infiller = VoiceInfiller.load(path)  # export reloaded it and matched eager mode already
    piece = chorales[1]
    voices, hidden, start, stop = _hide(piece, 2, 1, 3)
    out = infiller.fill(voices, hidden, piece.bar_starts, _meter(piece), passes=3)
    tenor = out[2]
    assert len(tenor) and all(len(out[v]) == 0 for v in (0, 1, 3))
    assert ((tenor["time"] >= start) & (tenor["time"] + tenor["duration"] <= stop)).all()
    low, high = INSTRUMENTS["tenor"].low, INSTRUMENTS["tenor"].high
    assert tenor["pitch"].min() >= low and tenor["pitch"].max() <= high
    narrow = infiller.fill(voices, hidden, piece.bar_starts, _meter(piece), ranges={"tenor": (55, 60)})[2]
    assert len(narrow) and narrow["pitch"].min() >= 55 and narrow["pitch"].max() <= 60


def test_preserve_rhythm_keeps_the_hidden_parts_onsets_and_durations(tiny_run, chorales):
    infiller = VoiceInfiller.load(tiny_run[1])
    piece = chorales[2]
    voices, hidden, start, stop = _hide(piece, 1, 0, 2)
    out = infiller.fill(voices, hidden, piece.bar_starts, _meter(piece), passes=2, keep_rhythm=True)[1]
    alto = voices[1][(voices[1]["time"] >= start) & (voices[1]["time"] < stop)]
    np.testing.assert_array_equal(out[["time", "duration"]], alto[["time", "duration"]])


def test_bad_passes_is_a_sentence(tiny_run, chorales):
    infiller = VoiceInfiller.load(tiny_run[1])
    voices, hidden, _, _ = _hide(chorales[0], 1, 0, 1)
    with pytest.raises(ValueError, match="passes must be 1 or more, got 0"):
        infiller.fill(voices, hidden, chorales[0].bar_starts, (4, 4), passes=0)


shipped = pytest.mark.skipif(not SHIPPED.is_file(), reason=f"{SHIPPED.name} is not shipped")


@pytest.fixture(scope="module")
def test_chorale():
    from models.composer.data import load_pieces, select_tracks

    try:
        pieces = select_tracks(load_pieces("bach", "test"), list(VOICES))
    except FileNotFoundError:
        pytest.skip("the bach set is not built (deep-musician data build bach)")
    return next(p for p in pieces if list(p.instruments) == list(VOICES) and _meter(p) == (4, 4)
                and p.bar_starts[1] == 96)  # no pickup: the composer's bars are the piece's


@shipped
def test_the_composer_fills_a_held_out_alto_with_its_companion(test_chorale):
    from models.composer.inference import Composer, ComposeRequest

    composer = Composer.load(COMPOSER)
    assert composer.infiller is not None and composer.infiller.metadata["name"] == SHIPPED.stem
    piece = test_chorale
    given = {v: piece.notes[piece.track == i] for i, v in enumerate(VOICES)}
    bars = len(piece.bar_starts)
    request = ComposeRequest(bars=bars, seed=3, given=given, infill={"alto": (2, 5)}, temperature=0.5)
    assert fill_request(composer.infiller, request, composer.instruments) is not None
    score = composer.compose_score(request)
    span = lambda n: (n["time"] >= 2 * 96) & (n["time"] < 5 * 96)  # noqa: E731
    fields = ["time", "pitch", "duration"]
    for track in score.tracks:
        want = given[track.name]
        if track.name != "alto":  # the other voices untouched
            np.testing.assert_array_equal(track.notes[fields], want[fields])
            continue
        np.testing.assert_array_equal(track.notes[~span(track.notes)][fields], want[~span(want)][fields])
        new = track.notes[span(track.notes)]
        assert len(new) >= 4 and new["pitch"].min() >= 52 and new["pitch"].max() <= 77
    again = composer.compose_score(request)  # the same seed, the same notes
    for a, b in zip(score.tracks, again.tracks):
        np.testing.assert_array_equal(a.notes, b.notes)
    # a control the infiller cannot honour goes to the decoder alone
    assert fill_request(composer.infiller, ComposeRequest(bars=bars, given=given, infill={"alto": (2, 5)},
                                                          rhythm={"alto": "plain"}),
                        composer.instruments) is None


@shipped
def test_deep_musician_infill_uses_the_companion_on_a_real_chorale(test_chorale, tmp_path):
    from bridge.midi import read_midi, write_midi
    from bridge.score import KEY_DTYPE, METER_DTYPE, TEMPO_DTYPE, Score, Track

    piece = test_chorale
    tracks = [Track(name, 52, notes=piece.notes[piece.track == i], role=name)
              for i, name in enumerate(VOICES)]
    src = tmp_path / "chorale.mid"
    write_midi(Score(piece.resolution, tracks, tempos=np.array([(0, 90.0)], TEMPO_DTYPE),
                     meters=np.array([(0, 4, 4)], METER_DTYPE), keys=np.zeros(0, KEY_DTYPE)), src)
    for preserve in ([], ["--preserve-rhythm"]):
        out = tmp_path / f"again{len(preserve)}.mid"
        run = subprocess.run([sys.executable, "-m", "engine.cli", "infill", str(src), "--bars", "2:3",
                              "--tracks", "alto", "--seed", "1", "--model", str(COMPOSER), "-o", str(out),
                              *preserve], capture_output=True, text=True, timeout=240)
        assert run.returncode == 0, run.stderr
        given, got = read_midi(src), read_midi(out)
        bar = 4 * given.resolution
        for old, new in zip(given.tracks, got.tracks):
            if old.name != "alto":
                assert (old.notes == new.notes).all()
                continue
            inside = lambda n, bar=bar: (n["time"] >= bar) & (n["time"] < 3 * bar)  # noqa: E731
            assert (old.notes[~inside(old.notes)] == new.notes[~inside(new.notes)]).all()
            # the written notes replace the file's own in the span: a 16th-note grid, one at a time,
            # the alto's range; with --preserve-rhythm on the file's own onsets and durations
            written, own = new.notes[inside(new.notes)], old.notes[inside(old.notes)]
            assert len(written) and (written["time"] % (given.resolution // 4) == 0).all()
            assert len(np.unique(written["time"])) == len(written)
            assert written["pitch"].min() >= 52 and written["pitch"].max() <= 77
            if preserve:
                np.testing.assert_array_equal(written[["time", "duration"]], own[["time", "duration"]])


@shipped
def test_preserve_rhythm_through_the_composer_and_its_refusals(test_chorale):
    from models.composer.inference import Composer, ComposeRequest

    composer = Composer.load(COMPOSER)
    piece = test_chorale
    given = {v: piece.notes[piece.track == i] for i, v in enumerate(VOICES)}
    bars = len(piece.bar_starts)
    span = lambda n: (n["time"] >= 96) & (n["time"] < 4 * 96)  # noqa: E731
    request = ComposeRequest(bars=bars, seed=2, given=given, infill={"tenor": (1, 4), "bass": (1, 4)},
                             rhythm={"tenor": "keep", "bass": "keep"})
    score = composer.compose_score(request)
    for track in score.tracks:
        want = given[track.name]
        if track.name in ("tenor", "bass"):
            np.testing.assert_array_equal(track.notes[["time", "duration"]], want[["time", "duration"]])
            low, high = composer.tok.cfg.ranges[composer.instruments.index(track.name)]
            written = track.notes[span(track.notes)]["pitch"]
            assert len(written) and low <= written.min() and written.max() <= high
        else:
            np.testing.assert_array_equal(track.notes[["time", "pitch", "duration"]],
                                          want[["time", "pitch", "duration"]])
    for bad in (dict(infill={"tenor": (1, 4)}, rhythm={"alto": "keep"}),
                dict(infill={"tenor": (1, 4), "bass": (1, 4)}, rhythm={"tenor": "keep"}),
                dict(infill={"tenor": (1, 4)}, rhythm={"tenor": "keep"}, chords="C G")):
        with pytest.raises(ValueError, match="rhythm keep .preserve rhythm. writes new pitches"):
            composer.plan(ComposeRequest(bars=bars, given=given, **bad))


@shipped
def test_infill_counts_bars_as_printed_in_a_chorale_with_a_pickup(tmp_path):
    """bwv108.6 (a held-out chorale) opens with a one-beat pickup: its bars start at 24, 120, 216 ...
    The request's bars are moved onto the file's, so --bars 2:3 rewrites printed bars 2 and 3 (the
    model sees the downbeats where they are) and --bars 0:0 the pickup; every other note is kept."""
    import shutil

    import music21

    from bridge.midi import read_midi
    from bridge.scorefile import read_score

    src = tmp_path / "bwv108.6.mxl"
    shutil.copy(music21.corpus.getWork("bwv108.6"), src)
    given = read_score(src)
    starts = {int(b["number"]): int(b["time"]) for b in given.bars[::-1]}  # a split bar: its first half
    assert starts[0] == 0 and starts[1] == 24 and starts[2] == 120
    fields = ["time", "pitch", "duration"]
    for bars, (lo, hi) in (("2:3", (starts[2], starts[4])), ("0:0", (0, starts[1]))):
        out = tmp_path / f"again-{bars.replace(':', '-')}.mid"
        run = subprocess.run([sys.executable, "-m", "engine.cli", "infill", str(src), "--bars", bars,
                              "--tracks", "alto", "--seed", "1", "--model", str(COMPOSER), "-o", str(out)],
                             capture_output=True, text=True, timeout=240)
        assert run.returncode == 0, run.stderr
        got = read_midi(out)
        for old, new in zip(given.tracks, got.tracks):
            if old.name.lower() != "alto":
                np.testing.assert_array_equal(new.notes[fields], old.notes[fields])
                continue
            now, was = [(n["time"] >= lo) & (n["time"] < hi) for n in (new.notes, old.notes)]
            np.testing.assert_array_equal(new.notes[~now][fields], old.notes[~was][fields])
            written = new.notes[now]
            assert len(written) and written["pitch"].min() >= 52 and written["pitch"].max() <= 77
    bad = subprocess.run([sys.executable, "-m", "engine.cli", "infill", str(src), "--bars", "0:20",
                          "--tracks", "alto", "--model", str(COMPOSER), "-o", str(tmp_path / "no.mid")],
                         capture_output=True, text=True, timeout=240)
    assert bad.returncode == 2 and "which has bars 0..13, its pickup bar 0" in bad.stderr
    assert not (tmp_path / "no.mid").exists()

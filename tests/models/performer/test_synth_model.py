from __future__ import annotations

import json
import math
import random
from pathlib import Path

import mido
import numpy as np
import pytest
import torch

from bridge import synth
from models.data import performance as pdata
from models.format import load_scripted, validate
from models.performer import evaluate_synth as es
from models.performer import render
from models.performer import train_synth as ts
from models.performer.synth_model import (
    FRAMES_PER_S,
    SynthConfig,
    Synthesizer,
    collate,
    synthesise,
    window_inputs,
)

PRETRAINED_SYNTH = Path(__file__).resolve().parents[3] / "models" / "pretrained" / "performer-synth.pt"
TINY = dict(d_model=16, encoder_layers=1, decoder_layers=1, n_heads=2, d_ff=32, dropout=0.0, latent_dim=4)
needs_fluidsynth = pytest.mark.skipif(synth.available() != "" or not render.installed_performers(),
                                      reason="needs libfluidsynth and a GM SoundFont")


def write_midi(path, pitches, seconds_per_note=0.25):
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=int(seconds_per_note * 1e6)))
    for i, pitch in enumerate(pitches):
        track.append(mido.Message("note_on", note=pitch, velocity=40 + 10 * (i % 6), time=0))
        track.append(mido.Message("note_off", note=pitch, velocity=0, time=480))
    mid.save(path)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A real performance set: two short MIDI files (names that hash to train and valid) rendered
    with FluidSynth by the builder, one performer each."""
    src = tmp_path_factory.mktemp("src")
    write_midi(src / "piece0.mid", [60, 62, 64, 65, 67, 65, 64, 62, 60, 67, 72, 60])  # train
    write_midi(src / "piece5.mid", [55, 57, 59, 60, 62, 60, 59, 57])  # valid
    out = tmp_path_factory.mktemp("perf") / "tiny"
    summary = pdata.build("tiny", source=src, out_dir=out, performers_per_piece=1, jobs=1, progress=False)
    assert summary["split"]["train"] == 1 and summary["split"]["valid"] == 1
    return out


def test_config_validates_itself():
    with pytest.raises(ValueError, match="conditioning"):
        SynthConfig(conditioning="audio")
    with pytest.raises(ValueError, match="divisible by n_heads"):
        SynthConfig(d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="kernel_size"):
        SynthConfig(kernel_size=2)
    cfg = SynthConfig(**TINY)
    assert SynthConfig.from_dict(cfg.to_dict()) == cfg


def performed(n: int = 4) -> np.ndarray:
    from models.performer import expression as ex

    notes = np.zeros(n, ex.PERFORMED_DTYPE)
    notes["pitch"] = 60 + np.arange(n)
    notes["onset_beats"] = np.arange(n, dtype=float)
    notes["duration_beats"] = 1.0
    notes["onset_s"] = notes["score_onset_s"] = np.arange(n) * 0.5
    notes["duration_s"] = notes["score_duration_s"] = 0.45
    notes["dynamic"], notes["velocity"], notes["performed_velocity"] = 4, 76, 80
    return notes


def test_window_inputs_place_notes_in_frames_of_the_window():
    notes = performed()
    w = window_inputs(notes, 90.0, start=30, n_frames=40)  # frames 30..69: note 0 (0..38.8), 1 (43..81.8)
    on = notes["onset_s"] * FRAMES_PER_S - 30
    np.testing.assert_allclose(w["onsets"], on[:2], rtol=1e-5)
    assert w["ints"][:, 0].tolist() == [60, 61] and w["floats"][0, -2] == pytest.approx(80 / 127)
    b = collate([w, window_inputs(notes, 90.0, start=1000, n_frames=40)])  # the second window is empty
    assert b["padding"][1].all() and not b["padding"][0].any() and b["ints"].shape == (2, 2, 3)


def test_mixer_sums_simultaneous_notes_and_scales_by_position_in_the_note():
    torch.manual_seed(0)
    model = Synthesizer(SynthConfig(**{**TINY, "encoder_layers": 0})).eval()  # no attention between notes
    with torch.no_grad():
        model.position_scale.fill_(1.0)
    notes = performed(2)
    notes["onset_s"] = 0.0  # a chord
    b = collate([window_inputs(notes, 90.0, 0, 50)])  # notes sound in frames 0..38.8
    args = (b["ints"], b["floats"], b["onsets"], b["offsets"], b["padding"], torch.tensor([0]),
            torch.zeros(1, 4), 50)
    with torch.no_grad():
        both = model.frames(*args)[0]
        empty = model.frames(*args[:4], torch.ones(1, 2, dtype=torch.bool), *args[5:])[0]
        one = [model.frames(*args[:4], torch.tensor([[k != i for k in range(2)]]), *args[5:])[0]
               for i in range(2)]
    length = float(b["offsets"][0, 0] - b["onsets"][0, 0])
    assert length > 10
    # simultaneous notes add
    torch.testing.assert_close(both - empty, (one[0] - empty) + (one[1] - empty))
    # the copy at relative position p is the note's embedding times (1 + p * w), w = 1
    e0 = one[0][0] - empty[0]
    torch.testing.assert_close(one[0][5] - empty[5], e0 * (1 + 5 / length))
    # frames after the notes carry only the style and position
    torch.testing.assert_close(both[-1], empty[-1])


@pytest.mark.parametrize("mask_between", [True, False])
def test_a_windows_mel_does_not_depend_on_its_batchs_padding(mask_between):
    """Padded note slots are zeroed before both convolutions of each block (new configs), so a window
    comes out the same alone and batched with a longer one; a config saved before the field loads
    with the first performer-synth's leak, which the test shows is real."""
    torch.manual_seed(0)
    cfg = SynthConfig(**{**TINY, "encoder_layers": 2})
    if not mask_between:
        cfg = SynthConfig.from_dict({k: v for k, v in cfg.to_dict().items() if k != "mask_between_convs"})
    assert cfg.mask_between_convs is mask_between
    model = Synthesizer(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))  # away from the initial zeros that would hide a leak
    dense = performed(9)
    dense["onset_s"] = np.arange(9) * 0.05  # nine notes inside the window's 0.7 s
    few, many = window_inputs(performed(2), 90.0, 0, 60), window_inputs(dense, 90.0, 0, 60)
    assert len(few["onsets"]) == 2 and len(many["onsets"]) == 9

    def mel(batch):
        b = collate(batch)
        return model(b["ints"], b["floats"], b["onsets"], b["offsets"], b["padding"],
                     torch.zeros(len(batch), dtype=torch.long), torch.zeros(len(batch), 4), 60)[0]

    with torch.no_grad():
        alone, batched = mel([few]), mel([few, many])
    same = torch.allclose(alone, batched, atol=1e-5)
    assert same is mask_between


@pytest.mark.parametrize("conditioning", ["notes", "pianoroll"])
def test_tiny_model_trains_exports_and_matches_eager(conditioning, tmp_path):
    torch.manual_seed(0)
    cfg = ts.TrainConfig(conditioning=conditioning, lr=3e-3, warmup_steps=1, kl_weight=0.01)
    model = Synthesizer(SynthConfig(conditioning=conditioning, **TINY))
    state = ts.State(model, torch.optim.Adam(model.parameters(), lr=cfg.lr))
    g = np.random.default_rng(0)
    notes = performed(8)
    mel = g.normal(-6, 1, (render.N_MELS, 400)).astype(np.float32)
    piece = pdata.PerformancePiece("x__p0", "x", "train", 0, 90.0, notes, mel)
    batch = ts.batch_of(ts.windows([piece], 64, random.Random(0), 3), 64)
    first = ts.train_step(state, batch, cfg)
    for _ in range(15):
        logs = ts.train_step(state, batch, cfg)
    assert math.isfinite(first["loss/total"]) and logs["loss/mel"] < first["loss/mel"]
    meta = es.synth_metadata(model.cfg, "tiny", window=64, context=8)
    assert validate(meta) == "" and meta["mel"]["hop"] == render.HOP and meta["sample_rate_hz"] == 22_050
    path = es.export_synth(model, tmp_path / "tiny.pt", meta)
    loaded, read = load_scripted(path)
    assert read["task"] == "perform_synth" and read["model"]["conditioning"] == conditioning
    a = synthesise(model.eval(), notes, 90.0, 0, 300, window=64, context=8)
    b = synthesise(loaded, notes, 90.0, 0, 300, window=64, context=8)
    assert a.shape == (render.N_MELS, 300)
    np.testing.assert_allclose(a, b, atol=1e-4)
    with pytest.raises(ValueError, match="TorchScript"):
        es.export_synth(model, tmp_path / "tiny.pt2", meta)
    with pytest.raises(ValueError, match="longer than twice the context"):
        synthesise(model, notes, 90.0, 0, 300, window=16, context=8)


def test_flux_term_charges_a_blurred_onset_that_plain_mse_forgives():
    """A step onset at frame 10 against two predictions with the same mel MSE: the onset ramped over
    four frames, and a sharp onset at the right frame with every frame sqrt(2) too loud. MSE cannot
    tell them apart; the flux term charges the ramp for the rise it lacks and nothing for the level,
    and nothing for what differs inside the mask's padding."""
    target = torch.full((1, 2, 20), -8.0)
    target[..., 10:] = 0.0
    ramp = target.clone()
    ramp[..., 8:12] = torch.tensor([-6.0, -4.0, -4.0, -2.0])  # squared errors 4 + 16 + 16 + 4 = 40 / 20
    loud = target + math.sqrt(2.0)
    batch = {"mel": target, "mask": torch.ones(1, 1, 20)}
    assert ts.masked_mse(loud, batch).item() == pytest.approx(ts.masked_mse(ramp, batch).item()) == 2.0
    assert ts.flux_mse(loud, batch).item() == pytest.approx(0.0, abs=1e-9)
    assert ts.flux_mse(ramp, batch).item() == pytest.approx(80 / 19)
    padded = {"mel": target, "mask": torch.cat([torch.ones(1, 1, 15), torch.zeros(1, 1, 5)], 2)}
    junk = target.clone()
    junk[..., 16:] = 5.0  # differences only inside the padding
    assert ts.flux_mse(junk, padded).item() == 0.0


@needs_fluidsynth
def test_training_commands_resume_and_evaluation_compares_with_the_baseline(built, tmp_path, capsys):
    tiny = ["--d-model", "16", "--encoder-layers", "1", "--decoder-layers", "1", "--d-ff", "32",
            "--latent-dim", "4", "--crop", "64", "--batch-size", "2", "--valid-windows", "2"]
    for name, extra in (("ours", []), ("roll", ["--conditioning", "pianoroll"])):
        cfg, resume = ts.parse_args(["--data", str(built), "--out", str(tmp_path / name), "--steps", "2",
                                     "--eval-every", "1", *tiny, *extra])
        assert ts.train(cfg, progress=False)["steps"] == 2
    saved = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert saved["model"]["d_model"] == 16 and saved["train"]["steps"] == 2
    cfg, resume = ts.parse_args(["--data", str(built), "--out", str(tmp_path / "ours"), "--steps", "3",
                                 "--eval-every", "1", *tiny, "--resume"])
    assert resume and ts.train(cfg, resume=True, progress=False)["steps"] == 3
    assert len(list((tmp_path / "ours" / "tb").glob("events.*"))) >= 1
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(tmp_path / "ours" / "tb"), size_guidance={"audio": 0}).Reload().Tags()
    assert {"valid/target_audio", "valid/predicted_audio"} <= set(tags["audio"])  # heard, not only seen
    assert "valid/mel_target_above_prediction" in tags["images"]
    # --init: a fresh run from another run's weights (its first validation is theirs), or refused
    cfg, _ = ts.parse_args(["--data", str(built), "--out", str(tmp_path / "warm"), "--steps", "1",
                            "--eval-every", "1", "--lr", "1e-12", *tiny,
                            "--init", str(tmp_path / "ours" / "best.pt")])
    warm, _, _ = ts.load_checkpoint(tmp_path / "ours" / "best.pt")
    ts.train(cfg, progress=False)
    again, _, _ = ts.load_checkpoint(tmp_path / "warm" / "last.pt")
    assert all(torch.allclose(v, again.state_dict()[k], atol=1e-6) for k, v in warm.state_dict().items())
    cfg, _ = ts.parse_args(["--data", str(built), "--out", str(tmp_path / "misfit"), "--steps", "1", *tiny,
                            "--init", str(PRETRAINED_SYNTH)])
    with pytest.raises(ValueError, match="does not fit this model"):
        ts.train(cfg, progress=False)
    es.main(["--data", str(built), "--split", "valid", "--synth", str(tmp_path / "ours" / "best.pt"),
             "--baseline", str(tmp_path / "roll" / "best.pt"), "--plot", str(tmp_path / "example.png")])
    result = json.loads(capsys.readouterr().out)
    for name in ("synthesis (ours)", "piano-roll baseline", "mean frame of the performer (train)"):
        assert result[name]["log_mel_mse/all"] > 0
    assert result["margin"]["paper_ratio_violin"] == pytest.approx(0.785, abs=1e-3)
    assert (tmp_path / "example.png").stat().st_size > 1000


@needs_fluidsynth
def test_listen_diagnosis_with_the_true_phase_gives_back_the_render(built):
    """``perform_listen --diagnose``'s ``soundfont-mel+true-phase``: the stored render's mel magnitude
    with the render's own phase comes back close to the render, sample by sample (Griffin-Lim's
    guessed phase does not)."""
    from types import SimpleNamespace

    import soundfile

    from benchmarks.perform_listen import diagnosis

    piece = pdata.load(built, "train")[0]
    audio, _ = soundfile.read(built / "audio" / f"{piece.key}.wav", dtype="float32")
    carrier = SimpleNamespace(sample_rate_hz=render.SAMPLE_RATE_HZ)  # the only field these two read
    n = len(audio) - 4096  # the ends differ by padding
    for name, at_least in (("soundfont-mel+true-phase", 0.9), ("soundfont-mel+griffin-lim", None)):
        out = diagnosis(name, carrier, piece, built)
        corr = float(np.corrcoef(out[:n], audio[:n])[0, 1])
        assert (corr >= at_least) if at_least else (abs(corr) < 0.5), (name, corr)


def test_bad_options_are_one_sentence_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        ts.main(["--conditioning", "audio", "--out", "/nonexistent/x"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "conditioning must be one of notes, pianoroll" in err and err.count("\n") == 1


@pytest.mark.parametrize("fade", [0, 4, 8])
def test_synthesis_windows_hand_over_at_each_seam_with_weights_that_sum_to_one(fade):
    """``seam_windows``: every frame's weights sum to 1; a frame's weights are the same whichever
    range asked for it (a chunk cannot change the mel); each window owns its middle; around a seam
    the earlier window's share falls linearly over 2 * fade frames (fade 0: a cut at the seam)."""
    from models.performer.synth_model import seam_windows

    n, window, context = 300, 64, 8  # windows own 48 frames each: seams at 48, 96, ...
    whole = {}
    for begin, length, w in seam_windows(n, window, context, 0, n, fade):
        for f in range(begin, begin + length):
            whole.setdefault(f, []).append((begin, float(w[f - begin])))
    assert sorted(whole) == list(range(n))
    assert all(abs(sum(x for _, x in ws) - 1.0) < 1e-6 for ws in whole.values())
    for lo, hi in ((0, 33), (40, 130), (47, 49), (250, 300)):
        part = seam_windows(n, window, context, lo, hi, fade)
        for begin, length, w in part:
            for f in range(max(lo, begin), min(hi, begin + length)):
                assert (begin, float(w[f - begin])) in whole[f]
        assert all(any(b <= f < b + n_ for b, n_, _ in part) for f in range(lo, hi))
    earlier = next(w for b, _, w in seam_windows(n, window, context, 0, n, fade) if b == 40)  # owns 48..96
    share = {f: float(earlier[f - 40]) for f in range(40, 40 + window)}
    assert share[72] == 1.0  # its middle
    if fade == 0:
        assert share[95] == 1.0 and share[96] == 0.0
    else:
        falling = [share[f] for f in range(96 - fade, 96 + fade)]
        assert falling == sorted(falling, reverse=True) and 0 < falling[-1] < falling[0] < 1
        assert share[96 - fade - 1] == 1.0 and share.get(96 + fade, 0.0) == 0.0  # (fade 8: past its end)

"""torch.export (.pt2) artifacts beside TorchScript (.pt): same weights, same outputs, same engine
calls, on real input (examples/piano.mid and a Bach chorale from the music21 corpus)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bridge.midi import read_midi
from bridge.notation import read_notation
from bridge.score import Score, Track, make_notes, sort_order
from engine.registry import Registry
from engine.tasks.arrange import arrange, input_notes, to_model_ticks
from engine.tasks.live_arrange import LiveArranger
from models.arranger.export import arranger_metadata, export_arranger, main
from models.arranger.features import FeatureConfig
from models.arranger.inference import to_inputs
from models.arranger.model import Arranger, ArrangerConfig
from models.format import METADATA_FILE, MODEL_SUFFIXES, ExportedModel, load_for_inference

ROOT = Path(__file__).resolve().parents[3]
TINY = dict(n_parts=4, d_model=16, n_layers=2)
MODELS = {  # name -> the tiny model's config; each is exported to .pt and .pt2 with the same weights
    "tiny-offline": ArrangerConfig(causal=False, **TINY),
    "tiny-online": ArrangerConfig(causal=True, features=FeatureConfig(use_chord_context=True), **TINY),
    "tiny-voice": ArrangerConfig(causal=True, features=FeatureConfig(use_voice_state=True), **TINY),
}


def _tiny(mcfg: ArrangerConfig, seed: int = 0) -> Arranger:
    torch.manual_seed(seed)
    return Arranger(mcfg).eval()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A model folder holding every tiny model twice: name.pt and name.pt2."""
    out = tmp_path_factory.mktemp("models")
    for name, mcfg in MODELS.items():
        model = _tiny(mcfg)
        meta = arranger_metadata(mcfg, name, "satb")
        for suffix in MODEL_SUFFIXES:
            export_arranger(model, mcfg, out / f"{name}{suffix}", meta)  # verifies against eager
    return out


@pytest.fixture(scope="module")
def registry(model_dir) -> Registry:
    return Registry([model_dir])


def _entry(registry: Registry, name: str, suffix: str):
    return next(e for e in registry.entries if e.path.name == f"{name}{suffix}")


@pytest.fixture(scope="module")
def chorale() -> Score:
    from music21 import corpus

    score = read_notation(corpus.getWork("bach/bwv66.6")).with_resolution(480)
    notes, _ = score.merged()
    return Score(480, [Track("Piano", 0, notes=np.unique(notes))])


def test_registry_finds_pt2_beside_pt(registry):
    for name in MODELS:
        entry = _entry(registry, name, ".pt2")
        assert entry.ok, entry.error
        assert isinstance(entry.module, ExportedModel)
        assert entry.metadata == _entry(registry, name, ".pt").metadata


@pytest.mark.parametrize("name", ["tiny-offline", "tiny-online"])
def test_pt2_logits_match_eager_on_a_chorale(name, model_dir, chorale):
    mcfg = MODELS[name]
    module, meta = load_for_inference(model_dir / f"{name}.pt2")
    notes = to_model_ticks(input_notes(chorale), chorale.resolution, mcfg.features)
    notes = notes[sort_order(notes)]
    x = to_inputs(notes, mcfg.features, mcfg.n_parts)
    with torch.no_grad():
        want = _tiny(mcfg).prepare_for_export()(*x)
        got = module(*x)
    assert got.shape == want.shape == (1, len(notes), 4)
    assert float((got - want).abs().max()) < 1e-4


@pytest.mark.parametrize("name", sorted(MODELS))
def test_arrange_gives_the_same_parts_as_torchscript(name, registry, chorale):
    piano = read_midi(ROOT / "examples" / "piano.mid")
    for score in (piano, chorale):
        pt = arrange(score, _entry(registry, name, ".pt")).to_score()
        pt2 = arrange(score, _entry(registry, name, ".pt2")).to_score()
        assert [t.name for t in pt2.tracks] == ["Soprano", "Alto", "Tenor", "Bass"]
        for a, b in zip(pt.tracks, pt2.tracks):
            assert np.array_equal(a.notes, b.notes), (name, a.name)


def test_live_session_on_pt2_labels_like_torchscript(registry, chorale):
    notes = chorale.tracks[0].notes
    labels = {}
    for suffix in MODEL_SUFFIXES:
        live = LiveArranger(_entry(registry, "tiny-online", suffix), chorale.resolution)
        chords = [notes[notes["time"] == t] for t in np.unique(notes["time"])]
        labels[suffix] = np.concatenate([live.push(chord) for chord in chords])
    assert np.array_equal(labels[".pt"], labels[".pt2"])


def test_loading_and_running_pt2_warns_nothing(model_dir):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # users' logs stay clean, as with TorchScript (quiet_jit)
        module, meta = load_for_inference(model_dir / "tiny-online.pt2")
        x = to_inputs(make_notes([0, 0, 24], [60, 64, 67], 24), MODELS["tiny-online"].features, 4)
        with torch.no_grad():
            module.to("cpu")(*x)
            module.step(*(t[:, :1] if t.dim() == 3 else t for t in x), *module.initial_state())


def test_offline_pt2_has_no_step_and_says_why(registry):
    module = _entry(registry, "tiny-offline", ".pt2").module
    with pytest.raises(RuntimeError, match="no 'initial_state' program.*only online LSTM"):
        module.initial_state()
    h = torch.zeros(2, 1, 16)
    with pytest.raises(RuntimeError, match="no 'step' program.*only online LSTM"):
        module.step(torch.zeros(1, 1, 5, dtype=torch.int64), torch.zeros(1, 1, 4), torch.zeros(1, 4),
                    torch.zeros(1, 1, 20), h, h)


def test_causal_transformer_exports_to_pt2(tmp_path):
    mcfg = ArrangerConfig(n_parts=4, arch="transformer", causal=True, d_model=16, n_layers=1, n_heads=2,
                          d_ff=32)
    path = export_arranger(_tiny(mcfg), mcfg, tmp_path / "t.pt2", arranger_metadata(mcfg, "t", "satb"))
    module, meta = load_for_inference(path)
    assert meta["methods"] == ["forward"]


def test_broken_pt2_files_are_reported_and_skipped(model_dir, tmp_path):
    from torch.export.pt2_archive._package import package_pt2

    good = (model_dir / "tiny-offline.pt2").read_bytes()
    (tmp_path / "truncated.pt2").write_bytes(good[: len(good) // 2])
    (tmp_path / "junk.pt2").write_bytes(b"not a model")
    bare = torch.export.export(torch.nn.Linear(2, 2), (torch.zeros(1, 2),))
    package_pt2(str(tmp_path / "bare.pt2"), exported_programs={"forward": bare})
    (tmp_path / "ok.pt2").write_bytes(good)
    reg = Registry([tmp_path])
    errors = {e.path.name: e.describe() for e in reg.entries if e.path.parent == tmp_path and not e.ok}
    assert set(errors) == {"truncated.pt2", "junk.pt2", "bare.pt2"}
    assert all("BROKEN" in d and "re-export" in d for d in errors.values())
    assert METADATA_FILE in errors["bare.pt2"]
    assert _entry(reg, "ok", ".pt2").ok  # the rest still load


def test_unknown_suffix_is_refused_with_the_allowed_ones(tmp_path):
    mcfg = MODELS["tiny-offline"]
    with pytest.raises(ValueError, match=r"\.pt \(torchscript\), \.pt2 \(pt2\)"):
        export_arranger(_tiny(mcfg), mcfg, tmp_path / "x.onnx", arranger_metadata(mcfg, "x", "satb"))
    with pytest.raises(ValueError, match="cannot load x.onnx"):
        load_for_inference(tmp_path / "x.onnx")


def test_cli_writes_pt2_with_format_flag(tmp_path, capsys):
    mcfg = MODELS["tiny-offline"]
    ckpt = tmp_path / "best.pt"
    state = _tiny(mcfg).state_dict()
    torch.save({"config": mcfg.to_dict(), "train_config": {"data": "bach"}, "model": state}, ckpt)
    main([str(ckpt), str(tmp_path / "mine.pt2"), "--format", "pt2", "--ensemble", "satb"])
    module, meta = load_for_inference(tmp_path / "mine.pt2")
    assert isinstance(module, ExportedModel) and meta["name"] == "mine"
    with pytest.raises(SystemExit):
        main([str(ckpt), str(tmp_path / "mine.pt"), "--format", "pt2", "--ensemble", "satb"])
    assert "name it 'mine.pt2'" in capsys.readouterr().err
    assert json.loads(json.dumps(meta)) == meta

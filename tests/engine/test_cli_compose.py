"""``deep-musician compose``: writes a score, refuses bad input in one sentence with exit 2 and
writes nothing, never overwrites without --force."""
from __future__ import annotations

import pytest
import torch

from engine.cli import main


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    from models.composer.export import composer_metadata, export_composer
    from models.composer.model import Composer, ComposerConfig
    from models.composer.representations import make_tokenizer
    from models.composer.tokens import TokenizerConfig

    torch.manual_seed(0)
    tcfg = TokenizerConfig.for_instruments("ours", ["soprano", "alto", "tenor", "bass"])
    mcfg = ComposerConfig(vocab_size=len(make_tokenizer(tcfg)), block_size=96, d_model=32, n_layers=2,
                          n_heads=2, dropout=0.0)
    path = tmp_path_factory.mktemp("models") / "composer-tiny.pt"
    return export_composer(Composer(mcfg).eval(), path, composer_metadata(mcfg, tcfg, "composer-tiny"))


def run(*args: str) -> int:
    return main(["compose", *args, "--no-progress"])


def test_compose_writes_midi_and_a_plot_and_is_repeatable(tmp_path, model_file, capsys):
    from bridge.scorefile import read_score

    out, png = tmp_path / "a.mid", tmp_path / "a.png"
    assert run("-o", str(out), "--bars", "2", "--chords", "C G", "--key", "C", "--seed", "3",
               "--instruments", "soprano,bass", "--model", str(model_file), "--plot", str(png)) == 0
    assert "composed 2 bars" in capsys.readouterr().out and png.stat().st_size > 0
    first = read_score(out)
    assert [t.name.lower() for t in first.tracks] == ["soprano", "bass"]
    again = tmp_path / "b.mid"
    run("-o", str(again), "--bars", "2", "--chords", "C G", "--key", "C", "--seed", "3",
        "--instruments", "soprano,bass", "--model", str(model_file))
    assert out.read_bytes() == again.read_bytes()


@pytest.mark.parametrize(("flags", "message"), [
    (["--bars", "0"], "--bars must be 1..256"),
    (["--bars", "100000"], "--bars must be 1..256"),
    (["--chords", "C Q7"], "unknown chord symbol 'Q7'"),
    (["--instruments", "kazoo"], "instrument 'kazoo' is not one this model writes"),
    (["--key", "H"], "key 'H' is not a key name"),
    (["--meter", "7/16"], "meter 7/16 is not supported"),
    (["--chords", "I V"], "needs a key; pass --key C"),
    (["--chords", "C G", "--harmony", "12"], "--harmony must be 0..10"),
])
def test_bad_input_is_one_sentence_exit_2_and_nothing_written(tmp_path, model_file, capsys, flags, message):
    out = tmp_path / "x.mid"
    assert run("-o", str(out), "--model", str(model_file), *flags) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_never_overwrites_without_force(tmp_path, model_file, capsys):
    out = tmp_path / "x.mid"
    out.write_bytes(b"keep")
    assert run("-o", str(out), "--bars", "1", "--model", str(model_file)) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == b"keep"
    assert run("-o", str(out), "--bars", "1", "--model", str(model_file), "--force") == 0
    assert out.read_bytes() != b"keep"


def test_a_missing_model_file_is_a_sentence(tmp_path, capsys):
    assert run("-o", str(tmp_path / "x.mid"), "--model", str(tmp_path / "none.pt")) == 2
    assert "no model file at" in capsys.readouterr().err


def test_the_shipped_model_composes_over_chords(tmp_path, capsys):
    from bridge.scorefile import read_score

    out = tmp_path / "shipped.mid"
    assert run("-o", str(out), "--bars", "2", "--chords", "C G7", "--key", "C", "--seed", "1") == 0
    assert "with composer-satb" in capsys.readouterr().out
    score = read_score(out)
    assert [t.name.lower() for t in score.tracks] == ["soprano", "alto", "tenor", "bass"]
    assert score.n_notes > 0

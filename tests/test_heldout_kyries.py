"""scripts/heldout_kyries.py: the corpus held out from every performer rule is Palestrina's
four-voice Kyries, first by name, copied as they are; and perform_listen's per-performer ratios."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_script():
    spec = importlib.util.spec_from_file_location("heldout_kyries", ROOT / "scripts" / "heldout_kyries.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def spines(path: Path) -> int:
    with open(path, errors="replace") as f:
        return next(line.count("**kern") for line in f if line.startswith("**"))


def test_the_first_four_voice_kyries_by_name_are_copied_unchanged(tmp_path, capsys):
    script = load_script()
    chosen = script.four_voice_kyries(5)
    assert [p.name for p in chosen] == sorted(p.name for p in chosen)
    assert chosen[0].name == "Kyrie_00.krn" and all(spines(p) == 4 for p in chosen)
    skipped = [p for p in sorted(chosen[0].parent.glob("Kyrie*.krn")) if p.name < chosen[-1].name
               and p not in chosen]
    assert skipped and all(spines(p) != 4 for p in skipped)  # the ones passed over have other voice counts
    assert script.four_voice_kyries(2, skip=3) == chosen[3:5]  # the next ones, for later rules
    script.main(["--out", str(tmp_path / "k"), "--count", "5"])
    assert capsys.readouterr().out.split() == [p.name for p in chosen]
    assert all((tmp_path / "k" / p.name).read_bytes() == p.read_bytes() for p in chosen)


def test_ratios_per_performer_weigh_pieces_by_fluidsynths_f1():
    from benchmarks.perform_listen import performer_of, ratio_of_means

    assert performer_of("bach__bwv1.6__p0") == "FluidR3_GM:piano"
    assert performer_of("Kyrie_02__p2") == "FluidR3_GM:strings"
    soundfont = {"a__p0": 0.8, "b__p0": 0.2}
    rows = [{"piece": "a__p0", "f1": 0.4}, {"piece": "b__p0", "f1": 0.6}]
    assert ratio_of_means(rows, soundfont) == pytest.approx(1.0)  # (0.4 + 0.6) / (0.8 + 0.2)
    assert ratio_of_means(rows[:1], soundfont) == pytest.approx(0.5)


def test_other_movements_are_separate_corpora_and_an_unknown_one_is_named(tmp_path):
    script = load_script()
    glorias = script.four_voice_kyries(3, movement="Gloria")
    assert glorias and all(p.name.startswith("Gloria") and spines(p) == 4 for p in glorias)
    assert not set(glorias) & set(script.four_voice_kyries(100))  # no Kyrie among them
    with pytest.raises(SystemExit, match="unknown movement 'Hymn'.*Kyrie"):
        script.four_voice_kyries(1, movement="Hymn")

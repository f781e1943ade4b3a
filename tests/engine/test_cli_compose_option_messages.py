"""Malformed compose/infill options: the error names the option's own form and an example of it, and
nothing is written (argparse exits 2 before any model loads)."""
from __future__ import annotations

import pytest

from engine.cli import main


def _refused(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize(("flag", "value", "example"), [
    ("--register", "soprano", "soprano=72"),
    ("--register", "soprano=high", "soprano=72"),
    ("--density", "soprano", "soprano=4"),
    ("--polyphony", "bass=two", "bass=1"),
    ("--rhythm", "=busy", "bass=plain"),
    ("--direction", "density", "density=2"),
])
def test_a_malformed_control_shows_an_example_of_its_own_flag(tmp_path, capsys, flag, value, example):
    out = tmp_path / "x.mid"
    err = _refused(capsys, ["compose", "-o", str(out), flag, value])
    assert f"argument {flag}: {value!r} is not NAME=VALUE, such as {example}" in err
    assert not out.exists()


@pytest.mark.parametrize("meter", ["5/0", "0/4", "3/5"])
def test_a_meter_without_beats_or_with_an_odd_note_value_is_refused(tmp_path, capsys, meter):
    out = tmp_path / "x.mid"
    err = _refused(capsys, ["compose", "-o", str(out), "--meter", meter])
    assert f"meter {meter!r} needs at least one beat and a note value of 1, 2, 4, 8, 16, 32 or 64" in err
    assert not out.exists()


def test_infill_bars_given_backwards_say_so(tmp_path, capsys):
    out = tmp_path / "x.mid"
    err = _refused(capsys, ["infill", str(tmp_path / "in.mid"), "--bars", "3:2", "-o", str(out)])
    assert "bars '3:2' end before they start; write the first bar first, such as 2:3" in err
    assert not out.exists()

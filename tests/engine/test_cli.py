"""The deep-musician command in a real process, on real corpus pieces and on bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bridge.midi import read_midi, write_midi
from bridge.notation import read_notation
from bridge.score import Score, Track, make_notes
from models.data.splits import SPLITS_DIR

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    # PYTHONPATH: from another folder, `-m engine.cli` would find an installed copy instead of this one
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})


def _test_chorale() -> tuple[Score, Path]:
    """A held-out chorale (test split) from the music21 corpus and its true parts."""
    from music21 import corpus

    name = json.loads((SPLITS_DIR / "bach.json").read_text())["test"][0]
    score = read_notation(corpus.getWork(name.removeprefix("bach/")))
    return score, Path(name)


def _as_piano(score: Score, resolution: int = 480) -> Score:
    """All voices merged into one piano track, at a DAW-like resolution."""
    notes, _ = score.with_resolution(resolution).merged()
    return Score(resolution, [Track("Piano", 0, notes=notes)], score.tempos, score.meters, score.keys)


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_arrange_a_held_out_chorale_keeps_notes_and_finds_the_voices(tmp_path, mode):
    truth, name = _test_chorale()
    piano = _as_piano(truth)
    src, out, png = tmp_path / "piano.mid", tmp_path / "satb.mid", tmp_path / "roll.png"
    write_midi(piano, src)
    r = run("arrange", str(src), "-o", str(out), "--mode", mode, "--plot", str(png))
    assert r.returncode == 0, r.stderr
    assert "arranged" in r.stdout and png.stat().st_size > 10_000
    assert out.stat().st_mode & 0o044  # readable by others, like any file the user makes
    result = read_midi(out)
    assert [t.name for t in result.tracks] == ["Soprano", "Alto", "Tenor", "Bass"]
    got = sorted(tuple(n) for t in result.tracks for n in t.notes.tolist())
    assert got == sorted(tuple(n) for n in piano.tracks[0].notes.tolist())  # every note, unchanged
    # score it against the true voices (matched by name), the paper's way (duplicates dropped)
    lookup = {}
    for track in truth.with_resolution(480).tracks:
        label = ["Soprano", "Alto", "Tenor", "Bass"].index(track.name) if track.name in (
            "Soprano", "Alto", "Tenor", "Bass") else None
        for n in track.notes.tolist():
            lookup.setdefault((n[0], n[1]), set()).add(label)
    hits = [k in lookup.get((n[0], n[1]), ()) for k, t in enumerate(result.tracks) for n in t.notes.tolist()]
    assert np.mean(hits) > 0.85, f"{name}: only {np.mean(hits):.2%} of notes in their true voice"


def test_refuses_to_overwrite_without_force(tmp_path):
    out = tmp_path / "out.mid"
    out.write_bytes(b"precious")
    r = run("arrange", str(ROOT / "examples" / "piano.mid"), "-o", str(out))
    assert r.returncode == 2 and "--force" in r.stderr
    assert out.read_bytes() == b"precious"
    r = run("arrange", str(ROOT / "examples" / "piano.mid"), "-o", str(out), "--force")
    assert r.returncode == 0, r.stderr
    assert read_midi(out).n_notes == read_midi(ROOT / "examples" / "piano.mid").n_notes


def _bad_inputs(tmp: Path) -> dict[str, tuple[Path, list[str], str]]:
    empty = tmp / "empty.mid"
    empty.write_bytes(b"")
    garbage = tmp / "garbage.mid"
    garbage.write_bytes(b"this is not a MIDI file at all")
    bad_xml = tmp / "bad.musicxml"
    bad_xml.write_text("<score-partwise><part id='P1'><measure>")
    no_notes = tmp / "no_notes.mid"
    write_midi(Score(480, [Track("Piano", 0)]), no_notes)
    drums = tmp / "drums.mid"
    write_midi(Score(480, [Track("Kit", 0, is_drum=True, notes=make_notes([0, 480], [36, 38], 240))]),
               drums)
    example = ROOT / "examples" / "piano.mid"
    return {
        "empty file": (empty, [], "empty"),
        "not MIDI": (garbage, [], "MIDI"),
        "bad MusicXML": (bad_xml, [], "parse"),
        "no notes": (no_notes, [], "no notes"),
        "drum only": (drums, [], "drum"),
        "unknown ensemble": (example, ["--ensemble", "gamelan"], "unknown ensemble 'gamelan'"),
        "missing input": (tmp / "nope.mid", [], "nope.mid"),
        "bad hint": (example, ["--hints", "Kazoo:entry=2"], "hint"),
    }


@pytest.mark.parametrize("case", ["empty file", "not MIDI", "bad MusicXML", "no notes", "drum only",
                                  "unknown ensemble", "missing input", "bad hint"])
def test_bad_input_gets_one_sentence_and_nothing_is_written(tmp_path, case):
    src, extra, expect = _bad_inputs(tmp_path)[case]
    out, png = tmp_path / "out.mid", tmp_path / "out.png"
    r = run("arrange", str(src), "-o", str(out), "--plot", str(png), *extra)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deep-musician: error: "), r.stderr
    assert expect.lower() in lines[0].lower()
    assert "Traceback" not in r.stderr
    assert not out.exists() and not png.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temp leftovers


def test_models_doctor_and_data_stats_commands(tmp_path):
    r = run("models")
    assert r.returncode == 0 and "arranger-satb-offline" in r.stdout
    broken = tmp_path / "models"
    broken.mkdir()
    (broken / "junk.pt").write_bytes(b"garbage")
    r = run("models", "--models", str(broken))
    assert r.returncode == 0 and "junk.pt: BROKEN" in r.stdout and "arranger-satb-online" in r.stdout
    r = run("doctor")
    assert "[ok  ] torch" in r.stdout and "[ok  ] models" in r.stdout
    assert r.returncode == 0, r.stdout
    r = subprocess.run([sys.executable, "-m", "engine.cli", "data", "stats", "nosuchset"],
                       capture_output=True, text=True, cwd=ROOT, env={"DEEP_MUSICIAN_DATA": str(tmp_path),
                                                                       "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2 and "deep-musician data build nosuchset" in r.stderr


def test_doctor_lists_the_built_training_sets_of_every_kind(tmp_path):
    (tmp_path / "performance" / "bach-marked").mkdir(parents=True)
    (tmp_path / "performance" / "bach-marked" / "index.json").write_text("{}")
    (tmp_path / "performance" / "half-built" / "shards").mkdir(parents=True)  # no index: not built
    (tmp_path / "multitrack" / "folk").mkdir(parents=True)
    (tmp_path / "multitrack" / "folk" / "shard-00000.npz").write_bytes(b"")
    env = {"DEEP_MUSICIAN_DATA": str(tmp_path), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "engine.cli", "doctor"], capture_output=True, text=True,
                       cwd=ROOT, env=env, timeout=120)
    line = next(x for x in r.stdout.splitlines() if "training data" in x)
    assert line.startswith("[ok  ]") and "multitrack/folk, performance/bach-marked" in line, line
    assert "half-built" not in line


def test_unknown_command_lists_the_valid_ones():
    r = run("orchestrate")
    assert r.returncode == 2 and "arrange" in r.stderr and "doctor" in r.stderr


@pytest.mark.parametrize("argv", [["--help"], ["arrange", "--help"]])
def test_help_is_fast_it_imports_no_numpy_torch_or_music21(argv):
    code = ("import sys\nfrom engine.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n"
            "    pass\nprint(sorted({'numpy', 'torch', 'music21'} & set(sys.modules)))")
    r = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "usage: deep-musician" in r.stdout and r.stdout.rstrip().endswith("[]"), r.stdout


def test_each_verb_parses_its_options():
    """The options are added on first use; parsing a verb's command line finds them."""
    from engine.cli import VERBS, build_parser

    parser = build_parser()
    args = parser.parse_args(["arrange", "in.mid", "-o", "out.mid", "--render", "out.wav"])
    assert (args.ensemble, args.mode, args.render, args.engine, args.timeout) == ("satb", "offline",
                                                                                   "out.wav", None, 10.0)
    assert parser.parse_args(["perform", "in.mid", "-o", "out.wav"]).sample_rate == 48_000
    assert parser.parse_args(["status"]).engine == "tcp://127.0.0.1:5555"
    assert parser.parse_args(["serve"]).endpoint == "tcp://127.0.0.1:5555"
    assert parser.parse_args(["data", "build", "bach"]).jobs == 2
    assert {a.dest for a in parser._subparsers._group_actions} == {"command"}
    assert list(parser._subparsers._group_actions[0].choices) == list(VERBS)


def test_serve_on_a_missing_gpu_says_so_before_loading_anything():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    r = run("serve", "--device", "cuda", "--endpoint", "tcp://127.0.0.1:1")
    assert r.returncode == 2 and "torch sees no CUDA GPU" in r.stderr and "--device cpu" in r.stderr

"""Ensembles an arrangement can target, read from TOML files: the shipped ones in
``models/ensemble_files/`` and any file a user names (``--ensemble my_band.toml``).

A file lists the parts in score order, top voice first; each part has a name, a General MIDI
program, a playable range (sounding pitch), a clef, a transposition and how many notes it can
play at once. The format, with every field::

    name = "string_quartet"
    description = "string quartet: violin I, violin II, viola, cello"

    [[parts]]
    name = "Viola"
    program = 41                # General MIDI program 0..127
    range = ["C3", "E6"]        # lowest and highest sounding pitch: names or MIDI numbers
    clef = "alto"               # treble, treble_8vb, alto, tenor, bass, bass_8vb, percussion
    transposition = 0           # semitones from written to sounding (clarinet in B-flat: -2)
    polyphony = 1               # notes it can sound at once (a piano: 10)
    pattern = 'viola\\b'         # optional: regex for corpus part names (dataset building)
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ENSEMBLE_DIR = Path(__file__).resolve().parent / "ensemble_files"
CLEFS = ("treble", "treble_8vb", "alto", "tenor", "bass", "bass_8vb", "percussion")
PART_KEYS = {"name", "program", "range", "clef", "transposition", "polyphony", "pattern"}
MAX_POLYPHONY = 16
_NOTE_NAME = re.compile(r"^([A-Ga-g])([#b]?)(-?\d)$")
_STEP = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


class EnsembleError(ValueError):
    """An ensemble file or name that cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class Part:
    name: str
    program: int  # General MIDI program 0..127
    low: int  # lowest playable sounding MIDI pitch
    high: int  # highest playable sounding MIDI pitch
    pattern: str = r"(?!)"  # regex (case-insensitive) matched against a corpus part name
    clef: str = "treble"
    transposition: int = 0  # semitones from written to sounding pitch
    polyphony: int = 1  # notes the part can sound at once

    def plays(self, pitch: int) -> bool:
        return self.low <= pitch <= self.high


@dataclass(frozen=True)
class Ensemble:
    name: str
    description: str
    parts: tuple[Part, ...]
    path: Path | None = None  # the file it was read from

    @property
    def part_names(self) -> list[str]:
        return [p.name for p in self.parts]

    @property
    def monophonic(self) -> bool:
        """Every part sounds one note at a time (voices, not keyboards)."""
        return all(p.polyphony == 1 for p in self.parts)

    def label_of(self, part_name: str) -> int | None:
        """Index of the part whose pattern matches a corpus part name, or None."""
        for i, p in enumerate(self.parts):
            if re.search(p.pattern, part_name, flags=re.IGNORECASE):
                return i
        return None


def midi_pitch(value: object, where: str) -> int:
    """A MIDI number 0..127 from an int or a name such as ``"C4"`` (60), ``"F#3"``, ``"Bb1"``."""
    if isinstance(value, int) and not isinstance(value, bool):
        pitch = value
    elif isinstance(value, str) and (m := _NOTE_NAME.match(value.strip())):
        step, accidental, octave = m.groups()
        pitch = 12 * (int(octave) + 1) + _STEP[step.upper()] + {"#": 1, "b": -1, "": 0}[accidental]
    else:
        raise EnsembleError(f"{where}: {value!r} is not a pitch; use a MIDI number 0..127 or a name "
                            "such as \"C4\" (middle C), \"F#3\" or \"Bb1\"")
    if not 0 <= pitch <= 127:
        raise EnsembleError(f"{where}: {value!r} is MIDI {pitch}, outside 0..127")
    return pitch


def _integer(raw: dict, key: str, default: int | None, low: int, high: int, where: str) -> int:
    value = raw.get(key, default)
    if value is None:
        raise EnsembleError(f"{where} has no {key}; add `{key} = ...` ({low}..{high})")
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise EnsembleError(f"{where}: {key} = {value!r}; it must be a whole number {low}..{high}")
    return value


def parse_part(raw: object, where: str) -> Part:
    if not isinstance(raw, dict):
        raise EnsembleError(f"{where} must be a table ([[parts]] with name, program, range, clef)")
    unknown = sorted(set(raw) - PART_KEYS)
    if unknown:
        raise EnsembleError(f"{where} has unknown field(s) {', '.join(unknown)}; a part takes "
                            f"{', '.join(sorted(PART_KEYS))}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise EnsembleError(f"{where} has no name; add `name = \"Violin I\"`")
    where = f"{where} ({name})"
    program = _integer(raw, "program", None, 0, 127, where)
    span = raw.get("range")
    if not isinstance(span, list) or len(span) != 2:
        raise EnsembleError(f"{where}: range must be [LOWEST, HIGHEST], e.g. range = [\"C3\", \"E6\"]; "
                            f"got {span!r}")
    low, high = (midi_pitch(v, f"{where} range") for v in span)
    if low > high:
        raise EnsembleError(f"{where}: range {span!r} goes down (MIDI {low} > {high}); give the lowest "
                            "pitch first")
    clef = raw.get("clef", "treble")
    if clef not in CLEFS:
        raise EnsembleError(f"{where}: clef {clef!r} is not one of {', '.join(CLEFS)}")
    pattern = raw.get("pattern", r"(?!)")
    try:
        re.compile(pattern)
    except (re.error, TypeError) as exc:
        raise EnsembleError(f"{where}: pattern {pattern!r} is not a regular expression ({exc})") from None
    return Part(name.strip(), program, low, high, pattern, clef,
                _integer(raw, "transposition", 0, -36, 36, where),
                _integer(raw, "polyphony", 1, 1, MAX_POLYPHONY, where))


def parse_ensemble(raw: dict, source: str, path: Path | None = None) -> Ensemble:
    """An Ensemble from a parsed TOML document; ``source`` names it in errors."""
    unknown = sorted(set(raw) - {"name", "description", "parts"})
    if unknown:
        raise EnsembleError(f"{source}: unknown field(s) {', '.join(unknown)}; an ensemble takes name, "
                            "description and [[parts]]")
    parts_raw = raw.get("parts")
    if not isinstance(parts_raw, list) or not parts_raw:
        raise EnsembleError(f"{source} lists no parts; add one [[parts]] table per part, top voice first")
    parts = tuple(parse_part(p, f"{source}: part {i + 1}") for i, p in enumerate(parts_raw))
    names = [p.name.lower() for p in parts]
    if len(set(names)) != len(names):
        raise EnsembleError(f"{source}: two parts share a name ({', '.join(p.name for p in parts)}); "
                            "number them, e.g. \"Violin I\" and \"Violin II\"")
    name = raw.get("name", path.stem if path else source)
    if not isinstance(name, str) or not name:
        raise EnsembleError(f"{source}: name must be a non-empty string, got {name!r}")
    return Ensemble(name, str(raw.get("description", "")), parts, path)


def load_ensemble_file(path: str | os.PathLike) -> Ensemble:
    """Read one ensemble file; ``EnsembleError`` says what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise EnsembleError(f"no ensemble file at {path}; give a .toml file or one of: "
                            f"{', '.join(sorted(ENSEMBLES))}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise EnsembleError(f"{path.name} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise EnsembleError(f"{path.name} is not a text file; an ensemble is a UTF-8 TOML file") from None
    return parse_ensemble(raw, path.name, path)


def _shipped() -> dict[str, Ensemble]:
    found = (load_ensemble_file(p) for p in sorted(ENSEMBLE_DIR.glob("*.toml")))
    return {e.name: e for e in found}


ENSEMBLES: dict[str, Ensemble] = _shipped()


def get_ensemble(name_or_path: str | os.PathLike) -> Ensemble:
    """A shipped ensemble by name, or the user's own from a ``.toml`` path."""
    text = str(name_or_path)
    if text.lower().endswith(".toml") or os.sep in text:
        return load_ensemble_file(text)
    try:
        return ENSEMBLES[text]
    except KeyError:
        raise EnsembleError(f"unknown ensemble {text!r}; choose one of: {', '.join(sorted(ENSEMBLES))}, "
                            "or give your own ENSEMBLE.toml (format in models/ensembles.py)") from None

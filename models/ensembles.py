"""Ensembles an arrangement can target: part names, GM programs, ranges, and how corpus part
names map to them."""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Part:
    name: str
    program: int  # General MIDI program 0..127
    low: int  # lowest usual MIDI pitch
    high: int  # highest usual MIDI pitch
    pattern: str  # regex (case-insensitive) matched against a corpus part name


@dataclass(frozen=True)
class Ensemble:
    name: str
    description: str
    parts: tuple[Part, ...]
    monophonic: bool = True  # each part sounds one note at a time (voices, not keyboards)

    @property
    def part_names(self) -> list[str]:
        return [p.name for p in self.parts]

    def label_of(self, part_name: str) -> int | None:
        """Index of the part whose pattern matches a corpus part name, or None."""
        for i, p in enumerate(self.parts):
            if re.search(p.pattern, part_name, flags=re.IGNORECASE):
                return i
        return None


ENSEMBLES: dict[str, Ensemble] = {
    e.name: e
    for e in (
        Ensemble(
            "satb",
            "four-voice chorale: soprano, alto, tenor, bass (Bach chorales)",
            (
                Part("Soprano", 52, 60, 81, r"^\s*(soprano|sopran|s\.?)\s*\d*\s*$|soprano"),
                Part("Alto", 52, 53, 74, r"^\s*(alto|alt|a\.?)\s*\d*\s*$|alto"),
                Part("Tenor", 52, 48, 69, r"^\s*(tenor|t\.?)\s*\d*\s*$|tenor"),
                Part("Bass", 52, 36, 64, r"^\s*(bass|basso|b\.?)\s*\d*\s*$"),
            ),
        ),
        Ensemble(
            "string_quartet",
            "string quartet: violin I, violin II, viola, cello",
            (
                Part("Violin I", 40, 55, 103, r"viol(in|ino)\s*(i|1)\b(?!i)|^\s*vl\.?\s*(i|1)\s*$"),
                Part("Violin II", 40, 55, 96, r"viol(in|ino)\s*(ii|2)\b|^\s*vl\.?\s*(ii|2)\s*$"),
                Part("Viola", 41, 48, 88, r"viola\b|^\s*vla\.?\s*$"),
                Part("Cello", 42, 36, 81, r"cello|^\s*vc\.?\s*$"),
            ),
        ),
    )
}


def get_ensemble(name: str) -> Ensemble:
    try:
        return ENSEMBLES[name]
    except KeyError:
        raise ValueError(
            f"unknown ensemble {name!r}; choose one of: {', '.join(sorted(ENSEMBLES))}"
        ) from None

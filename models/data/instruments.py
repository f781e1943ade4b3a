"""The instrument vocabulary of the composer: one name per kind of track, with its General MIDI
program, playable range, family and clef, and the rules that map a part name or a GM program from a
file onto it.

Ranges are the professional playable range in MIDI pitch (concert pitch), wide enough that the
music21 corpus's parts sit inside them; the composer's range masks and ``multitrack.transpose`` read
them. ``drums`` is the General MIDI percussion track: its "pitches" are drum sounds, never transposed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Instrument:
    name: str
    program: int  # General MIDI program 0..127 a track of it is written with
    low: int  # lowest playable MIDI pitch
    high: int  # highest playable MIDI pitch
    family: str  # voice, strings, keyboard, woodwind, brass, plucked, percussion, synth
    clef: str  # the clef it is usually written in: treble, alto, bass, grand, percussion


INSTRUMENTS: dict[str, Instrument] = {
    i.name: i
    for i in (
        Instrument("soprano", 52, 57, 84, "voice", "treble"),
        Instrument("alto", 52, 52, 77, "voice", "treble"),
        Instrument("tenor", 52, 45, 72, "voice", "treble"),
        Instrument("bass", 52, 34, 67, "voice", "bass"),
        Instrument("voice", 52, 36, 84, "voice", "treble"),
        Instrument("violin", 40, 55, 103, "strings", "treble"),
        Instrument("viola", 41, 48, 91, "strings", "alto"),
        Instrument("cello", 42, 36, 84, "strings", "bass"),
        Instrument("contrabass", 43, 28, 67, "strings", "bass"),
        Instrument("strings", 48, 28, 103, "strings", "grand"),
        Instrument("piano", 0, 21, 108, "keyboard", "grand"),
        Instrument("harpsichord", 6, 29, 89, "keyboard", "grand"),
        Instrument("organ", 19, 24, 103, "keyboard", "grand"),
        Instrument("mallets", 11, 48, 96, "percussion", "treble"),
        Instrument("piccolo", 72, 74, 108, "woodwind", "treble"),
        Instrument("flute", 73, 59, 98, "woodwind", "treble"),
        Instrument("recorder", 74, 60, 98, "woodwind", "treble"),
        Instrument("oboe", 68, 58, 93, "woodwind", "treble"),
        Instrument("english_horn", 69, 52, 84, "woodwind", "treble"),
        Instrument("clarinet", 71, 50, 94, "woodwind", "treble"),
        Instrument("bassoon", 70, 34, 77, "woodwind", "bass"),
        Instrument("saxophone", 65, 44, 84, "woodwind", "treble"),
        Instrument("horn", 60, 34, 79, "brass", "treble"),
        Instrument("trumpet", 56, 52, 86, "brass", "treble"),
        Instrument("trombone", 57, 34, 77, "brass", "bass"),
        Instrument("tuba", 58, 26, 67, "brass", "bass"),
        Instrument("brass", 61, 26, 86, "brass", "grand"),
        Instrument("timpani", 47, 36, 60, "percussion", "bass"),
        Instrument("harp", 46, 23, 104, "plucked", "grand"),
        Instrument("guitar", 24, 40, 88, "plucked", "treble"),
        Instrument("bass_guitar", 33, 28, 67, "plucked", "bass"),
        Instrument("synth_lead", 80, 36, 96, "synth", "treble"),
        Instrument("synth_pad", 88, 24, 108, "synth", "grand"),
        Instrument("drums", 0, 27, 87, "percussion", "percussion"),
    )
}

# Part-name patterns, tried in order (more specific first: "contrabass" before "bass", "english
# horn" before "horn", "tenor sax" before "tenor"). Names in English, Italian, German and the
# Latin voice names of Renaissance prints.
_NAME_PATTERNS: tuple[tuple[str, str], ...] = (
    ("drums", r"drum|percussion|batterie|schlagzeug|kit\b"),
    ("timpani", r"timpan|kettle|pauke"),
    ("saxophone", r"sax"),
    ("english_horn", r"english\s*horn|cor\s*anglais|corno\s*inglese|englischhorn"),
    ("bass_guitar", r"(electric|fretless|e\.|synth|slap)\s*bass|bass\s*guitar|\bbajo\b"),
    ("contrabass", r"contrabass|double\s*bass|kontrabass|contrabbasso|string\s*bass|\bcb\.?$|violone"),
    ("bassoon", r"bassoon|fagott|fagotto"),
    ("cello", r"cello|violoncell|\bvc\.?\b|\bvlc\.?\b"),
    ("viola", r"viola|\bvla\.?\b|bratsche|alto\s*viol"),
    ("violin", r"violin|violino|\bvl\.?\b|\bvn\.?\b|fiddle|geige"),
    ("strings", r"strings|streicher|archi\b"),
    ("piccolo", r"piccolo|ottavino"),
    ("recorder", r"recorder|blockfl|flauto\s*dolce"),
    ("flute", r"flute|flauto|flöte|flote|\bfl\.?\b"),
    ("oboe", r"oboe|hautbois|\bob\.?\b"),
    ("clarinet", r"clarinet|klarinett|\bcl\.?\b"),
    ("horn", r"horn|corno|\bcor\b|\bhn\.?\b"),
    ("trumpet", r"trumpet|tromba|trompete|clarino|\btpt\.?\b"),
    ("trombone", r"trombone|posaune|sackbut|\btbn\.?\b"),
    ("tuba", r"tuba"),
    ("harpsichord", r"harpsichord|cembalo|clavecin|continuo"),
    ("organ", r"organ|orgel|organo"),
    ("piano", r"piano|klavier|keyboard|\bpf\.?\b"),
    ("harp", r"harp|arpa|harfe"),
    ("guitar", r"guitar|gitarre|chitarra|lute|liuto|laute|theorbo|banjo|mandolin"),
    ("mallets", r"vibraphone|marimba|xylophone|glockenspiel|celesta|bells"),
    ("soprano", r"sopran|cantus|superius|discantus|\bcanto\b|treble|^\s*s\.?\s*\d*\s*$"),
    ("alto", r"\balt(o|us)?\b|contratenor|counter-?tenor|contra\b|^\s*a\.?\s*\d*\s*$"),
    ("tenor", r"tenor|^\s*t\.?\s*\d*\s*$"),
    ("bass", r"\bbass(us|o|e)?\b|bassus|^\s*b\.?\s*\d*\s*$"),
    ("voice", r"voice|vocal|voce|stimme|choir|chorus|\bchor\b|quintus|sextus|septimus|vagans|melody"),
)

# The SATB voice for a part sung at a median pitch, by the centre of each voice's range.
_VOICE_CENTRES = {"soprano": 70, "alto": 63, "tenor": 57, "bass": 50}


def _from_program(program: int) -> str:
    """The vocabulary instrument for a General MIDI program (by its GM family)."""
    exact = {6: "harpsichord", 7: "harpsichord", 40: "violin", 41: "viola", 42: "cello", 43: "contrabass",
             46: "harp", 47: "timpani", 56: "trumpet", 57: "trombone", 58: "tuba", 59: "trumpet",
             60: "horn", 68: "oboe", 69: "english_horn", 70: "bassoon", 71: "clarinet", 72: "piccolo",
             73: "flute", 74: "recorder"}
    if program in exact:
        return exact[program]
    families = ("piano", "mallets", "organ", "guitar", "bass_guitar", "strings", "strings", "brass",
                "saxophone", "flute", "synth_lead", "synth_pad", "synth_pad", "guitar", "mallets",
                "synth_pad")
    family = families[program // 8]
    if program in (52, 53, 54):
        return "voice"
    return family


def voice_for_pitch(median_pitch: float) -> str:
    """The SATB voice whose range centre is nearest a part's median MIDI pitch."""
    return min(_VOICE_CENTRES, key=lambda v: abs(_VOICE_CENTRES[v] - median_pitch))


def instrument_by_name(part_name: str) -> str | None:
    """The instrument a part name says, or None where it names none."""
    name = (part_name or "").strip().lower()
    return next((inst for inst, pattern in _NAME_PATTERNS if re.search(pattern, name)), None)


def instrument_for(part_name: str, program: int | None, *, is_drum: bool = False,
                   median_pitch: float | None = None, vocal: bool = False) -> str:
    """The vocabulary name for a track: by its part name where the name says an instrument or
    voice, else by its GM program; a generic voice ("Quintus", "Voice") becomes the SATB voice of
    its register when ``median_pitch`` is given. ``vocal`` says the source is vocal music (chorales,
    Renaissance polyphony): an unnamed part is then a voice by register instead of a piano.

    Notation files rarely set a program (music21 reports 0 or None), so a name that matches wins
    over program 0; a MIDI program above 7 (not a piano) wins over a name that only says a voice
    part, since pop MIDI files name their bass guitar "Bass".
    """
    if program is not None and not 0 <= int(program) <= 127:
        raise ValueError(f"program must be a General MIDI program 0..127 or None, got {program}")
    if is_drum:
        return "drums"
    by_name = instrument_by_name(part_name)
    if by_name in _VOICE_CENTRES or by_name == "voice":
        if program is not None and int(program) >= 8 and not 52 <= int(program) <= 54:
            return _from_program(int(program))
        if by_name == "voice" and median_pitch is not None:
            return voice_for_pitch(median_pitch)
        return by_name
    if by_name is not None:
        return by_name
    if vocal:
        return voice_for_pitch(median_pitch) if median_pitch is not None else "voice"
    if program is not None:
        return _from_program(int(program))
    return "piano"

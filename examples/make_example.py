"""Write ``examples/piano.mid``: a short four-voice chorale in G major, written for this project.

Sixteen bars of 4/4 in four phrases: a half cadence in G, a modulation to D with a perfect cadence,
a turn to E minor ending on its dominant, and a perfect cadence home in G. All four voices go to
one piano track, the shape that the arranging models take as input.

    python examples/make_example.py            # rewrites examples/piano.mid, byte for byte the same
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

# Run as a script from anywhere: make the repository root importable without installing.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.midi import write_midi  # noqa: E402
from bridge.score import KEY_DTYPE, METER_DTYPE, TEMPO_DTYPE, Score, Track, make_notes, sort_order  # noqa: E402

RESOLUTION = 480
QPM = 80.0
FINAL_QPM = 72.0  # a small ritardando into the last bar
BEATS_PER_BAR = 4
OUT_PATH = Path(__file__).resolve().parent / "piano.mid"

# One line per phrase, bars split by "|". A token is a pitch with an optional length suffix:
# none = quarter, "/8" = eighth, "*2" = half.
VOICES = {
    "soprano": """
        D5 C5 B4 A4 | G4 A4 B4 C5 | D5 E5 D5 C5 | B4*2 A4*2
        A4 B4 C#5 D5 | E5 D5 C#5 D5 | B4 C#5 D5 E5 | F#5 E5 D5*2
        D5 C5 B4 A4 | G4 F#4 G4 A4 | B4 C5 B4 A4 | G4*2 F#4*2
        G4 A4 B4 C5 | D5 C5 B4 E5 | D5 G5 E5 C5 | B4 A4 G4*2
    """,
    "alto": """
        G4 G4 G4 F#4 | E4 E4/8 F#4/8 G4 G4 | G4 G4 F#4 F#4 | G4*2 F#4*2
        E4/8 F#4/8 G4 E4 F#4 | G4 A4 A4 A4 | G4 G4 F#4 G4 | A4 A4 F#4*2
        G4/8 F#4/8 E4 E4 D#4 | E4 B3 E4 E4/8 F#4/8 | G4 E4 D#4 D#4 | E4*2 D#4*2
        E4 D4 G4 G4 | G4 E4/8 F#4/8 G4 G4 | G4 G4 G4 A4 | G4 F#4 D4*2
    """,
    "tenor": """
        B3 E4 D4 D4/8 C4/8 | B3 C4 D4 E4 | D4 C4/8 B3/8 A3 A3 | D4*2 D4*2
        C4 D4 A3 A3 | B3/8 C#4/8 D4 E4 A3 | B3 E4 D4 B3/8 C#4/8 | D4 C#4 A3*2
        G3 G3 G3/8 A3/8 B3 | B3 F#3 B3 C4 | D4 A3/8 G3/8 F#3 B3 | B3*2 B3*2
        B3 A3 D4 C4 | B3 C4 D4 C4 | D4 E4 E4 E4 | D4 C4 B3*2
    """,
    "bass": """
        G2 C3 G2 D3 | E3/8 D3/8 C3 G2 C3 | B2 C3 D3 D3 | G2*2 D3*2
        A2 G2 A2 D3 | G3 F#3 A3/8 G3/8 F#3 | G3 A3 F#3 E3 | A2 A2 D3*2
        B2 C3/8 D3/8 E3 F#3 | E3 D#3 E3/8 D3/8 C3 | G2 A2 B2 B2 | E3*2 B2*2
        E3 F#3 G3/8 F#3/8 E3 | B2 A2 G2 C3 | B2 E3/8 D3/8 C3 C3 | D3 D3 G2*2
    """,
}
# The melody sings over the inner voices; the bass is a little stronger than alto and tenor.
VOICE_VELOCITY = {"soprano": 82, "alto": 62, "tenor": 62, "bass": 70}
PHRASE_ACCENT = (0, 4, -6, 2)  # velocity offset per phrase: brighter in D, darker in E minor
VOICE_RANGES = {"soprano": (60, 81), "alto": (53, 74), "tenor": (48, 69), "bass": (40, 64)}

STEPS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
LENGTHS_BEATS = {"": 1.0, "/8": 0.5, "*2": 2.0}


def parse_pitch(name: str) -> int:
    """ "C#5" -> 73 (C4 is middle C, 60)."""
    step, accidental, octave = name[0], name[1:-1], int(name[-1])
    return 12 * (octave + 1) + STEPS[step] + accidental.count("#") - accidental.count("b")


def split_bars(text: str) -> list[list[str]]:
    return [bar.split() for line in text.strip().splitlines() for bar in line.split("|")]


def parse_voice(voice: str, text: str, velocity: int) -> np.ndarray:
    times, pitches, durations, velocities = [], [], [], []
    for bar_index, tokens in enumerate(split_bars(text)):
        beat = 0.0
        for token in tokens:
            suffix = token[-2:] if token[-2:] in LENGTHS_BEATS else ""
            length = LENGTHS_BEATS[suffix]
            pitch = parse_pitch(token[: len(token) - len(suffix)])
            low, high = VOICE_RANGES[voice]
            if not low <= pitch <= high:
                raise ValueError(f"{voice} bar {bar_index + 1}: {token} is outside the range {low}..{high}")
            times.append(round((bar_index * BEATS_PER_BAR + beat) * RESOLUTION))
            pitches.append(pitch)
            durations.append(round(length * RESOLUTION))
            velocities.append(velocity + PHRASE_ACCENT[bar_index // 4])
            beat += length
        if beat != BEATS_PER_BAR:
            raise ValueError(f"{voice} bar {bar_index + 1} holds {beat} beats, expected {BEATS_PER_BAR}")
    return make_notes(times, pitches, durations, velocities)


def build_score() -> Score:
    notes = np.concatenate([parse_voice(v, text, VOICE_VELOCITY[v]) for v, text in VOICES.items()])
    last_bar = (len(split_bars(VOICES["soprano"])) - 1) * BEATS_PER_BAR * RESOLUTION
    return Score(
        resolution=RESOLUTION,
        tracks=[Track(name="Piano", program=0, notes=notes[sort_order(notes)])],
        tempos=np.array([(0, QPM), (last_bar, FINAL_QPM)], TEMPO_DTYPE),
        meters=np.array([(0, 4, 4)], METER_DTYPE),
        keys=np.array([(0, 1, 0)], KEY_DTYPE),  # G major
        title="Chorale in G",
    )


def main(path: Path = OUT_PATH) -> Path:
    score = build_score()
    write_midi(score, path)
    print(f"wrote {path}: {score.n_notes} notes, {score.seconds():.1f} s")
    return path


if __name__ == "__main__":
    main()

"""``deep-musician perform``: a score to audio with the engine's performer; also what
``arrange --render`` renders with (`perform_score`), so both give the same audio for the same parts."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.cli import common
from engine.cli.common import CliError, add_verb, engine_options

if TYPE_CHECKING:
    import numpy as np

DEFAULT_SAMPLE_RATE_HZ = 48_000


@dataclass(frozen=True)
class Performance:
    """A performed score, in memory until written."""

    audio: np.ndarray  # (2, n) float32
    sample_rate_hz: int
    n_notes: int
    n_parts: int

    @property
    def seconds(self) -> float:
        return self.audio.shape[1] / self.sample_rate_hz

    def write_wav(self, path: Path) -> None:
        """A 32-bit float stereo WAV file."""
        import numpy as np
        from scipy.io import wavfile

        wavfile.write(path, self.sample_rate_hz, np.ascontiguousarray(self.audio.T))


def performance_input(score) -> tuple:
    """(notes, parts, programs) for a perform request: the pitched tracks as parts, notes on a
    millisecond timeline (1000 ticks per quarter at 60 qpm) so the score's tempo map is followed."""
    import numpy as np

    from bridge.score import tick_to_seconds
    from engine.tasks.perform import MAX_PARTS

    tracks = [t for t in score.pitched_tracks() if len(t.notes)]
    if not tracks:
        raise CliError("the score has no pitched notes to perform (drum tracks are not performed)")
    if len(tracks) > MAX_PARTS:
        raise CliError(f"the score has {len(tracks)} pitched tracks; the SoundFont performer plays at "
                       f"most {MAX_PARTS}; merge some tracks first")
    notes = np.concatenate([t.notes for t in tracks])
    parts = np.concatenate([np.full(len(t.notes), k, np.uint8) for k, t in enumerate(tracks)])
    on = np.rint(tick_to_seconds(score, notes["time"]) * 1000).astype(np.int64)
    off = np.rint(tick_to_seconds(score, notes["time"] + notes["duration"]) * 1000).astype(np.int64)
    notes = notes.copy()
    notes["time"], notes["duration"] = on, np.maximum(off - on, 1)
    return notes, parts, [int(t.program) for t in tracks]


def perform_score(score, args: argparse.Namespace, sample_rate_hz: int) -> Performance:
    """Perform every pitched track with its General MIDI program, into memory: through the engine at
    `args.engine` (its perform job, streamed), else embedded (engine.tasks.perform with a FluidSynth synth).
    No FluidSynth or SoundFont is a CliError."""
    import numpy as np
    from tqdm import tqdm

    notes, parts, programs = performance_input(score)
    with tqdm(total=100, unit="%", desc="performing", disable=not sys.stderr.isatty()) as bar:
        def progress(fraction: float, _: str = "") -> None:
            bar.update(round(100 * fraction) - bar.n)

        if args.engine:
            with common.engine_session(args) as client:
                audio = client.perform(notes, sample_rate_hz, parts, resolution=1000, qpm=60.0,
                                       programs=programs, on_progress=progress).audio
        else:
            from bridge.synth import Synth, SynthUnavailable
            from engine.tasks.perform import render_chunks

            try:
                with Synth(sample_rate_hz) as synth:
                    end = int((notes["time"] + notes["duration"]).max())
                    chunks = []
                    for chunk in render_chunks(synth, notes, parts.astype(np.int64), programs, 1000, 60.0):
                        chunks.append(chunk)
                        progress(min(1.0, sum(c.shape[1] for c in chunks) / sample_rate_hz * 1000 / end))
            except (SynthUnavailable, FileNotFoundError) as exc:  # no library, no SoundFont file
                raise CliError(str(exc)) from None
            audio = np.concatenate(chunks, axis=1)
    return Performance(audio, sample_rate_hz, len(notes), len(programs))


def cmd_perform(args: argparse.Namespace) -> int:
    """Render a MIDI or MusicXML file to audio (WAV) with the engine's performer: every pitched track
    with its own General MIDI instrument (a SoundFont through FluidSynth until a neural performer is
    installed)."""
    src, out = Path(args.input), Path(args.output)
    plot = Path(args.plot) if args.plot else None
    if out.suffix.lower() != ".wav":
        raise CliError(f"output {out} must end in .wav")
    common.check_outputs([out, plot], args.force)
    score = common.read_input(src)
    performance = perform_score(score, args, args.sample_rate)
    writes = [(out, performance.write_wav)]
    if plot:
        from bridge.plot import plot_spectrogram

        writes.append((plot, lambda p: plot_spectrogram(performance.audio, args.sample_rate, p,
                                                        title=src.name)))
    common.write_all(writes)
    print(f"performed {performance.n_notes} notes in {performance.n_parts} parts "
          f"({performance.seconds:.1f} s, {args.sample_rate} Hz) -> {out}")
    if plot:
        print(f"spectrogram -> {plot}")
    return 0


def _arguments(pf: argparse.ArgumentParser) -> None:
    pf.add_argument("input", help="MIDI (.mid) or MusicXML (.xml, .mxl), Humdrum or ABC file")
    pf.add_argument("-o", "--output", required=True, help="output .wav (32-bit float, stereo)")
    pf.add_argument("--sample-rate", type=int, default=DEFAULT_SAMPLE_RATE_HZ, help="samples per second")
    pf.add_argument("--plot", metavar="PNG", help="also draw the waveform and spectrogram")
    pf.add_argument("--force", action="store_true", help="overwrite existing output files")
    engine_options(pf, default_endpoint=False)


def register(sub: argparse._SubParsersAction) -> None:
    add_verb(sub, "perform", cmd_perform, "render a MIDI or MusicXML file to audio (WAV)", _arguments)

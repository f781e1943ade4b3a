"""``deep-musician perform``: a score to audio with the engine's performer; also what
``arrange --render`` renders with (`perform_score`), so both give the same audio for the same parts.

``perform`` streams the audio into the output file chunk by chunk as it is rendered (embedded or
from the engine), so its memory stays flat whatever the length; the file is staged beside the
output and put in place only when the render succeeded (common.write_all).

Levels: the audio comes out at ``--loudness`` LUFS integrated (EBU R128; default -18) with its true
peak at most -1 dBTP (engine.tasks.perform.levelled: the region is measured in a first render
pass, then rendered again with the gain), or at FluidSynth's own level with ``--loudness raw``.

``--renderer neural`` performs with the neural performer (models.performer.neural: the shipped
synthesis model and vocoder) at its own sample rate, 22,050 Hz (the default then; another
``--sample-rate``, such as a DAW's 44,100 or 48,000, is resampled from it before levelling), with
``--style`` (a performer it was trained on), ``--latent`` (an integer seed, or comma-separated
numbers), ``--synth`` (a shipped synthesis model's name) and ``--vocoder`` (a shipped vocoder's name)."""
from __future__ import annotations

import argparse
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from engine.cli import common
from engine.cli.common import CliError, add_verb, engine_options

if TYPE_CHECKING:
    import numpy as np

DEFAULT_SAMPLE_RATE_HZ = 48_000
NEURAL_SAMPLE_RATE_HZ = 22_050  # the rate the neural performer's models were trained at (no resampling)
CHANNELS = 2
FRAME_BYTES = CHANNELS * 4  # stereo float32
# RIFF/WAVE as scipy.io.wavfile writes float32: a fmt chunk of 18 bytes (IEEE float, cbSize 0),
# a fact chunk (frames), then the data chunk
HEADER = struct.Struct("<4sI4s4sIHHIIHHH4sII4sI")
MAX_DATA_BYTES = 2**32 - 1 - HEADER.size  # RIFF sizes are 32-bit: about 3.1 hours at 48 kHz


class WavWriter:
    """A 32-bit float stereo WAV file written chunk by chunk: each chunk goes to its start sample
    (a job the engine restarts sends its audio again from 0), and the sizes are filled in on close."""

    def __init__(self, path: Path, sample_rate_hz: int) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.frames = 0
        self._file: BinaryIO = open(path, "wb")  # noqa: SIM115 (closed by close())
        self._write_header()

    def _write_header(self) -> None:
        sr, data_bytes = self.sample_rate_hz, self.frames * FRAME_BYTES
        self._file.seek(0)
        self._file.write(HEADER.pack(b"RIFF", HEADER.size - 8 + data_bytes, b"WAVE", b"fmt ", 18, 3,
                                     CHANNELS, sr, sr * FRAME_BYTES, FRAME_BYTES, 32, 0, b"fact", 4,
                                     self.frames, b"data", data_bytes))

    def write(self, start_sample: int, audio: np.ndarray) -> None:
        """Write (2, n) float32 audio at `start_sample`."""
        import numpy as np

        end = start_sample + audio.shape[1]
        if end * FRAME_BYTES > MAX_DATA_BYTES:
            hours = MAX_DATA_BYTES / FRAME_BYTES / self.sample_rate_hz / 3600
            raise CliError(f"the performance is longer than a WAV file can hold ({hours:.1f} hours at "
                           f"{self.sample_rate_hz} Hz); perform it in parts")
        self._file.seek(HEADER.size + start_sample * FRAME_BYTES)
        self._file.write(np.ascontiguousarray(audio.T, np.float32).tobytes())
        self.frames = end  # a restart writes from 0 again: the file ends where the last chunk ends

    def close(self) -> None:
        self._file.truncate(HEADER.size + self.frames * FRAME_BYTES)
        self._write_header()
        self._file.close()

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
        with WavWriter(path, self.sample_rate_hz) as wav:
            wav.write(0, self.audio)


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


def loudness_of(args: argparse.Namespace) -> float | None:
    """The target loudness (LUFS) asked for, or None for the raw level; commands without the flag
    (arrange --render) get the default."""
    from engine.tasks.perform import DEFAULT_LOUDNESS_LUFS

    return getattr(args, "loudness", DEFAULT_LOUDNESS_LUFS)


def loudness_arg(text: str) -> float | None:
    """--loudness: a level in LUFS, or `raw`."""
    from engine.tasks.perform import PerformInputError, check_loudness

    if text.strip().lower() == "raw":
        return None
    try:
        value = float(text)
        check_loudness(value)
    except ValueError as exc:
        reason = str(exc) if isinstance(exc, PerformInputError) else f"got {text!r}"
        raise argparse.ArgumentTypeError(f"--loudness takes a level in LUFS such as -18, or raw; "
                                         f"{reason}") from None
    return value


def score_markings(src: Path, score) -> np.ndarray | None:
    """A notation file's markings (``expression.read_marked``: dynamics, hairpins, staccato, tenuto,
    accents, slurs, fermatas), one (dynamic, hairpin + 1, marks) row per note of
    ``performance_input``'s notes (matched by part, onset and pitch; an unmatched note plays at mf,
    unmarked). None for MIDI, whose velocities already say how loud each note is."""
    import numpy as np
    from music21 import converter

    from bridge.scorefile import MIDI_SUFFIXES
    from models.performer.expression import DEFAULT_DYNAMIC, markings_of, read_marked

    if src.suffix.lower() in MIDI_SUFFIXES:
        return None
    try:
        marked, _ = read_marked(converter.parse(str(src)))
    except Exception as exc:  # read_score read it: music21 again is unlikely to fail, but say so
        print(f"warning: the markings of {src.name} could not be read ({exc}); playing its notes "
              "without them", file=sys.stderr)
        return None
    rows = markings_of(marked)
    by_part, anywhere = {}, {}
    for note, row in zip(marked, rows):
        tick = round(float(note["onset_beats"]) * score.resolution)
        by_part.setdefault((int(note["part"]), tick, int(note["pitch"])), row)
        anywhere.setdefault((tick, int(note["pitch"])), row)
    plain = np.array([DEFAULT_DYNAMIC, 1, 0], np.uint8)
    out = [by_part.get((k, t, p), anywhere.get((t, p), plain))
           for k, track in enumerate(t for t in score.pitched_tracks() if len(t.notes))
           for t, p in zip(track.notes["time"].tolist(), track.notes["pitch"].tolist())]
    return np.stack(out).astype(np.uint8) if out else None


def performance_chunks(score, args: argparse.Namespace, sample_rate_hz: int,
                       markings: np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Perform every pitched track with its General MIDI program: (start sample, (2, n) float32
    audio) chunks as they are rendered, through the engine at `args.engine` (its perform job,
    streamed; a job restarted on a lost engine starts again at 0), else embedded
    (engine.tasks.perform with a FluidSynth synth). ``markings`` (``score_markings``) are played by
    either renderer. No FluidSynth or SoundFont is a CliError."""
    import numpy as np
    from tqdm import tqdm

    notes, parts, programs = performance_input(score)
    loudness = loudness_of(args)
    level = {"raw_level": True} if loudness is None else {"loudness_lufs": loudness}
    neural = getattr(args, "renderer", "soundfont") == "neural"
    latent = getattr(args, "latent", None)
    if neural:
        level["renderer"] = "neural"
        if getattr(args, "style", None):
            level["style"] = args.style
        if latent is not None:
            level["latent" if isinstance(latent, list) else "latent_seed"] = latent
        if getattr(args, "vocoder", None):
            level["vocoder"] = args.vocoder
        if getattr(args, "synth", None):
            level["model"] = args.synth
    end_ms = int((notes["time"] + notes["duration"]).max())
    with tqdm(total=100, unit="%", desc="performing", disable=not sys.stderr.isatty()) as bar:
        def progress(fraction: float, _: str = "") -> None:
            bar.update(round(100 * fraction) - bar.n)

        if args.engine:
            with common.engine_session(args) as client:
                yield from client.perform_chunks(notes, sample_rate_hz, parts, resolution=1000, qpm=60.0,
                                                 programs=programs, on_progress=progress,
                                                 markings=markings, **level)
            return
        from bridge.synth import Synth, SynthUnavailable
        from engine.tasks.perform import Spooled, levelled, played_markings, render_chunks
        from engine.tasks.perform_neural import neural_chunks

        played = notes if markings is None else played_markings(notes, parts, markings, 1000, 60.0)

        def render() -> Iterator[np.ndarray]:
            with Synth(sample_rate_hz) as synth:
                yield from render_chunks(synth, played, parts.astype(np.int64), programs, 1000, 60.0)

        if neural:
            renderer, performer, z = neural_renderer(args, sample_rate_hz)
            render = Spooled(lambda: neural_chunks(renderer, notes, parts.astype(np.int64), 1000, 60.0,
                                                   performer, z, sample_rate_hz, markings))

        try:
            done = 0
            for chunk in levelled(render, sample_rate_hz, loudness):
                yield done, chunk
                done += chunk.shape[1]
                progress(min(1.0, done / sample_rate_hz * 1000 / end_ms))
        except (SynthUnavailable, FileNotFoundError) as exc:  # no library, no SoundFont file
            raise CliError(str(exc)) from None


def neural_renderer(args: argparse.Namespace, sample_rate_hz: int) -> tuple:
    """(the shipped neural performer, performer index, latent z) for --style and --latent, or a
    CliError saying what is allowed."""
    from engine.tasks.perform_neural import neural_options
    from models.performer.neural import NeuralRenderer, synth_file, vocoder_file

    try:
        renderer = NeuralRenderer.load(synth_file(getattr(args, "synth", None)),
                                       vocoder_file(getattr(args, "vocoder", None)))
        return (renderer, *neural_options(renderer, sample_rate_hz, args.style, args.latent))
    except ValueError as exc:
        raise CliError(str(exc)) from None


def latent_arg(text: str) -> int | list[float]:
    """--latent: an integer seed (a draw from the style prior) or comma-separated numbers."""
    try:
        if "," not in text and "." not in text and "e" not in text.lower():
            seed = int(text)
            if seed < 0:
                raise ValueError
            return seed
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--latent takes an integer seed >= 0 or comma-separated numbers, "
                                         f"got {text!r}") from None


def perform_score(score, args: argparse.Namespace, sample_rate_hz: int) -> Performance:
    """The performance of `score` (performance_chunks) in memory, for arrange --render."""
    import numpy as np

    chunks: list[np.ndarray] = []
    for start, audio in performance_chunks(score, args, sample_rate_hz):
        if start == 0:
            chunks = []  # a restarted job sends everything again
        chunks.append(audio)
    audio = np.concatenate(chunks, axis=1) if chunks else np.zeros((CHANNELS, 0), np.float32)
    notes, _, programs = performance_input(score)
    return Performance(audio, sample_rate_hz, len(notes), len(programs))


def cmd_perform(args: argparse.Namespace) -> int:
    """Render a MIDI or MusicXML file to audio (WAV) with the engine's performer: every pitched track
    with its own General MIDI instrument (a SoundFont through FluidSynth until a neural performer is
    installed)."""
    src, out = Path(args.input), Path(args.output)
    plot = Path(args.plot) if args.plot else None
    if out.suffix.lower() != ".wav":
        raise CliError(f"output {out} must end in .wav")
    if args.renderer != "neural" and (args.style or args.latent is not None or args.vocoder or args.synth):
        raise CliError("--style, --latent, --synth and --vocoder choose the neural performer's playing; "
                       "add --renderer neural")
    if args.renderer == "neural" and not getattr(args, "sample_rate_given", False):
        args.sample_rate = NEURAL_SAMPLE_RATE_HZ
    common.check_outputs([out, plot], args.force)
    score = common.read_input(src)
    notes, _, programs = performance_input(score)  # checked before any file is made
    markings = score_markings(src, score) if getattr(args, "markings", True) else None
    if args.renderer == "neural" and not args.engine:
        neural_renderer(args, args.sample_rate)  # style, latent and rate checked before any file is made
    staged: dict[str, Path] = {}

    def render(path: Path) -> None:  # streamed into the staged output file
        staged["wav"] = path
        with WavWriter(path, args.sample_rate) as wav:
            for start, audio in performance_chunks(score, args, args.sample_rate, markings):
                wav.write(start, audio)
        staged["frames"] = wav.frames

    writes = [(out, render)]
    if plot:
        writes.append((plot, lambda p: _plot(staged["wav"], args.sample_rate, p, src.name)))
    common.write_all(writes)
    level = "the raw level" if args.loudness is None else f"{args.loudness:g} LUFS"
    marked = "" if markings is None else ", playing the score's dynamics and articulations"
    print(f"performed {len(notes)} notes in {len(programs)} parts{marked} "
          f"({staged['frames'] / args.sample_rate:.1f} s, {args.sample_rate} Hz, {level}) -> {out}")
    if plot:
        print(f"spectrogram -> {plot}")
    return 0


def _plot(wav: Path, sample_rate_hz: int, png: Path, title: str) -> None:
    """The spectrogram of a written WAV, read through a memory map rather than into memory."""
    import numpy as np

    from bridge.plot import plot_spectrogram

    audio = np.memmap(wav, np.float32, "r", offset=HEADER.size).reshape(-1, CHANNELS).T
    plot_spectrogram(audio, sample_rate_hz, png, title=title)


class _Given(argparse.Action):
    """Stores the value and notes that it was given (the neural performer's default rate differs)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values)
        setattr(namespace, f"{self.dest}_given", True)


def _arguments(pf: argparse.ArgumentParser) -> None:
    pf.add_argument("input", help="MIDI (.mid) or MusicXML (.xml, .mxl), Humdrum or ABC file")
    pf.add_argument("-o", "--output", required=True, help="output .wav (32-bit float, stereo)")
    pf.add_argument("--sample-rate", type=int, default=DEFAULT_SAMPLE_RATE_HZ, action=_Given,
                    help=f"samples per second (default {DEFAULT_SAMPLE_RATE_HZ}; the neural performer's "
                         f"{NEURAL_SAMPLE_RATE_HZ}, the rate it renders at: another is resampled)")
    pf.add_argument("--renderer", choices=("soundfont", "neural"), default="soundfont",
                    help="FluidSynth with a General MIDI SoundFont, or the neural performer "
                         "(synthesis model + vocoder; default %(default)s)")
    pf.add_argument("--style", metavar="NAME",
                    help="the neural performer's style: a performer it was trained on (piano, organ, "
                         "strings, choir)")
    pf.add_argument("--latent", type=latent_arg, metavar="SEED|X,Y,...",
                    help="the neural performer's style latent: a seed to draw it from, or its numbers, "
                         "comma-separated, as many as the model's latent size (8) "
                         "(default: zeros, the performer's typical playing)")
    pf.add_argument("--synth", metavar="NAME",
                    help="the neural performer's synthesis model: performer-synth-expressive (the "
                         "default: plays the dynamics and single lines) or performer-synth (the first, "
                         "trained on plain chorales, every note at mf: docs/performer.md)")
    pf.add_argument("--vocoder", metavar="NAME",
                    help="the vocoder that turns the neural performer's spectrogram into audio: "
                         "performer-vocoder-pghi (the phase computed from the spectrogram), "
                         "performer-vocoder-gl (Griffin-Lim) or performer-vocoder (the trained GAN "
                         "vocoder) (default: the one docs/performer.md names)")
    pf.add_argument("--loudness", type=loudness_arg, default=-18.0, metavar="LUFS|raw",
                    help="integrated loudness of the output (EBU R128), true peak at most -1 dBTP; "
                         "raw: the renderer's own level (default %(default)s)")
    pf.add_argument("--no-markings", dest="markings", action="store_false",
                    help="play a notation file's notes without its dynamics and articulations (every "
                         "note as written, at one velocity)")
    pf.add_argument("--plot", metavar="PNG", help="also draw the waveform and spectrogram")
    pf.add_argument("--force", action="store_true", help="overwrite existing output files")
    engine_options(pf, default_endpoint=False)


def register(sub: argparse._SubParsersAction) -> None:
    add_verb(sub, "perform", cmd_perform, "render a MIDI or MusicXML file to audio (WAV)", _arguments)

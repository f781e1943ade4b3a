"""The neural performer: notes -> the synthesis model's log-mel -> the vocoder's audio.

    renderer = NeuralRenderer.load()              # the shipped DEFAULT_SYNTH + DEFAULT_VOCODER
    audio = renderer.render(notes, qpm, performer="piano", latent=3)   # float32 mono, 22,050 Hz

``notes`` are performed notes (``expression.PERFORMED_DTYPE``: the times they sound, in seconds) or
score notes (``MARKED_DTYPE``, beats at ``qpm``). Score notes are performed first: by the
alignment model when the renderer has one (``align_path``: Deep Performer's chain, score timing to
performed timing), else at the score's timing; they play at their own velocities. A DAW region or a
MIDI file is already a timeline, so the engine sends score notes without an aligner.

Long scores render in chunks of ``chunk_frames`` mel frames, so memory stays flat whatever the
length. Chunking cannot change the result, only where the work is cut:

- the mel comes from the synthesis model's windows on one grid fixed by the whole score
  (``synth_model.seam_windows``: 256 frames, 32 of context each side, each window owns its middle
  and hands over to the next linearly over ``SEAM_FADE`` frames each side of a seam, where a cut
  re-attacked held notes), so a frame's value does not depend on which chunk asked for it; the
  rise limit (``rise_limit.py``: a band rises fast only where a note starts, ``rise_limit``) runs
  from ``LOOKBACK_FRAMES`` before the frames asked for, and agrees with the whole render's unless a
  band has kept rising without a note starting in it for longer than that;
- the vocoder runs on each chunk's frames plus ``VOCODER_MARGIN`` frames each side, more than the
  trained vocoder's receptive field (7 ConvNeXt layers of ±3 frames, and ±2 hops of inverse STFT),
  and consecutive chunks are crossfaded over ``FADE_SAMPLES`` around each join (raised cosine),
  which hides whatever float rounding is left there.

The phase-gradient vocoder (``phase_gradient.py``) is told the notes' harmonics for each chunk
(``harmonic_hz``; ``score_phase``). Griffin-Lim (``griffin_lim.py``) and the phase-gradient vocoder are
the exception: their phase is estimated over the frames they are given, so each chunk gets its own and
chunking changes the samples (not the spectrogram); the crossfade still joins them without a step
(``join_steps``; tests/models/performer/test_neural.py).

``join_steps`` measures the largest sample-to-sample step at the joins beside the largest inside
the chunks.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from models.format import load_frozen
from models.performer.expression import MARKED_DTYPE, MIN_DURATION_S, PERFORMED_DTYPE
from models.performer.features import features
from models.performer.hairpin_gain import hairpin_offsets
from models.performer.phase_gradient import HARMONIC_BINS, harmonic_hz
from models.performer.render import TAIL_S
from models.performer.rise_limit import (
    LEGATO_NATS_PER_FRAME,
    LOOKBACK_FRAMES,
    RISE_NATS_PER_FRAME,
    rise_limited,
    rise_rates,
)
from models.performer.synth_model import SEAM_FADE, blend_windows, run_windows, seam_windows

PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained"
# The synthesis model that plays the markings and single lines (RESULTS: "a corpus held out from every
# rule": on 24 Palestrina Kyries it is heard better than the first model, 1.095 against 1.042 of
# FluidSynth's transcription F1; the rule asked for no less than 0.02 below). ``performer-synth``, the
# first model (plain chorales only, every note at mf), stays shipped and is chosen by name.
DEFAULT_SYNTH = PRETRAINED / "performer-synth-expressive.pt"
# The phase computed from the magnitude's gradients and the score's harmonics plays the most notes
# offline (RESULTS: "a phase computed, not guessed": on the piano 0.83 of FluidSynth's transcription
# F1; Griffin-Lim 16 gave 0.55 over all performers). Live, each block re-renders a short window and
# the phase is carried from window to window (``stream_vocoder``); estimated anew each block it smeared
# the pitch (an A4 read as 467 Hz). Carried Griffin-Lim was the live default until the computed phase
# beat it on held-out soprano lines' pitch and time per block (RESULTS: "live, the computed phase":
# pyin 0.841 against 0.833, 7.5 against 12.8 ms a block; transcription F1 0.755 against 0.444).
DEFAULT_VOCODER = PRETRAINED / "performer-vocoder-pghi.pt"
DEFAULT_LIVE_VOCODER = PRETRAINED / "performer-vocoder-pghi.pt"
DEFAULT_ALIGN = PRETRAINED / "performer-align.pt"
# Live, Griffin-Lim's phase is carried from window to window and each frame is in many windows
# (a 1,024-sample block moves a 0.69 s window by 4 of its 60 frames): a few iterations per window add up
LIVE_GRIFFIN_LIM_ITERS = 4
CHUNK_FRAMES = 1024  # 11.9 s of audio per chunk at 22,050 Hz / hop 256
FIRST_CHUNK_FRAMES = 32  # 0.37 s: a short first chunk, so a stream can start playing sooner
# a band rises fast only where a note starts (rule G of RESULTS.md, "Rises only where a note starts")
DEFAULT_RISE_LIMIT: float | None = RISE_NATS_PER_FRAME
# a hairpin's swell as the SoundFont path plays it (rule H of RESULTS.md, "Hairpins through the neural path")
DEFAULT_HAIRPIN_GAIN = True
# slurred notes come in legato on sustaining performers (rule I of RESULTS.md, "Slurs played legato")
DEFAULT_LEGATO_RATE: float | None = LEGATO_NATS_PER_FRAME
DECAYING = (":piano",)  # performers whose slurred notes are struck anyway: no legato rate
VOCODER_MARGIN = 32  # frames of context each side of a chunk: > the vocoder's receptive field
FADE_SAMPLES = 1024  # crossfade length at each join
ALIGN_MAX_NOTES = 256  # the aligner was trained on crops of at most this many notes
MAX_SECONDS = 4 * 3600.0


def _load(path: str | Path, task: str) -> tuple[object, dict]:
    """A frozen TorchScript model file of ``task`` and its metadata, or a ValueError saying why not."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no {task} model file at {path}")
    try:
        module, meta = load_frozen(path)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path} is not a readable {task} model file ({first}); re-export it or "
                         "restore it from the repository") from None
    if meta.get("task") != task:
        raise ValueError(f"{path} is a {meta.get('task')!r} model, not a {task} model")
    return module, meta


def one_more_slot(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch with one more padding note in every window. The synthesis model's note
    convolutions see one layer of padding (``FFTBlock`` zeroes padded notes before its first
    convolution, not before its second), so a window's output depends on whether the batch padded
    it; with at least one padding slot everywhere it does not, and a window renders the same in any
    batch, chunk or call. (Training batches had both kinds; this is the padded one.)"""
    out = {}
    for key, x in batch.items():
        pad = torch.ones_like(x[:, :1]) if key == "padding" else torch.zeros_like(x[:, :1])
        out[key] = torch.cat([x, pad], dim=1)
    return out


def vocoder_file(name: str | None) -> Path:
    """The shipped vocoder file of a model name (``performer-vocoder``, ``performer-vocoder-gl``,
    ``performer-vocoder-pghi``);
    None: ``DEFAULT_VOCODER``; a ValueError naming the shipped ones for any other name."""
    return _shipped("vocoder", "performer-vocoder*.pt", name, DEFAULT_VOCODER)


def synth_file(name: str | None) -> Path:
    """The shipped synthesis model file of a model name (``performer-synth-expressive``, the default:
    the markings and single lines, docs/performer.md; ``performer-synth``, the first); None:
    ``DEFAULT_SYNTH``; a ValueError naming the shipped ones for any other name."""
    return _shipped("synthesis model", "performer-synth*.pt", name, DEFAULT_SYNTH)


def _shipped(kind: str, pattern: str, name: str | None, default: Path) -> Path:
    if name is None:
        return default
    shipped = sorted(p.stem for p in PRETRAINED.glob(pattern))
    if name not in shipped:
        raise ValueError(f"unknown {kind} {name!r}; the shipped ones are {', '.join(shipped)}")
    return PRETRAINED / f"{name}.pt"


class NeuralRenderer:
    """The synthesis model and the vocoder (and optionally the alignment model), checked to agree
    on the mel settings. Rendering is read-only: worker threads may share one renderer."""

    def __init__(self, synth, synth_meta: dict, vocoder, vocoder_meta: dict, aligner=None,
                 align_meta: dict | None = None) -> None:
        for key in ("sample_rate_hz", "hop"):
            if synth_meta.get(key) != vocoder_meta.get(key):
                raise ValueError(f"the synthesis model ({synth_meta.get('name')}) has {key} "
                                 f"{synth_meta.get(key)} but the vocoder ({vocoder_meta.get('name')}) "
                                 f"has {vocoder_meta.get(key)}; use a vocoder trained on its mels")
        if synth_meta["mel"]["n_mels"] != vocoder_meta["n_mels"]:
            raise ValueError(f"the synthesis model makes {synth_meta['mel']['n_mels']} mel bins but the "
                             f"vocoder reads {vocoder_meta['n_mels']}")
        self.synth, self.vocoder, self.aligner = synth, vocoder, aligner
        self.synth_meta, self.vocoder_meta, self.align_meta = synth_meta, vocoder_meta, align_meta
        # a phase-gradient vocoder hears the notes' harmonics (``phase_gradient.harmonic_hz``); False
        # plays it from the mel alone, as any other vocoder
        settings = vocoder_meta.get("model") or {}
        self.score_phase: bool = settings.get("generator") == "phase-gradient" and "known_hz" in settings
        self.harmonic_bins: int = HARMONIC_BINS  # bins each side of a harmonic that it claims
        self.seam_fade: int = SEAM_FADE  # frames each side of a synthesis window's seam it crossfades over
        # the most a mel band rises per frame away from a starting note's harmonics (``rise_limit``);
        # None lets the model's mel through as it is
        self.rise_limit: float | None = DEFAULT_RISE_LIMIT
        # a hairpin's swell as the SoundFont path plays it, added to the model's mel (``hairpin_gain``)
        self.hairpin_gain: bool = DEFAULT_HAIRPIN_GAIN
        # a slurred note's bands rise at most this fast (nats per frame) on a sustaining performer
        # (``rise_limit.rise_rates``; needs ``rise_limit``); None frees them as any starting note's
        self.legato_rate: float | None = DEFAULT_LEGATO_RATE
        self.sample_rate_hz: int = int(synth_meta["sample_rate_hz"])
        self.hop: int = int(synth_meta["hop"])
        self.frames_per_s = self.sample_rate_hz / self.hop
        self.window = int(synth_meta["window"]["frames"])
        self.context = int(synth_meta["window"]["context_frames"])
        self.latent_dim = int(synth_meta["model"]["latent_dim"])
        self.performers: list[str] = list(synth_meta["performers"])
        self.styles: list[str] = list(synth_meta.get("trained_performers") or self.performers)

    @classmethod
    def load(cls, synth_path: str | Path = DEFAULT_SYNTH, vocoder_path: str | Path | None = DEFAULT_VOCODER,
             align_path: str | Path | None = None) -> NeuralRenderer:
        synth, synth_meta = _load(synth_path, "perform_synth")
        vocoder, vocoder_meta = _load(vocoder_path or DEFAULT_VOCODER, "perform_vocoder")
        aligner, align_meta = _load(align_path, "perform_align") if align_path else (None, None)
        return cls(synth, synth_meta, vocoder, vocoder_meta, aligner, align_meta)

    def stream_vocoder(self):
        """A vocoder for one stream of overlapping windows on one frame grid (a live session):
        ``(mel (n_mels, T), first_frame) -> ((T - 1) * hop,)`` audio. Griffin-Lim carries each
        window's phase into the next (``griffin_lim.CarriedPhase``), the phase-gradient vocoder
        continues it (``phase_gradient.CarriedGradient``); the trained vocoder needs no state."""
        settings = self.vocoder_meta.get("model") or {}
        if settings.get("generator") == "phase-gradient":
            from models.performer.phase_gradient import CarriedGradient, PhaseGradient

            return CarriedGradient(PhaseGradient(int(settings["iters"]), float(settings["momentum"]),
                                                 float(settings["tol_db"]), bool(settings.get("parabolic")),
                                                 bool(settings.get("split_known")),
                                                 bool(settings.get("shape_known"))))
        if settings.get("generator") == "griffin-lim":
            from models.performer.griffin_lim import CarriedPhase, GriffinLim

            iters = min(int(settings["iters"]), LIVE_GRIFFIN_LIM_ITERS)
            return CarriedPhase(GriffinLim(iters, float(settings["momentum"])))
        return lambda mel, first_frame: self.vocoder(mel[None])[0]

    # options

    def performer_id(self, performer: int | str | None) -> int:
        """The performer index of a style name ("piano" or "FluidR3_GM:piano"), an index, or None
        (the first style the model was trained on)."""
        if performer is None:
            return self.performers.index(self.styles[0])
        short = {name.split(":", 1)[-1]: name for name in self.styles}
        if isinstance(performer, (int, np.integer)) and 0 <= int(performer) < len(self.performers):
            return int(performer)
        if isinstance(performer, str) and (performer in self.styles or performer in short):
            return self.performers.index(short.get(performer, performer))
        raise ValueError(f"style {performer!r} is not one the synthesis model was trained on; choose "
                         f"one of {', '.join(sorted(short))}")

    def latent(self, latent: int | Sequence[float] | None) -> torch.Tensor:
        """The style latent z (latent_dim,): zeros (the performer's typical playing) for None, a
        draw from the prior N(0, I) for an integer seed, or the given numbers."""
        if latent is None:
            return torch.zeros(self.latent_dim)
        if isinstance(latent, (int, np.integer)) and not isinstance(latent, bool):
            if latent < 0:
                raise ValueError(f"a latent seed must be >= 0, got {latent}")
            return torch.randn(self.latent_dim, generator=torch.Generator().manual_seed(int(latent)))
        values = np.asarray(latent, np.float64).reshape(-1)
        if len(values) != self.latent_dim or not np.isfinite(values).all():
            raise ValueError(f"latent must be {self.latent_dim} finite numbers or an integer seed, got "
                             f"{len(values)} value(s)")
        return torch.tensor(values, dtype=torch.float32)

    # notes

    @torch.no_grad()
    def perform(self, notes: np.ndarray, qpm: float, performer: int) -> np.ndarray:
        """Performed notes (PERFORMED_DTYPE, sorted by onset) of performed or score notes."""
        if notes.dtype == PERFORMED_DTYPE:
            return notes[np.argsort(notes["onset_s"], kind="stable")]
        if notes.dtype != MARKED_DTYPE:
            raise ValueError(f"notes must be expression.PERFORMED_DTYPE or MARKED_DTYPE rows, "
                             f"got {notes.dtype}")
        if not qpm > 0:
            raise ValueError(f"qpm must be > 0, got {qpm}")
        notes = notes[np.lexsort((notes["pitch"], notes["part"], notes["onset_beats"]))]
        out = np.zeros(len(notes), PERFORMED_DTYPE)
        for name in MARKED_DTYPE.names:
            out[name] = notes[name]
        out["score_onset_s"] = notes["onset_beats"] * 60.0 / qpm
        out["score_duration_s"] = notes["duration_beats"] * 60.0 / qpm
        out["onset_s"], out["duration_s"] = out["score_onset_s"], out["score_duration_s"]
        out["performed_velocity"] = np.clip(notes["velocity"], 1, 127)
        if self.aligner is not None and len(notes):
            # consecutive crops of the length it was trained on, each anchored where the last ended
            shift = 0.0
            for s in range(0, len(notes), ALIGN_MAX_NOTES):
                crop = notes[s:s + ALIGN_MAX_NOTES]
                ints, floats = features(crop, qpm)
                pred = self.aligner(torch.from_numpy(ints)[None], torch.from_numpy(floats)[None],
                                    torch.tensor([performer]))[0].numpy()  # (n, 2)
                score = out["score_onset_s"][s:s + len(crop)].copy()
                onset = score + pred[:, 0] + shift
                rows = slice(s, s + len(crop))
                out["onset_s"][rows] = onset
                out["duration_s"][rows] = out["score_duration_s"][rows] * np.exp(pred[:, 1])
                shift = float(onset[-1] - score[-1])
            out["onset_s"] -= min(0.0, float(out["onset_s"].min()))
        out["duration_s"] = np.maximum(out["duration_s"], MIN_DURATION_S)
        return out[np.argsort(out["onset_s"], kind="stable")]

    def n_frames(self, performed: np.ndarray) -> int:
        """Mel frames of a render: the last note-off plus the release tail."""
        end_s = float((performed["onset_s"] + performed["duration_s"]).max()) if len(performed) else 0.0
        if end_s > MAX_SECONDS:
            raise ValueError(f"the notes last {end_s / 3600:.1f} hours; the neural performer renders at most "
                             f"{MAX_SECONDS / 3600:.0f} hours at a time")
        return int(math.ceil((end_s + TAIL_S) * self.frames_per_s)) + 1

    # mel and audio

    @torch.no_grad()
    def mel(self, performed: np.ndarray, qpm: float, performer: int, z: torch.Tensor, n_frames: int,
            start: int, stop: int, batch_size: int = 8) -> torch.Tensor:
        """(n_mels, stop - start) log-mel frames [start, stop) of a render of n_frames frames, from
        the model's windows on the whole render's grid (frames outside [0, n_frames) repeat the edge)."""
        lo, hi = max(0, start), min(n_frames, stop)
        first = lo if self.rise_limit is None else max(0, lo - LOOKBACK_FRAMES)  # the limit's state
        spans = seam_windows(n_frames, self.window, self.context, first, hi, self.seam_fade)
        mel = blend_windows(run_windows(self.synth, performed, qpm, performer, z, spans, batch_size,
                                        one_more_slot), spans, first, hi)
        if self.rise_limit is not None:
            sustained = not self.performers[performer].endswith(DECAYING)  # a piano's legato re-attacks
            free, rate = rise_rates(performed, first, hi - first, self.rise_limit,
                                    self.legato_rate if sustained else None, self.sample_rate_hz, self.hop,
                                    n_mels=mel.shape[0])
            mel = rise_limited(mel, free, rate)[:, lo - first:]
        else:
            mel = mel[:, lo - first:]
        if self.hairpin_gain:  # the swell FluidSynth gives a hairpin, which the model does not play
            offsets = hairpin_offsets(performed, lo, hi - lo, self.sample_rate_hz, self.hop,
                                      n_mels=mel.shape[0])
            mel = mel if offsets is None else mel + offsets
        return torch.nn.functional.pad(mel[None], (lo - start, stop - hi), mode="replicate")[0]

    @torch.no_grad()
    def render_chunks(self, notes: np.ndarray, qpm: float = 90.0, performer: int | str | None = None,
                      latent: int | Sequence[float] | None = None,
                      chunk_frames: int = CHUNK_FRAMES,
                      first_chunk_frames: int | None = None) -> Iterator[np.ndarray]:
        """float32 mono audio of the notes, chunk by chunk (``chunk_frames`` × hop samples each, the
        first ``first_chunk_frames`` × hop when given, the last shorter): the chunks joined are
        ``render``'s audio (with Griffin-Lim, up to its chunk-dependent phase)."""
        first_chunk_frames = first_chunk_frames or chunk_frames
        if min(chunk_frames, first_chunk_frames) * self.hop < 2 * FADE_SAMPLES:
            raise ValueError(f"chunk_frames and first_chunk_frames must be at least "
                             f"{2 * FADE_SAMPLES // self.hop}, got {chunk_frames} and {first_chunk_frames}")
        pid, z = self.performer_id(performer), self.latent(latent)
        performed = self.perform(notes, qpm, pid)
        n_frames = self.n_frames(performed)
        fade_in = (0.5 - 0.5 * np.cos(np.pi * (np.arange(2 * FADE_SAMPLES) + 0.5) / (2 * FADE_SAMPLES))
                   ).astype(np.float32)
        pending = None  # the previous chunk's last 2 * FADE_SAMPLES, to fade out
        for a in [0, *range(first_chunk_frames, n_frames - 1, chunk_frames)]:
            b = min(a + (first_chunk_frames if a == 0 else chunk_frames), n_frames - 1)
            m0, m1 = a - VOCODER_MARGIN, b + VOCODER_MARGIN
            mel = self.mel(performed, qpm, pid, z, n_frames, m0, m1 + 1)
            if self.score_phase:  # the notes' harmonics set the frequency of the bins they sound in
                hz = harmonic_hz(performed["onset_s"], performed["onset_s"] + performed["duration_s"],
                                 performed["pitch"], m0, m1 + 1 - m0, self.sample_rate_hz, self.hop,
                                 width=self.harmonic_bins)
                audio = self.vocoder(mel[None], hz[None])[0].numpy()
            else:
                audio = self.vocoder(mel[None])[0].numpy()  # samples [m0 * hop, m1 * hop)
            first = a * self.hop - (FADE_SAMPLES if a else 0)
            last = b * self.hop + (FADE_SAMPLES if b < n_frames - 1 else 0)
            piece = audio[first - m0 * self.hop:last - m0 * self.hop].astype(np.float32)
            if pending is not None:
                piece[:2 * FADE_SAMPLES] = piece[:2 * FADE_SAMPLES] * fade_in + pending * fade_in[::-1]
            if b < n_frames - 1:
                pending = piece[-2 * FADE_SAMPLES:].copy()
                piece = piece[:-2 * FADE_SAMPLES]
            yield piece

    def render(self, notes: np.ndarray, qpm: float = 90.0, performer: int | str | None = None,
               latent: int | Sequence[float] | None = None, chunk_frames: int = CHUNK_FRAMES) -> np.ndarray:
        """float32 mono audio at ``sample_rate_hz``: the notes' performance and its release tail."""
        return np.concatenate(list(self.render_chunks(notes, qpm, performer, latent, chunk_frames)))


def join_steps(audio: np.ndarray, chunk_samples: int, around: int = 8) -> dict[str, float]:
    """The largest |x[i+1] - x[i]| within ``around`` samples of each join of chunks of
    ``chunk_samples``, beside the largest anywhere else: a click at a join would stand out."""
    step = np.abs(np.diff(audio.astype(np.float64)))
    near = np.zeros(len(step), bool)
    for j in range(chunk_samples, len(audio), chunk_samples):
        near[max(0, j - around - 1):j + around] = True
    return {"joins": len(range(chunk_samples, len(audio), chunk_samples)),
            "max_step_at_joins": float(step[near].max()) if near.any() else 0.0,
            "max_step_inside": float(step[~near].max()) if (~near).any() else 0.0}

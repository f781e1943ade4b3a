"""The Deep Performer synthesis model (notes + their performed timing -> log-mel frames) and its
piano-roll baseline, one class with two front ends.

Dong et al., "Deep Performer" (ICASSP 2022): a FastSpeech-style encoder over the notes, the
*polyphonic mixer* (each note's embedding copied to the frames it covers, from its aligned onset
and offset; simultaneous notes summed) with the *note-wise positional encoding* (the copy at
relative position p in the note scaled by 1 + p·w, w learnt), a FastSpeech-style frame decoder and
a log-mel output (``render``'s settings). Note embeddings here: pitch, dynamic level and hairpin
embeddings, and through a small MLP the alignment features (``features.FLOAT_FEATURES``: score
timing, tempo, the score's velocity, the articulation / slur / fermata flags) plus the performed
velocity and duration. The style is a performer embedding plus a continuous latent z learnt
VAE-style (a posterior over the target mel at training, N(0, I) prior, KL term), added to every
note and every frame; z = 0 is the performer's typical playing.

``conditioning="pianoroll"`` is the baseline: the same decoder and style fed an aligned piano roll
(performed velocity / 127 at each frame a pitch sounds) through a linear layer, no note encoder.

    inputs   ints (B, N, 3) int64, floats (B, N, NOTE_FLOATS), onset/offset frames (B, N) float
             (frame i is centred on sample i * HOP, relative to the window), padding (B, N) bool,
             performer (B,) int64, z (B, latent_dim)
    output   (B, N_MELS, T) natural-log mel magnitudes
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from models.performer.expression import DYNAMIC_NAMES
from models.performer.features import N_FLOATS, N_INTS, features
from models.performer.render import HOP, N_MELS, PERFORMERS, SAMPLE_RATE_HZ

N_PITCHES = 128
N_HAIRPINS = 3
NOTE_FLOATS = N_FLOATS + 2  # + performed velocity / 127, log performed duration (s)
FRAMES_PER_S = SAMPLE_RATE_HZ / HOP
CONDITIONINGS = ("notes", "pianoroll")
MEL_MEAN = -5.6  # mean log-mel of the bach set: the output's starting bias


@dataclass(frozen=True)
class SynthConfig:
    conditioning: str = "notes"
    n_performers: int = len(PERFORMERS)
    d_model: int = 128
    encoder_layers: int = 3
    decoder_layers: int = 6
    n_heads: int = 2
    d_ff: int = 256
    kernel_size: int = 3  # of the convolutional feed-forward layers (FastSpeech's)
    dropout: float = 0.1
    latent_dim: int = 8
    n_mels: int = N_MELS
    # padded notes zeroed between the two convolutions of each FFTBlock as well as before the first
    # (without it a window's output depends on how its batch was padded: the "padding leak" of the
    # first performer-synth, whose config predates this field and loads with it False)
    mask_between_convs: bool = True

    def __post_init__(self) -> None:
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"SynthConfig.conditioning must be one of {', '.join(CONDITIONINGS)}, "
                             f"got {self.conditioning!r}")
        for name in ("n_performers", "d_model", "decoder_layers", "n_heads", "d_ff", "latent_dim", "n_mels"):
            if getattr(self, name) < 1:
                raise ValueError(f"SynthConfig.{name} must be at least 1, got {getattr(self, name)}")
        if self.encoder_layers < 0:
            raise ValueError(f"SynthConfig.encoder_layers must be at least 0, got {self.encoder_layers}")
        if self.d_model % self.n_heads:
            raise ValueError(f"SynthConfig.d_model ({self.d_model}) must be divisible by n_heads "
                             f"({self.n_heads})")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"SynthConfig.kernel_size must be odd and positive, got {self.kernel_size}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"SynthConfig.dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SynthConfig:
        return cls(**{"mask_between_convs": False, **d})  # configs saved before the field: as trained


def sinusoids(length: int, channels: int) -> torch.Tensor:
    """(length, channels) sinusoidal position encoding."""
    half = channels // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / max(half - 1, 1))
    angle = torch.arange(length, dtype=torch.float32)[:, None] * freqs[None, :]
    out = torch.zeros(length, channels)
    out[:, :half], out[:, half:2 * half] = torch.sin(angle), torch.cos(angle)
    return out


class FFTBlock(nn.Module):
    """FastSpeech's feed-forward Transformer block: self-attention, then two 1-D convolutions
    along the sequence (pre-norm, residual)."""

    def __init__(self, d: int, n_heads: int, d_ff: int, kernel_size: int, dropout: float,
                 mask_between: bool = True) -> None:
        super().__init__()
        self.mask_between = mask_between
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, n_heads, dropout=dropout, batch_first=True)
        self.conv1 = nn.Conv1d(d, d_ff, kernel_size, padding=kernel_size // 2)
        self.conv2 = nn.Conv1d(d_ff, d, kernel_size, padding=kernel_size // 2)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, d), padding (B, T) bool (True = padding) -> (B, T, d)"""
        h = self.norm1(x)
        x = x + self.drop(self.attn(h, h, h, key_padding_mask=padding, need_weights=False)[0])
        h = self.norm2(x)
        if padding is not None:
            h = h.masked_fill(padding[..., None], 0.0)  # padded notes must not leak through the conv
        h = torch.nn.functional.gelu(self.conv1(h.transpose(1, 2)))  # (B, d_ff, T)
        if padding is not None and self.mask_between:
            h = h.masked_fill(padding[:, None, :], 0.0)  # nor through the second
        h = self.conv2(h).transpose(1, 2)
        return x + self.drop(h)


class Synthesizer(nn.Module):
    def __init__(self, cfg: SynthConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.use_notes = cfg.conditioning == "notes"
        self.performer = nn.Embedding(cfg.n_performers, d)
        self.latent = nn.Linear(cfg.latent_dim, d)
        # posterior q(z | mel) for training; unused at inference
        self.posterior = nn.Sequential(nn.Conv1d(cfg.n_mels, d, 5, padding=2), nn.GELU(),
                                       nn.Conv1d(d, d, 5, padding=2, stride=2), nn.GELU())
        self.posterior_head = nn.Linear(d, 2 * cfg.latent_dim)
        # note front end (Deep Performer)
        self.pitch = nn.Embedding(N_PITCHES, d)
        self.dynamic = nn.Embedding(len(DYNAMIC_NAMES), d)
        self.hairpin = nn.Embedding(N_HAIRPINS, d)
        self.floats = nn.Sequential(nn.Linear(NOTE_FLOATS, d), nn.GELU(), nn.Linear(d, d))
        n_enc = cfg.encoder_layers if self.use_notes else 0
        self.encoder = nn.ModuleList([FFTBlock(d, cfg.n_heads, cfg.d_ff, cfg.kernel_size, cfg.dropout,
                                               cfg.mask_between_convs)
                                      for _ in range(n_enc)])
        self.encoder_norm = nn.LayerNorm(d)
        self.position_scale = nn.Parameter(torch.zeros(d))  # w of the note-wise encoding
        # piano-roll front end (the baseline)
        self.roll = nn.Linear(N_PITCHES, d)
        self.decoder = nn.ModuleList([FFTBlock(d, cfg.n_heads, cfg.d_ff, cfg.kernel_size, cfg.dropout,
                                               cfg.mask_between_convs)
                                      for _ in range(cfg.decoder_layers)])
        self.decoder_norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, cfg.n_mels)
        nn.init.constant_(self.out.bias, MEL_MEAN)
        self.frame_scale = 1.0 / math.sqrt(d)
        self.d_model, self.latent_size = d, cfg.latent_dim
        self.n_pitches, self.velocity_column = N_PITCHES, N_FLOATS  # (TorchScript reads no globals)

    @torch.jit.export
    def latent_dim(self) -> int:
        return self.latent_size

    def encode_style(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mel (B, n_mels, T) -> posterior mean and log-variance of z, each (B, latent_dim)."""
        h = self.posterior(mel).mean(dim=2)
        mu, logvar = self.posterior_head(h).chunk(2, dim=1)
        return mu, logvar.clamp(-8.0, 4.0)

    def forward(self, ints: torch.Tensor, floats: torch.Tensor, onsets: torch.Tensor,
                offsets: torch.Tensor, padding: torch.Tensor, performer: torch.Tensor, z: torch.Tensor,
                n_frames: int) -> torch.Tensor:
        """See the module docstring; -> (B, n_mels, n_frames)."""
        h = self.frames(ints, floats, onsets, offsets, padding, performer, z, n_frames)
        for block in self.decoder:
            h = block(h)
        return self.out(self.decoder_norm(h)).transpose(1, 2)  # (B, n_mels, T)

    def frames(self, ints: torch.Tensor, floats: torch.Tensor, onsets: torch.Tensor,
               offsets: torch.Tensor, padding: torch.Tensor, performer: torch.Tensor, z: torch.Tensor,
               n_frames: int) -> torch.Tensor:
        """The decoder's input (B, n_frames, d): mixed note embeddings (or the projected piano
        roll), plus the style and a frame position encoding."""
        style = self.performer(performer) + self.latent(z)  # (B, d)
        t = torch.arange(n_frames, dtype=onsets.dtype, device=onsets.device)[None, :, None]  # (1, T, 1)
        on, off = onsets[:, None, :], offsets[:, None, :]  # (B, 1, N)
        cover = ((t >= on) & (t < off) & ~padding[:, None, :]).to(floats.dtype)  # (B, T, N)
        if self.use_notes:
            x = (self.pitch(ints[..., 0]) + self.dynamic(ints[..., 1]) + self.hairpin(ints[..., 2])
                 + self.floats(floats) + style[:, None, :])  # (B, N, d)
            # a window with no notes still needs one key for attention: the first slot (which
            # covers no frames when it is padding)
            keys = padding.clone()
            keys[:, 0] = False
            for block in self.encoder:
                x = block(x, keys)
            x = self.encoder_norm(x)
            # polyphonic mixer with the note-wise positional encoding:
            # frame t = sum_n cover[t, n] * x_n * (1 + p[t, n] * w), p = relative position in note n
            p = cover * ((t - on) / (off - on).clamp(min=1.0))  # (B, T, N)
            h = torch.bmm(cover, x) + torch.bmm(p, x) * self.position_scale  # (B, T, d)
        else:
            pitch = nn.functional.one_hot(ints[..., 0], self.n_pitches).to(floats.dtype)  # (B, N, 128)
            velocity = floats[..., self.velocity_column:self.velocity_column + 1]  # (B, N, 1)
            h = self.roll(torch.bmm(cover, pitch * velocity))  # (B, T, d)
        return h + style[:, None, :] + sinusoids(n_frames, self.d_model).to(h) * self.frame_scale

    def prepare_for_export(self) -> Synthesizer:
        return self.eval()


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def frames_of(notes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Performed onset and offset of each note in (fractional) mel frames."""
    onsets = notes["onset_s"] * FRAMES_PER_S
    return onsets, onsets + notes["duration_s"] * FRAMES_PER_S


def window_inputs(notes: np.ndarray, qpm: float, start: int, n_frames: int,
                  max_notes: int = 256) -> dict[str, np.ndarray]:
    """Model inputs (without the batch axis) of the performed notes (``expression.PERFORMED_DTYPE``,
    sorted by onset) that sound in frames ``[start, start + n_frames)``; frames relative to start."""
    onsets, offsets = frames_of(notes)
    keep = np.flatnonzero((onsets < start + n_frames) & (offsets > start))[:max_notes]
    chosen = notes[keep]
    ints = np.zeros((len(chosen), N_INTS), np.int64)
    floats = np.zeros((len(chosen), NOTE_FLOATS), np.float32)
    if len(chosen):
        ints, score_floats = features(chosen, qpm)
        floats = np.concatenate([score_floats, chosen["performed_velocity"][:, None] / 127.0,
                                 np.log(np.maximum(chosen["duration_s"], 1e-3))[:, None]], axis=1)
    return {"ints": ints, "floats": floats.astype(np.float32),
            "onsets": (onsets[keep] - start).astype(np.float32),
            "offsets": (offsets[keep] - start).astype(np.float32)}


def collate(items: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Pad ``window_inputs`` to one batch; padding notes cover no frames."""
    B, N = len(items), max(1, max(len(it["onsets"]) for it in items))
    ints = np.zeros((B, N, N_INTS), np.int64)
    floats = np.zeros((B, N, NOTE_FLOATS), np.float32)
    onsets, offsets = np.zeros((B, N), np.float32), np.zeros((B, N), np.float32)
    padding = np.ones((B, N), bool)
    for b, it in enumerate(items):
        n = len(it["onsets"])
        ints[b, :n], floats[b, :n] = it["ints"], it["floats"]
        onsets[b, :n], offsets[b, :n], padding[b, :n] = it["onsets"], it["offsets"], False
    return {"ints": torch.from_numpy(ints), "floats": torch.from_numpy(floats),
            "onsets": torch.from_numpy(onsets), "offsets": torch.from_numpy(offsets),
            "padding": torch.from_numpy(padding)}


SEAM_FADE = 16  # frames each side of a window seam over which one window's mel blends into the next


def seam_windows(n_frames: int, window: int, context: int, lo: int, hi: int,
                 fade: int = SEAM_FADE) -> list[tuple[int, int, np.ndarray]]:
    """The synthesis windows on a render's grid (one every ``window - 2 * context`` frames, each with
    ``context`` frames each side) that frames [lo, hi) hear, as (begin, length, weights): the window
    covers frames [begin, begin + length) and ``weights`` (length,) says how much of each frame's
    value is its. A window owns its middle; around each seam the earlier window hands over to the
    later one linearly over ``fade`` frames each side (0: a hard cut, the way before rule E of
    RESULTS.md, "synthesis windows crossfaded"), so a held note does not jump where windows meet.
    The weights of the windows a frame hears sum to 1, and depend on the frame alone, not on lo, hi."""
    core = window - 2 * context
    fade = min(fade, context)

    def ramp(f: np.ndarray, seam: int) -> np.ndarray:  # 0 before the seam's fade, 1 after it
        if fade == 0:
            return (f >= seam).astype(np.float32)
        return np.clip((f - seam + fade + 0.5) / (2 * fade), 0.0, 1.0).astype(np.float32)

    out = []
    for k in range(max(0, (lo - fade) // core), min((hi - 1 + fade) // core, (n_frames - 1) // core) + 1):
        seam = k * core
        begin = max(0, seam - context)
        length = min(window, n_frames - begin)
        f = np.arange(begin, begin + length)
        rise = ramp(f, seam) if k > 0 else np.ones(length, np.float32)
        fall = 1.0 - ramp(f, seam + core) if seam + core < n_frames else np.ones(length, np.float32)
        out.append((begin, length, rise * fall))
    return out


def blend_windows(mels: list[torch.Tensor], spans: list[tuple[int, int, np.ndarray]], lo: int,
                  hi: int) -> torch.Tensor:
    """(n_mels, hi - lo): the windows' mels (n_mels, length each) weighted as ``seam_windows`` says."""
    out = torch.zeros(mels[0].shape[0], hi - lo)
    for mel, (begin, length, weights) in zip(mels, spans):
        a, b = max(lo, begin), min(hi, begin + length)
        if b > a:
            w = torch.from_numpy(weights[a - begin:b - begin])
            out[:, a - lo:b - lo] += mel[:, a - begin:b - begin] * w
    return out


def run_windows(model, notes: np.ndarray, qpm: float, performer: int, z: torch.Tensor,
                spans: list[tuple[int, int, np.ndarray]], batch_size: int,
                prepare=lambda batch: batch) -> list[torch.Tensor]:
    """Each window's (n_mels, length) mel; windows of equal length run ``batch_size`` at a time
    (``prepare`` gets each collated batch first)."""
    out, i = [], 0
    while i < len(spans):
        length = spans[i][1]
        group = list(itertools.takewhile(lambda sp, n=length: sp[1] == n, spans[i:i + batch_size]))
        batch = prepare(collate([window_inputs(notes, qpm, begin, n) for begin, n, _ in group]))
        mel = model(batch["ints"], batch["floats"], batch["onsets"], batch["offsets"], batch["padding"],
                    torch.full((len(group),), performer, dtype=torch.long), z.expand(len(group), -1), length)
        out += [mel[b] for b in range(len(group))]
        i += len(group)
    return out


@torch.no_grad()
def synthesise(model, notes: np.ndarray, qpm: float, performer: int, n_frames: int,
               z: torch.Tensor | None = None, window: int = 256, context: int = 32,
               batch_size: int = 16) -> np.ndarray:
    """(n_mels, n_frames) log-mel of a whole piece, in windows of ``window`` frames that overlap by
    ``context`` frames on each side (each window owns its middle, crossfaded into the next around
    each seam: ``seam_windows``), as the model was trained on windows; windows of equal length run
    ``batch_size`` at a time. ``model`` is a ``Synthesizer`` or its TorchScript export; ``z``
    (latent_dim,) defaults to 0, the performer's typical style."""
    if window <= 2 * context:
        raise ValueError(f"window ({window} frames) must be longer than twice the context ({context})")
    z = torch.zeros(int(model.latent_dim())) if z is None else z.reshape(-1)
    spans = seam_windows(n_frames, window, context, 0, n_frames)
    return blend_windows(run_windows(model, notes, qpm, performer, z, spans, batch_size), spans, 0,
                         n_frames).numpy()

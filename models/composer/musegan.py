"""MuseGAN's hybrid model (Dong et al., AAAI 2018), the composer's GAN baseline (issue 16, item 8).

Music is a piano roll of shape (tracks, bars, steps, pitches): here the four chorale voices
(soprano, alto, tenor, bass), 4-bar phrases of 4/4 at 16 steps per bar (a sixteenth, 6 ticks at
24 per quarter), pitches cropped to the voices' span (MIDI 34..81 by default). As in the paper a
cell says "this pitch sounds in this step"; there is no onset channel, so a repeated note held
across steps reads back as one long note (the paper's representation, kept for the baseline).

Generator (the hybrid model with the temporal structure of Sec. 3.3): four latents per phrase -
an inter-track one shared by every track and bar (``z``), an inter-track one per bar made by a
temporal generator (``z_t = G_temp(z_temp)``), a private one per track (``z_i``) and a private
one per track and bar (``z_i,t = G_temp,i(z_temp,i)``). Each track has its own bar generator
(grouped transposed convolutions: one weight set per track, run together) that maps the
concatenation of its four latents to one bar of that track. Discriminator: one critic over the
whole phrase, 3D convolutions over (bars, steps, pitches) with tracks as channels, no batch norm
(WGAN-GP, Gulrajani et al. 2017). Outputs are probabilities; ``binarise`` turns them into a roll
(the paper's hard threshold or Bernoulli sampling, or per voice the likeliest pitch above the
threshold so each voice is one line) and ``roll_to_notes`` into ``NOTE_DTYPE`` notes with one track per voice.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bridge.score import NOTE_DTYPE
from models.data import RESOLUTION

VOICES = ("soprano", "alto", "tenor", "bass")
BINARISE = ("voice", "threshold", "bernoulli")
STEPS_PER_BAR = (12, 16)
BAR_QUARTERS = 4  # 4/4 only


@dataclass(frozen=True)
class MuseGANConfig:
    tracks: int = 4
    bars: int = 4
    steps_per_bar: int = 16  # 12 (eighth triplets) or 16 (sixteenths) per 4/4 bar
    low_pitch: int = 34  # MIDI of pitch row 0
    n_pitches: int = 48  # a multiple of 12: the first layer reads octaves
    z_dim: int = 32  # each of the four latents
    g_channels: int = 32  # per track in the bar generator
    d_channels: int = 32

    def __post_init__(self):
        checks = [("tracks", self.tracks >= 1, "at least 1"), ("bars", self.bars in (2, 4, 8), "2, 4 or 8"),
                  ("steps_per_bar", self.steps_per_bar in STEPS_PER_BAR, "12 or 16"),
                  ("n_pitches", self.n_pitches > 0 and self.n_pitches % 12 == 0, "a positive multiple of 12"),
                  ("low_pitch", 0 <= self.low_pitch and self.low_pitch + self.n_pitches <= 128,
                   "so that low_pitch..low_pitch + n_pitches - 1 lies in MIDI 0..127"),
                  ("z_dim", self.z_dim >= 1, "at least 1"),
                  ("g_channels", self.g_channels >= 4, "at least 4"),
                  ("d_channels", self.d_channels >= 4, "at least 4")]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"MuseGANConfig.{name} must be {allowed}, got {getattr(self, name)}")

    @property
    def step_ticks(self) -> int:
        return BAR_QUARTERS * RESOLUTION // self.steps_per_bar

    @property
    def phrase_steps(self) -> int:
        return self.bars * self.steps_per_bar

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- blocks

class TemporalGenerator(nn.Module):
    """(B, groups * z) -> (B, bars, groups * z): one latent per bar from one per phrase (per group)."""

    def __init__(self, z_dim: int, bars: int, groups: int = 1):
        super().__init__()
        c = groups * z_dim
        self.net = nn.Sequential(
            nn.ConvTranspose1d(c, c * 2, 2, groups=groups), nn.BatchNorm1d(c * 2), nn.ReLU(),
            nn.ConvTranspose1d(c * 2, c, bars - 1, groups=groups), nn.BatchNorm1d(c), nn.ReLU())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.unsqueeze(-1)).transpose(1, 2)  # (B, bars, C)


def _up(c_in: int, c_out: int, kernel: tuple[int, int], groups: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(c_in, c_out, kernel, stride=kernel, groups=groups), nn.BatchNorm2d(c_out),
            nn.ReLU()]


class Generator(nn.Module):
    """Latents -> (B, tracks, bars, steps, pitches) probabilities."""

    def __init__(self, cfg: MuseGANConfig):
        super().__init__()
        self.cfg = cfg
        t, z, c = cfg.tracks, cfg.z_dim, cfg.g_channels
        self.temporal = TemporalGenerator(z, cfg.bars)
        self.temporal_private = TemporalGenerator(z, cfg.bars, groups=t)
        q = cfg.steps_per_bar // 4  # 3 or 4 steps per beat
        # per track (groups=t): (1, 1) -> (4 beats, pitches/12 octaves) -> (4q, octaves) -> (4q, pitches)
        self.bar = nn.Sequential(
            *_up(t * 4 * z, t * c, (4, cfg.n_pitches // 12), t),
            *_up(t * c, t * c // 2, (q, 1), t),
            nn.ConvTranspose2d(t * c // 2, t, (1, 12), stride=(1, 12), groups=t))

    def sample_latents(self, batch: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        t, z = self.cfg.tracks, self.cfg.z_dim
        draw = lambda *shape: torch.randn(*shape, generator=generator)  # noqa: E731
        return {"z": draw(batch, z), "z_temp": draw(batch, z), "z_private": draw(batch, t, z),
                "z_temp_private": draw(batch, t, z)}

    def forward(self, z: torch.Tensor, z_temp: torch.Tensor, z_private: torch.Tensor,
                z_temp_private: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        b, t, nb = z.shape[0], cfg.tracks, cfg.bars
        shared_t = self.temporal(z_temp)  # (B, bars, z)
        # (B, bars, T, z)
        private_t = self.temporal_private(z_temp_private.reshape(b, -1)).reshape(b, nb, t, -1)
        per_bar = torch.cat([z[:, None, None].expand(b, nb, t, -1), shared_t[:, :, None].expand(b, nb, t, -1),
                             z_private[:, None].expand(b, nb, t, -1), private_t], dim=-1)  # (B, bars, T, 4z)
        x = self.bar(per_bar.reshape(b * nb, -1, 1, 1))  # (B*bars, T, steps, pitches), grouped by track
        x = x.reshape(b, nb, t, cfg.steps_per_bar, cfg.n_pitches).transpose(1, 2)
        return torch.sigmoid(x)  # (B, T, bars, steps, pitches)


class Discriminator(nn.Module):
    """(B, tracks, bars, steps, pitches) -> (B,) critic scores."""

    def __init__(self, cfg: MuseGANConfig):
        super().__init__()
        c, q = cfg.d_channels, cfg.steps_per_bar // 4
        act = lambda: nn.LeakyReLU(0.2)  # noqa: E731
        self.net = nn.Sequential(
            nn.Conv3d(cfg.tracks, c, (1, 1, 12), stride=(1, 1, 12)), act(),  # octaves
            nn.Conv3d(c, c, (1, q, 1), stride=(1, q, 1)), act(),  # beats
            nn.Conv3d(c, 2 * c, (1, 1, cfg.n_pitches // 12)), act(),  # whole range
            nn.Conv3d(2 * c, 2 * c, (1, 4, 1)), act(),  # whole bar
            nn.Conv3d(2 * c, 2 * c, (2, 1, 1), stride=(2, 1, 1)), act())  # pairs of bars
        self.out = nn.Linear(2 * c * (cfg.bars // 2), 1)

    def forward(self, roll: torch.Tensor) -> torch.Tensor:
        return self.out(self.net(roll).flatten(1)).squeeze(1)


class MuseGAN(nn.Module):
    def __init__(self, cfg: MuseGANConfig):
        super().__init__()
        self.cfg = cfg
        self.generator = Generator(cfg)
        self.discriminator = Discriminator(cfg)

    @torch.no_grad()
    def generate(self, n: int, seed: int = 0, phrases: int = 1) -> torch.Tensor:
        """(n, tracks, phrases * bars * steps, pitches) probabilities: ``phrases`` phrases per piece
        that share the piece's time-independent latents (``z``, ``z_i``: its style and voices) and
        draw fresh temporal ones."""
        g = torch.Generator().manual_seed(seed)
        self.generator.eval()
        fixed = self.generator.sample_latents(n, g)
        rolls = []
        for _ in range(phrases):
            fresh = self.generator.sample_latents(n, g)
            x = self.generator(fixed["z"], fresh["z_temp"], fixed["z_private"], fresh["z_temp_private"])
            rolls.append(x.flatten(2, 3))  # (n, T, bars*steps, P)
        return torch.cat(rolls, dim=2)


def save(model: MuseGAN, path, **extra) -> None:
    """The model config beside the weights (and ``extra``: optimiser states, step, train config),
    written whole or not at all."""
    import os
    from pathlib import Path

    path = Path(path)
    tmp = path.with_suffix(".tmp")
    torch.save({"config": model.cfg.to_dict(), "generator": model.generator.state_dict(),
                "discriminator": model.discriminator.state_dict(), **extra}, tmp)
    os.replace(tmp, path)


def load(path) -> tuple[MuseGAN, dict]:
    """(model in eval mode, the whole checkpoint) of a file ``save`` wrote."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = MuseGAN(MuseGANConfig(**ckpt["config"]))
    model.generator.load_state_dict(ckpt["generator"])
    model.discriminator.load_state_dict(ckpt["discriminator"])
    return model.eval(), ckpt


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: (|grad critic(x)| - 1)^2 at points between real and fake."""
    alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)))
    x = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    grad, = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


# ------------------------------------------------------------------------- piano rolls <-> notes

def notes_to_roll(notes: np.ndarray, track: np.ndarray, cfg: MuseGANConfig, start: int = 0,
                  steps: int | None = None) -> np.ndarray | None:
    """(tracks, steps, pitches) bool roll of the notes from tick ``start`` on (a note sounds in every
    step its span covers, at least its onset's); None where a note in the window lies outside the
    pitch range."""
    steps = cfg.phrase_steps if steps is None else steps
    roll = np.zeros((cfg.tracks, steps, cfg.n_pitches), bool)
    s = cfg.step_ticks
    t0 = (notes["time"].astype(np.int64) - start) // s
    t1 = np.maximum((notes["time"] + notes["duration"] - start + s // 2) // s, t0 + 1)
    inside = (t1 > 0) & (t0 < steps)
    rows = notes["pitch"].astype(np.int64) - cfg.low_pitch
    if ((rows < 0) | (rows >= cfg.n_pitches))[inside].any():
        return None
    for k, a, b, r in zip(track[inside], t0[inside], t1[inside], rows[inside]):
        roll[k, max(a, 0):min(b, steps), r] = True
    return roll


def binarise(probs: np.ndarray, mode: str = "voice", threshold: float = 0.5,
             rng: np.random.Generator | None = None) -> np.ndarray:
    """(tracks, steps, pitches) probabilities -> bool roll: every cell above ``threshold``
    ("threshold", the paper's hard thresholding), every cell on with its probability ("bernoulli",
    the paper's Bernoulli sampling; ``rng`` draws), or per track and step only the likeliest pitch,
    where above ``threshold`` ("voice": each track one line)."""
    if mode not in BINARISE:
        raise ValueError(f"binarise mode must be one of {', '.join(BINARISE)}, got {mode!r}")
    if mode == "bernoulli":
        return (rng or np.random.default_rng(0)).random(probs.shape) < probs
    on = probs > threshold
    if mode == "threshold":
        return on
    top = probs.argmax(-1)[..., None] == np.arange(probs.shape[-1])
    return on & top


def roll_to_notes(roll: np.ndarray, cfg: MuseGANConfig, velocity: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(notes NOTE_DTYPE sorted by time and pitch, track int16): each run of sounding steps at one
    pitch of one track is a note, at ``RESOLUTION`` ticks per quarter."""
    t, steps, p = roll.shape
    padded = np.zeros((t, steps + 2, p), np.int8)
    padded[:, 1:-1] = roll
    edges = np.diff(padded, axis=1)  # (T, steps + 1, P): +1 at onsets, -1 after ends
    tr, on, pi = np.nonzero(edges == 1)
    tr2, off, pi2 = np.nonzero(edges == -1)
    order = np.lexsort((on, pi, tr))
    order2 = np.lexsort((off, pi2, tr2))  # runs pair up in the same (track, pitch, time) order
    tr, on, pi, off = tr[order], on[order], pi[order], off[order2]
    notes = np.zeros(len(on), NOTE_DTYPE)
    notes["time"] = on * cfg.step_ticks
    notes["duration"] = (off - on) * cfg.step_ticks
    notes["pitch"] = pi + cfg.low_pitch
    notes["velocity"] = velocity
    sort = np.lexsort((tr, notes["pitch"], notes["time"]))
    return notes[sort], tr[sort].astype(np.int16)


__all__ = ["BINARISE", "Discriminator", "Generator", "MuseGAN", "MuseGANConfig", "VOICES", "binarise",
           "gradient_penalty", "load", "notes_to_roll", "roll_to_notes", "save"]

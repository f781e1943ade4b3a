"""The Deep Performer alignment model: a Transformer encoder over a score's notes predicting each
note's performed onset (as a deviation from the score timing) and duration (as a log ratio).

Dong et al., "Deep Performer" (ICASSP 2022): 3 layers, d=128, 2 heads, FFN 256, MSE. Inputs here:
pitch, dynamic level and hairpin embeddings; onset, duration, velocity, tempo and marking flags
through a small MLP (``features.FLOAT_FEATURES``); a performer embedding added to every note. The
head predicts the onset deviation as a local tempo slope times the note's score time plus an offset.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from models.performer.expression import DYNAMIC_NAMES
from models.performer.features import N_FLOATS, ONSET_S_COLUMN, ONSET_S_SCALE
from models.performer.render import PERFORMERS

N_PITCHES = 128
N_HAIRPINS = 3


@dataclass(frozen=True)
class AlignConfig:
    n_performers: int = len(PERFORMERS)
    d_model: int = 128
    n_layers: int = 3
    n_heads: int = 2
    d_ff: int = 256
    dropout: float = 0.1
    n_floats: int = N_FLOATS

    def __post_init__(self) -> None:
        for name in ("n_performers", "d_model", "n_layers", "n_heads", "d_ff", "n_floats"):
            if getattr(self, name) < 1:
                raise ValueError(f"AlignConfig.{name} must be at least 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"AlignConfig.d_model ({self.d_model}) must be divisible by n_heads "
                             f"({self.n_heads})")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"AlignConfig.dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AlignConfig:
        return cls(**d)


class Aligner(nn.Module):
    def __init__(self, cfg: AlignConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.pitch = nn.Embedding(N_PITCHES, d)
        self.dynamic = nn.Embedding(len(DYNAMIC_NAMES), d)
        self.hairpin = nn.Embedding(N_HAIRPINS, d)
        self.performer = nn.Embedding(cfg.n_performers, d)
        self.floats = nn.Sequential(nn.Linear(cfg.n_floats, d), nn.GELU(), nn.Linear(d, d))
        layer = nn.TransformerEncoderLayer(d, cfg.n_heads, cfg.d_ff, cfg.dropout, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.onset_column, self.onset_scale = ONSET_S_COLUMN, ONSET_S_SCALE
        self.head = nn.Linear(d, 3)  # tempo slope, offset (s), log duration ratio

    def forward(self, ints: torch.Tensor, floats: torch.Tensor, performer: torch.Tensor,
                padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """ints (B, T, 3) int64, floats (B, T, F) float32, performer (B,) int64, padding_mask (B, T)
        bool (True = padding) -> (B, T, 2): onset deviation (s), log duration ratio."""
        x = (self.pitch(ints[..., 0]) + self.dynamic(ints[..., 1]) + self.hairpin(ints[..., 2])
             + self.floats(floats) + self.performer(performer)[:, None, :])  # (B, T, d)
        x = self.encoder(x, src_key_padding_mask=padding_mask)
        out = self.head(self.norm(x))  # (B, T, 3)
        # deviation = slope * score seconds + offset: a performer's steady tempo is one slope for
        # the whole sequence, so the network need not multiply inputs to grow the drift with time
        seconds = floats[..., self.onset_column] * self.onset_scale  # (B, T)
        deviation = out[..., 0] * 0.1 * seconds + out[..., 1]
        return torch.stack([deviation, out[..., 2]], dim=-1)

    def prepare_for_export(self) -> Aligner:
        return self.eval()


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

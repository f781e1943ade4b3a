"""Arranger models: part separation as sequence classification over notes.

After Dong et al., "Towards Automatic Instrumentation by Learning to Separate Parts in Symbolic
Multitrack Music" (ISMIR 2021). Each note (sorted by onset, pitch, duration) gets a part label.
Online models are causal (an LSTM or a masked Transformer) and can run note by note with their
state carried; offline models see the whole region (a BiLSTM or a Transformer encoder).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
from torch import Tensor, nn

from models.arranger.features import CHORD_VOCAB, VOICE_FEATURES, FeatureConfig

ARCHS = ("lstm", "transformer")


@dataclass(frozen=True)
class ArrangerConfig:
    n_parts: int
    arch: str = "lstm"
    causal: bool = True  # True: online (sees past notes only); False: offline (whole region)
    n_layers: int = 3
    d_model: int = 128  # LSTM state size (split over both directions offline) or Transformer width
    n_heads: int = 8
    d_ff: int = 256
    dropout: float = 0.1
    features: FeatureConfig = field(default_factory=FeatureConfig)

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"ArrangerConfig.arch must be one of {ARCHS}, got {self.arch!r}")
        if self.n_parts < 2:
            raise ValueError(f"ArrangerConfig.n_parts must be at least 2, got {self.n_parts}")
        if self.arch == "transformer" and self.d_model % self.n_heads:
            raise ValueError(f"ArrangerConfig.d_model ({self.d_model}) must divide by "
                             f"n_heads ({self.n_heads})")
        if self.features.use_voice_state and not (self.arch == "lstm" and self.causal):
            raise ValueError("FeatureConfig.use_voice_state needs an online (causal) LSTM arranger")
        if self.arch == "lstm" and not self.causal and self.d_model % 2:
            raise ValueError(f"ArrangerConfig.d_model must be even for a BiLSTM, got {self.d_model}")

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> ArrangerConfig:
        d = dict(d)
        d["features"] = FeatureConfig(**d.get("features", {}))
        return ArrangerConfig(**d)


class NoteEmbedding(nn.Module):
    """Sum of pitch, position-in-beat, beat, duration embeddings and projected hints."""

    def __init__(self, cfg: ArrangerConfig) -> None:
        super().__init__()
        f, d = cfg.features, cfg.d_model
        self.pitch = nn.Embedding(128, d)
        self.position = nn.Embedding(f.resolution, d)
        self.beat = nn.Embedding(f.max_beat, d)
        self.duration = nn.Embedding(f.max_duration + 1, d)
        self.entry = nn.Linear(cfg.n_parts, d, bias=False)
        self.pitch_hint = nn.Linear(cfg.n_parts, d, bias=False)
        # Identity when unused keeps checkpoints of models without it loadable
        self.voice = nn.Linear(cfg.n_parts * VOICE_FEATURES, d) if f.use_voice_state else nn.Identity()
        self.use_voice_state = f.use_voice_state
        self.chord = nn.Embedding(CHORD_VOCAB, d) if f.use_chord_context else nn.Identity()
        self.use_chord_context = f.use_chord_context
        self.use_duration = f.use_duration
        self.use_entry_hints = f.use_entry_hints
        self.use_pitch_hints = f.use_pitch_hints

    def forward(self, ints: Tensor, entry_hints: Tensor, pitch_hints: Tensor, voice_state: Tensor) -> Tensor:
        # ints (B, T, 5): pitch, position, beat, duration, chord; entry_hints (B, T, P);
        # pitch_hints (B, P); voice_state (B, T, P*5) -> (B, T, d)
        x = self.pitch(ints[..., 0]) + self.position(ints[..., 1]) + self.beat(ints[..., 2])
        if self.use_duration:
            x = x + self.duration(ints[..., 3])
        if self.use_chord_context:
            x = x + self.chord(ints[..., 4])
        if self.use_entry_hints:
            x = x + self.entry(entry_hints)
        if self.use_pitch_hints:
            x = x + self.pitch_hint(pitch_hints).unsqueeze(1)
        if self.use_voice_state:
            x = x + self.voice(voice_state)
        return x


def sinusoid(length: int, d: int, offset: int = 0) -> Tensor:
    pos = torch.arange(offset, offset + length, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(length, d)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    return pe  # (T, d)


class Arranger(nn.Module):
    def __init__(self, cfg: ArrangerConfig) -> None:
        super().__init__()
        self.n_parts = cfg.n_parts
        self.causal = cfg.causal
        self.is_lstm = cfg.arch == "lstm"
        self.d_model = cfg.d_model
        self.n_layers = cfg.n_layers
        self.embed = NoteEmbedding(cfg)
        self.drop = nn.Dropout(cfg.dropout)
        hidden = cfg.d_model if cfg.causal else cfg.d_model // 2
        self.lstm = nn.LSTM(cfg.d_model, hidden, cfg.n_layers, batch_first=True,
                            dropout=cfg.dropout if cfg.n_layers > 1 else 0.0,
                            bidirectional=not cfg.causal) if self.is_lstm else None
        layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout,
                                           batch_first=True, norm_first=True)
        self.transformer = (nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
                            if not self.is_lstm else None)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.n_parts)
        # filled by prepare_for_export(); not in state_dict, so checkpoints stay as they were
        self.register_buffer("step_w", torch.zeros(0), persistent=False)
        self.register_buffer("step_b", torch.zeros(0), persistent=False)

    def forward(self, ints: Tensor, entry_hints: Tensor, pitch_hints: Tensor, voice_state: Tensor,
                padding_mask: Optional[Tensor] = None) -> Tensor:
        """Logits (B, T, P). ``padding_mask`` (B, T) is True at padded notes (training only)."""
        x = self.drop(self.embed(ints, entry_hints, pitch_hints, voice_state))
        if self.lstm is not None:
            x, _ = self.lstm(x)
        elif self.transformer is not None:
            T = x.shape[1]
            x = x + sinusoid(T, self.d_model).to(x.device)
            mask: Optional[Tensor] = None
            if self.causal:
                # bool like the padding mask (True = may not attend): future notes
                mask = torch.triu(torch.ones(T, T, dtype=torch.bool, device=x.device), diagonal=1)
            x = self.transformer(x, mask=mask, src_key_padding_mask=padding_mask)
        return self.head(self.norm(self.drop(x)))

    @torch.jit.export
    def initial_state(self) -> tuple[Tensor, Tensor]:
        """Zero LSTM state (layers, 1, hidden) x2 for ``step``."""
        z = torch.zeros(self.n_layers, 1, self.d_model)
        return z, z.clone()

    @torch.jit.export
    def step(self, ints: Tensor, entry_hints: Tensor, pitch_hints: Tensor, voice_state: Tensor,
             h: Tensor, c: Tensor
             ) -> tuple[Tensor, Tensor, Tensor]:
        """One note in, its logits (1, 1, P) out, with the online LSTM's state carried."""
        if self.lstm is None or not self.causal:
            raise RuntimeError("step() needs an online (causal) LSTM arranger")
        x = self.embed(ints, entry_hints, pitch_hints, voice_state)
        if self.step_w.numel() == 0:  # not prepared for export: the library LSTM
            y, (h2, c2) = self.lstm(x, (h, c))
            return self.head(self.norm(y)), h2, c2
        # One time step of nn.LSTM written out: a single addmm per layer on [x, h] against the
        # stacked [W_ih | W_hh]. PyTorch's LSTM kernel costs ~0.28 ms per call for one step of
        # 3x128 on this CPU; this costs ~0.09 ms (same numbers to 1e-7).
        xt = x[:, 0]  # (1, d)
        hs: list[Tensor] = []
        cs: list[Tensor] = []
        for layer in range(self.n_layers):
            gates = torch.addmm(self.step_b[layer], torch.cat([xt, h[layer]], 1), self.step_w[layer])
            i, f, g, o = gates.chunk(4, 1)
            c_new = torch.sigmoid(f) * c[layer] + torch.sigmoid(i) * torch.tanh(g)
            xt = torch.sigmoid(o) * torch.tanh(c_new)
            hs.append(xt)
            cs.append(c_new)
        return self.head(self.norm(xt)).unsqueeze(1), torch.stack(hs), torch.stack(cs)

    def prepare_for_export(self) -> Arranger:
        """eval(), and for an online LSTM the stacked per-layer weights ``step`` runs on."""
        self.eval()
        if self.lstm is not None and self.causal:
            with torch.no_grad():
                w = [torch.cat([getattr(self.lstm, f"weight_ih_l{k}"), getattr(self.lstm, f"weight_hh_l{k}")],
                               1).t().contiguous() for k in range(self.n_layers)]
                b = [getattr(self.lstm, f"bias_ih_l{k}") + getattr(self.lstm, f"bias_hh_l{k}")
                     for k in range(self.n_layers)]
                self.step_w = torch.stack(w)  # (layers, 2d, 4d)
                self.step_b = torch.stack(b)  # (layers, 4d)
        return self

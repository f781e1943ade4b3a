"""Separate decoders per instrument: the other end of the per-instrument study (issue 16, item 3).

The shipped composer is one decoder shared by every instrument, with a pitch row of its own per
instrument (``ComposerConfig.own_pitch_rows``). Here nothing is shared: each instrument has a whole
decoder of its own (embedding, blocks, output), each reading the whole sequence — every track's
tokens, as an instrument model conditioned on the tracks already written must — and each predicting
only the tokens of its own track: a position's next token is scored by the decoder of the track in
progress there (the last ``TRACK`` or pitch token at or before it; decoder 0 before any).

Trained by ``python -m models.composer.train --separate-decoders`` for the study only
(``docs/representations.md``); it has no KV-cache step and is not exported.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from models.composer.model import Composer, ComposerConfig


def track_of_tokens(tok) -> Tensor:
    """(V,) long: the track (instrument index) a TRACK or pitch token names, -1 for every other."""
    out = torch.full((len(tok),), -1, dtype=torch.long)
    start, n = tok.vocab.kinds["TRACK"]
    out[start:start + n] = torch.arange(n)
    for kind in ("PITCH", "NPITCH"):
        if kind in tok.vocab.kinds:
            start, n = tok.vocab.kinds[kind]
            for t in range(start, start + n):
                out[t] = tok.pitch_of(t)[0]
    return out


class SeparateDecoders(nn.Module):
    """One ``Composer`` per instrument, ``width`` wide (default half the shared one's: about a quarter
    of its parameters each, so the four of SATB hold about as many as the shared decoder and take
    about as much arithmetic per token)."""

    def __init__(self, cfg: ComposerConfig, factor_ids: Tensor | None, track_of: Tensor,
                 width: int = 0) -> None:
        super().__init__()
        n = int(track_of.max()) + 1
        if n < 1:
            raise ValueError("separate decoders need TRACK tokens in the vocabulary")
        sub = dataclasses.replace(cfg, d_model=width or cfg.d_model // 2)
        self.cfg = cfg
        self.block_size = cfg.block_size
        self.decoders = nn.ModuleList([Composer(sub, factor_ids) for _ in range(n)])
        self.register_buffer("track_of", track_of.long(), persistent=True)

    def current_track(self, idx: Tensor) -> Tensor:
        """(B, T) the track in progress at each position: that of the last token naming one."""
        named = self.track_of[idx]  # (B, T)
        T = idx.shape[1]
        where = torch.where(named >= 0, torch.arange(T, device=idx.device), -1).cummax(dim=1).values
        return torch.where(where >= 0, named.gather(1, where.clamp(min=0)), 0)

    def forward(self, idx: Tensor) -> Tensor:
        """idx (B, T) -> logits (B, T, V), each position's from its track's decoder."""
        logits = torch.stack([d(idx) for d in self.decoders])  # (N, B, T, V)
        pick = self.current_track(idx)[None, :, :, None].expand(1, *logits.shape[1:])
        return logits.gather(0, pick)[0]

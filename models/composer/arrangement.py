"""The arrangement model: which instruments a piece has and what each does, bar by bar, as a plan the
composer's per-track controls can follow (issue 16, item 4).

A piece becomes a grid of bar x track *summaries* (``summarise``): per cell the composer's DENSITY
bucket of the notes starting in the bar (``models.composer.tokens.density_bucket``), polyphony (most
notes starting together, 0 = silent, 4 = four or more), register (mean pitch in 6-semitone bins,
0 = silent) and rhythm (the composer's RHYTHMS levels: onsets on beats, on half beats, finer; 0 =
silent); per piece its instrument set (``present``), its meter and its number of bars. Tracks are
*slots*: an instrument name and its occurrence (``violin``, ``violin#2``), the slot vocabulary of the
training sets.

``ArrangementVAE``: a Transformer encoder over the bars (one token per bar, the sum of its cells'
embeddings) gives a latent z (``z_dim``); a non-causal Transformer decoder predicts the instrument set
from z (with meter and bars) and every cell from z and the instrument set. ``ArrangementAR``: the
baseline on the same summaries and of similar size, no latent: the instrument set from meter and
bars, then each bar's cells from the bars before it (a causal Transformer).

    arranger = Arranger.load("models/pretrained/composer-arrangement.pt")   # models.composer.arrangement_plan
    plan = arranger.plan(8, (4, 4), instruments=None, seed=3)            # the arranger chooses
    plan = arranger.plan(8, (4, 4), z=arranger.sample_z(1) + 2 * arranger.direction("density"))
    plan.request_controls()  # density / polyphony / rhythm / ranges per instrument (ComposeRequest)

The latent is the control: a seed draws z from the prior, ``direction(name)`` gives unit vectors found
in it (mean latent of training windows high in a summary minus that of windows low in it) and
``interpolate(z_a, z_b, t)`` moves between two settings.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.composer.tokens import (
    DENSITY_BUCKETS,
    METERS,
    RESOLUTION,
    bar_grid,
    density_bucket,
)
from models.data.instruments import INSTRUMENTS

FEATURES = ("density", "polyphony", "register", "rhythm")
N_CLASSES = (len(DENSITY_BUCKETS), 5, 13, 4)  # per feature; class 0 of the last three = silent
REGISTER_LOW, REGISTER_STEP = 24, 6  # register class k >= 1 holds mean pitches 24 + 6 (k - 1) ..
RHYTHM_LEVELS = ("silent", "plain", "moderate", "busy")  # models.composer.inference.RHYTHMS by name
DIRECTIONS = ("density", "instruments", "register", "rhythm", "polyphony")
MAX_REQUEST_BARS = 256
FORMAT = "deep-musician/arrangement/1"


def slot_names(instruments: list[str]) -> list[str]:
    """Tracks as slots: the k-th (k >= 2) track of a name is ``name#k``."""
    seen: Counter = Counter()
    out = []
    for name in instruments:
        seen[name] += 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out


def slot_instrument(slot: str) -> str:
    return slot.split("#")[0]


@dataclass
class Summary:
    """One piece (or window) as the arrangement model reads it."""

    grid: np.ndarray  # (n_bars, S, 4) int64: class per feature (FEATURES), 0 where the slot is absent
    present: np.ndarray  # (S,) bool
    meter: int  # index into METERS: the piece's most common bar meter
    name: str = ""

    @property
    def n_bars(self) -> int:
        return len(self.grid)


def summarise(piece, slots: list[str]) -> Summary:
    """A multitrack piece's bar x slot summaries; tracks whose slot is not in ``slots`` are left out.
    Bars are laid from tick 0 by the meter map as the composer's tokenizers lay them."""
    if int(piece.resolution) != RESOLUTION:
        raise ValueError(f"summaries read {RESOLUTION} ticks per quarter, got {piece.resolution}")
    notes, track = piece.notes, np.asarray(piece.track, np.int64)
    end = int(notes["time"].max()) + 1 if len(notes) else 1
    starts, meters = bar_grid(piece.meters, end)
    names = slot_names(list(piece.instruments))
    grid = np.zeros((len(starts), len(slots), len(FEATURES)), np.int64)
    present = np.zeros(len(slots), bool)
    bar = np.searchsorted(starts, notes["time"], side="right") - 1
    for t, name in enumerate(names):
        if name not in slots:
            continue
        s = slots.index(name)
        present[s] = True
        sel = track == t
        grid[:, s, 0] = np.bincount(bar[sel], minlength=len(starts))[:len(starts)]
        for b in np.unique(bar[sel]):
            on = notes[sel & (bar == b)]
            onsets = on["time"] - starts[b]
            n, d = METERS[meters[b]]
            beat = 4 * RESOLUTION // d
            rhythm = 1 if np.all(onsets % beat == 0) else 2 if np.all(onsets % (beat // 2 or 1) == 0) else 3
            grid[b, s, 1] = min(int(np.unique(onsets, return_counts=True)[1].max()), 4)
            grid[b, s, 2] = 1 + int(np.clip((on["pitch"].mean() - REGISTER_LOW) // REGISTER_STEP, 0, 11))
            grid[b, s, 3] = rhythm
    grid[:, :, 0] = np.vectorize(density_bucket)(grid[:, :, 0]) if grid.size else grid[:, :, 0]
    meter = Counter(meters.tolist()).most_common(1)[0][0]
    return Summary(grid, present, int(meter), str(getattr(piece, "name", "")))


def data_slots(pieces: list) -> list[str]:
    """The slots of a set, instruments in first-seen order and a name's later tracks after it."""
    first: dict[str, int] = {}
    slots: set[str] = set()
    for p in pieces:
        for s in slot_names(list(p.instruments)):
            first.setdefault(slot_instrument(s), len(first))
            slots.add(s)
    occurrence = lambda s: int(s.split("#")[1]) if "#" in s else 1
    return sorted(slots, key=lambda s: (first[slot_instrument(s)], occurrence(s)))


def windows(summary: Summary, max_bars: int) -> list[Summary]:
    """Non-overlapping windows of at most ``max_bars`` covering every bar (how evaluation scores)."""
    return [Summary(summary.grid[i:i + max_bars], summary.present, summary.meter, summary.name)
            for i in range(0, summary.n_bars, max_bars)]


def collate(items: list[Summary], max_bars: int) -> dict[str, Tensor]:
    """Summaries as a batch: grid (B, T, S, F), bar_mask (B, T), present (B, S), meter (B,), n_bars (B,)."""
    S = items[0].grid.shape[1]
    grid = np.zeros((len(items), max_bars, S, len(FEATURES)), np.int64)
    mask = np.zeros((len(items), max_bars), bool)
    for i, it in enumerate(items):
        n = min(it.n_bars, max_bars)
        grid[i, :n], mask[i, :n] = it.grid[:n], True
    return {"grid": torch.from_numpy(grid), "bar_mask": torch.from_numpy(mask),
            "present": torch.from_numpy(np.stack([it.present for it in items])).float(),
            "meter": torch.tensor([it.meter for it in items]),
            "n_bars": torch.tensor([min(it.n_bars, max_bars) for it in items])}


@dataclass(frozen=True)
class ArrangementConfig:
    slots: tuple[str, ...]
    max_bars: int = 32
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    z_dim: int = 16
    dropout: float = 0.1
    decoder: str = "parallel"  # parallel: z -> every bar at once; ar: bar t from z and bars < t

    def __post_init__(self) -> None:
        if self.decoder not in ("parallel", "ar"):
            raise ValueError(f"ArrangementConfig.decoder must be 'parallel' or 'ar', got {self.decoder!r}")
        unknown = [s for s in self.slots if slot_instrument(s) not in INSTRUMENTS]
        if unknown or not self.slots:
            raise ValueError(f"ArrangementConfig.slots must name known instruments (name or name#k), got "
                             f"{unknown or 'none'}")
        if self.d_model % self.n_heads:
            raise ValueError(f"ArrangementConfig.d_model ({self.d_model}) must be a multiple of n_heads "
                             f"({self.n_heads})")

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> ArrangementConfig:
        return ArrangementConfig(**{**d, "slots": tuple(d["slots"])})


# blocks

class Block(nn.Module):
    """Pre-LN Transformer block; ``mask`` (B, 1, T, T) bool, True = may attend."""

    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, 2)  # (B, T, C) each
        q = q.view(B, T, self.heads, C // self.heads).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, self.heads, C // self.heads).transpose(1, 2)
        v = v.view(B, T, self.heads, C // self.heads).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, T, D)
        x = x + self.drop(self.proj(y.transpose(1, 2).reshape(B, T, C)))
        return x + self.drop(self.mlp(self.ln2(x)))


class CellEmbedding(nn.Module):
    """A bar's cells as one vector: the sum over present slots of per-(slot, feature, class) vectors."""

    def __init__(self, n_slots: int, d: int) -> None:
        super().__init__()
        offsets = [0]
        for c in N_CLASSES[:-1]:
            offsets.append(offsets[-1] + n_slots * c)
        base = torch.tensor(offsets)[None] + torch.arange(n_slots)[:, None] * torch.tensor(N_CLASSES)[None]
        self.register_buffer("base", base, persistent=False)  # (S, F): first id of each slot's feature
        self.table = nn.Embedding(n_slots * sum(N_CLASSES), d)

    def forward(self, grid: Tensor, present: Tensor) -> Tensor:  # (B, T, S, F), (B, S) -> (B, T, d)
        ids = self.base + grid  # (B, T, S, F)
        return (self.table(ids).sum(3) * present[:, None, :, None]).sum(2)


class Conditions(nn.Module):
    """Meter, number of bars and bar position: what a request gives."""

    def __init__(self, cfg: ArrangementConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.meter = nn.Embedding(len(METERS), d)
        self.n_bars = nn.Embedding(cfg.max_bars + 1, d)
        self.pos = nn.Embedding(cfg.max_bars, d)

    def piece(self, meter: Tensor, n_bars: Tensor) -> Tensor:  # (B,) (B,) -> (B, d)
        return self.meter(meter) + self.n_bars(n_bars)

    def bars(self, T: int) -> Tensor:  # (T, d)
        return self.pos.weight[:T]


def _cell_nll(logits: Tensor, grid: Tensor, bar_mask: Tensor, present: Tensor) -> Tensor:
    """Per item NLL (nats) of the present cells: logits (B, T, S, sum C), grid (B, T, S, F) -> (B,)."""
    out = torch.zeros(grid.shape[0], device=grid.device)
    keep = (bar_mask[:, :, None] & (present[:, None, :] > 0)).float()  # (B, T, S)
    start = 0
    for f, c in enumerate(N_CLASSES):
        lp = F.log_softmax(logits[..., start:start + c], -1)
        out = out - (lp.gather(-1, grid[..., f:f + 1])[..., 0] * keep).sum((1, 2))
        start += c
    return out


def _presence_nll(logits: Tensor, present: Tensor) -> Tensor:  # (B, S) -> (B,)
    return F.binary_cross_entropy_with_logits(logits, present, reduction="none").sum(1)


class ArrangementVAE(nn.Module):
    """Encoder over bars -> z; decoder z (+ meter, bars) -> instrument set, and (+ the set) -> cells."""

    def __init__(self, cfg: ArrangementConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.max_bars, self.n_slots = cfg.max_bars, len(cfg.slots)
        S, d = len(cfg.slots), cfg.d_model
        self.cells = CellEmbedding(S, d)
        self.cond = Conditions(cfg)
        self.set_in = nn.Linear(S, d)
        self.cls = nn.Parameter(torch.zeros(d))
        self.encoder = nn.ModuleList([Block(d, cfg.n_heads, cfg.dropout) for _ in range(cfg.n_layers)])
        self.to_latent = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 2 * cfg.z_dim))
        self.from_latent = nn.Linear(cfg.z_dim, d)
        self.presence = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, S))
        self.decoder = nn.ModuleList([Block(d, cfg.n_heads, cfg.dropout) for _ in range(cfg.n_layers)])
        self.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, S * sum(N_CLASSES)))
        self.ar = cfg.decoder == "ar"
        self.n_features = len(N_CLASSES)

    @torch.jit.export
    def encode(self, grid: Tensor, bar_mask: Tensor, present: Tensor, meter: Tensor,
               n_bars: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, logvar), each (B, z_dim)."""
        T = grid.shape[1]
        x = self.cells(grid, present) + self.cond.bars(T)[None]  # (B, T, d)
        top = self.cls + self.cond.piece(meter, n_bars) + self.set_in(present)  # (B, d)
        x = torch.cat([top[:, None], x], 1)  # (B, 1 + T, d)
        keys = torch.cat([torch.ones_like(bar_mask[:, :1]), bar_mask], 1)
        mask = keys[:, None, None, :]  # (B, 1, 1, 1 + T)
        for block in self.encoder:
            x = block(x, mask)
        mu, logvar = self.to_latent(x[:, 0]).chunk(2, -1)
        return mu, logvar.clamp(-8.0, 8.0)

    def forward(self, z: Tensor, meter: Tensor, n_bars: Tensor, present: Tensor,
                grid: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """The decoder: presence logits (B, S) and cell logits (B, T, S, sum(N_CLASSES)); cells see the
        instrument set given (the true one in training, the chosen one in planning). The parallel
        decoder gives every bar (T = max_bars) from z at once and ignores ``grid``; the autoregressive
        one (``decoder="ar"``) gives bar t from z and ``grid``'s bars before t (T = grid's bars; no grid:
        the first bar only needs none, T = max_bars of which only bar 0 is meaningful)."""
        top = self.from_latent(z) + self.cond.piece(meter, n_bars)  # (B, d)
        presence = self.presence(top)
        if self.ar:
            if grid is None:
                grid = torch.zeros(z.shape[0], self.max_bars, self.n_slots, self.n_features, dtype=torch.long,
                                   device=z.device)
            T = grid.shape[1]
            prev = torch.cat([torch.zeros_like(grid[:, :1]), grid[:, :-1]], 1)  # bar t reads bar t - 1 in
            x = self.cells(prev, present) + (top + self.set_in(present))[:, None] + self.cond.bars(T)[None]
            mask = torch.ones(T, T, dtype=torch.bool, device=z.device).tril()[None, None]
        else:
            T = self.max_bars
            x = (top + self.set_in(present))[:, None] + self.cond.bars(T)[None]  # (B, T, d)
            mask = (torch.arange(T, device=z.device)[None] < n_bars[:, None])[:, None, None, :]
        for block in self.decoder:
            x = block(x, mask)
        return presence, self.head(x).view(z.shape[0], T, self.n_slots, -1)

    def loss(self, batch: dict[str, Tensor], kl_weight: float = 1.0, sample: bool = True,
             free_bits: float = 0.0) -> dict[str, Tensor]:
        """Per-item terms, summed over cells (nats): ``nll/presence``, ``nll/cells``, ``kl``; ``loss``
        the batch mean of presence + cells + kl_weight * KL, where with ``free_bits`` > 0 each latent
        dimension's batch-mean KL counts as at least ``free_bits`` nats (no gradient pushes a dimension
        below it, against posterior collapse; Kingma et al. 2016)."""
        mu, logvar = self.encode(batch["grid"], batch["bar_mask"], batch["present"], batch["meter"],
                                 batch["n_bars"])
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
        presence, cells = self(z, batch["meter"], batch["n_bars"], batch["present"], batch["grid"])
        T = batch["grid"].shape[1]
        p_nll = _presence_nll(presence, batch["present"])
        c_nll = _cell_nll(cells[:, :T], batch["grid"], batch["bar_mask"], batch["present"])
        kl_dims = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)  # (B, z_dim)
        kl = kl_dims.sum(1)
        kl_term = kl_dims.mean(0).clamp_min(free_bits).sum() if free_bits > 0 else kl.mean()
        return {"loss": (p_nll + c_nll).mean() + kl_weight * kl_term, "nll/presence": p_nll,
                "nll/cells": c_nll, "kl": kl, "mu": mu, "logvar": logvar}


class ArrangementAR(nn.Module):
    """The baseline: the instrument set from meter and bars, then bar t's cells from bars < t."""

    def __init__(self, cfg: ArrangementConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.max_bars, self.n_slots = cfg.max_bars, len(cfg.slots)
        S, d = len(cfg.slots), cfg.d_model
        self.cells = CellEmbedding(S, d)
        self.cond = Conditions(cfg)
        self.set_in = nn.Linear(S, d)
        self.presence = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, S))
        self.blocks = nn.ModuleList([Block(d, cfg.n_heads, cfg.dropout) for _ in range(2 * cfg.n_layers)])
        self.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, S * sum(N_CLASSES)))

    def forward(self, grid: Tensor, meter: Tensor, n_bars: Tensor, present: Tensor) -> tuple[Tensor, Tensor]:
        """Presence logits (B, S) and cell logits (B, T, S, sum C) for bar t from bars < t."""
        B, T = grid.shape[:2]
        top = self.cond.piece(meter, n_bars)  # (B, d)
        prev = torch.cat([torch.zeros_like(grid[:, :1]), grid[:, :-1]], 1)  # bar t reads bar t - 1 in
        x = self.cells(prev, present) + (top + self.set_in(present))[:, None] + self.cond.bars(T)[None]
        mask = torch.ones(T, T, dtype=torch.bool, device=grid.device).tril()[None, None]
        for block in self.blocks:
            x = block(x, mask)
        return self.presence(top), self.head(x).view(B, T, len(self.cfg.slots), -1)

    def loss(self, batch: dict[str, Tensor], kl_weight: float = 1.0, sample: bool = True,
             free_bits: float = 0.0) -> dict[str, Tensor]:
        presence, cells = self(batch["grid"], batch["meter"], batch["n_bars"], batch["present"])
        p_nll = _presence_nll(presence, batch["present"])
        c_nll = _cell_nll(cells, batch["grid"], batch["bar_mask"], batch["present"])
        zero = torch.zeros_like(p_nll)
        return {"loss": (p_nll + c_nll).mean(), "nll/presence": p_nll, "nll/cells": c_nll, "kl": zero}


MODELS = {"vae": ArrangementVAE, "ar": ArrangementAR}

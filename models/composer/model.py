"""The composer's decoder: a small GPT (pre-LN, RoPE, tied embeddings) with a fixed-size KV cache.

``forward(idx)`` is the training pass (logits for every position). ``step(idx, pos, k, v)`` runs
``T`` new tokens at positions ``pos..pos+T-1`` against a cache of ``block_size`` slots and returns
the last position's logits and the updated caches: static shapes, so the same method is scripted
(TorchScript) and exported (torch.export) and prefills a prompt (T > 1) or decodes one token. The
engine keeps no state in the module; the caches travel with the call.

With ``factor_sizes`` the token embedding is factorised: each token's row is its own plus one row
per factor table (``factor_ids`` (F, V) picks it, 0 = none). Ours ties a pitch token to its
instrument that way (see ``models.composer.tokens.OursTokenizer.factors``); the tied output head
reads the same summed table.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class ComposerConfig:
    vocab_size: int
    block_size: int = 512  # context (and KV cache) length in tokens
    n_layers: int = 4
    n_heads: int = 4
    d_model: int = 256
    dropout: float = 0.1
    factor_sizes: tuple[int, ...] = ()  # rows of each factor table (see module docstring)
    # False: a token with a first factor (a pitch token) has no row of its own, so its embedding and
    # tied output row are its MIDI pitch's plus its instrument's: every instrument shares the pitch
    # parameters (the baseline of the per-instrument study, docs/representations.md)
    own_pitch_rows: bool = True

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(f"ComposerConfig.d_model ({self.d_model}) must divide by n_heads "
                             f"({self.n_heads}) into an even head size (RoPE rotates pairs)")
        for name in ("vocab_size", "block_size", "n_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"ComposerConfig.{name} must be at least 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> ComposerConfig:
        return ComposerConfig(**{**d, "factor_sizes": tuple(d.get("factor_sizes", ()))})


def rope_tables(block_size: int, head_size: int, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    inv = 1.0 / base ** (torch.arange(0, head_size, 2).float() / head_size)
    angles = torch.outer(torch.arange(block_size).float(), inv)  # (S, D/2)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x (B, H, T, D); cos, sin (T, D/2): rotate each (even, odd) pair by its position's angle."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class Block(nn.Module):
    def __init__(self, cfg: ComposerConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, 4 * cfg.d_model), nn.GELU(),
                                 nn.Linear(4 * cfg.d_model, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)
        self.p = cfg.dropout

    def _heads(self, x: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q = q.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)
        v = v.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        B, T, C = x.shape
        q, k, v = self._heads(x, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.p if self.training else 0.0)
        x = x + self.drop(self.proj(y.transpose(1, 2).reshape(B, T, C)))
        return x + self.drop(self.mlp(self.ln2(x)))

    def cached(self, x: Tensor, cos: Tensor, sin: Tensor, pos: Tensor, mask: Tensor,
               k_cache: Tensor, v_cache: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, T, C) at positions pos..pos+T-1; caches (B, H, S, D); mask (T, S) True = attend."""
        B, T, C = x.shape
        q, k, v = self._heads(x, cos, sin)
        idx = pos + torch.arange(T, device=x.device)
        k_cache.index_copy_(2, idx, k)  # in place: a view of the model's (L, B, H, S, D) cache
        v_cache.index_copy_(2, idx, v)
        y = F.scaled_dot_product_attention(q, k_cache, v_cache, attn_mask=mask)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.mlp(self.ln2(x)), k_cache, v_cache


class Composer(nn.Module):
    def __init__(self, cfg: ComposerConfig, factor_ids: Tensor | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.block_size = cfg.block_size
        self.n_layers = cfg.n_layers
        self.n_heads = cfg.n_heads
        self.head_size = cfg.d_model // cfg.n_heads
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.factors = nn.ModuleList([nn.Embedding(n, cfg.d_model) for n in cfg.factor_sizes])
        if factor_ids is None:
            factor_ids = torch.zeros(len(cfg.factor_sizes), cfg.vocab_size, dtype=torch.long)
        self.register_buffer("factor_ids", factor_ids.long(), persistent=True)  # (F, V)
        own = torch.ones(cfg.vocab_size)
        if not cfg.own_pitch_rows and len(cfg.factor_sizes):
            own[self.factor_ids[0] > 0] = 0.0
        self.register_buffer("own_rows", own[:, None], persistent=False)  # (V, 1)
        self.own_pitch_rows = cfg.own_pitch_rows
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.ln_f = nn.LayerNorm(cfg.d_model)
        cos, sin = rope_tables(cfg.block_size, self.head_size)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def embedding(self) -> Tensor:
        """(V, C) the token table with its factors summed in; input and (tied) output use it."""
        w = self.tok.weight if self.own_pitch_rows else self.tok.weight * self.own_rows
        for i, table in enumerate(self.factors):
            w = w + table.weight[self.factor_ids[i]]
        return w

    def forward(self, idx: Tensor) -> Tensor:
        """idx (B, T) -> logits (B, T, V); T <= block_size."""
        T = idx.shape[1]
        w = self.embedding()
        x = self.drop(F.embedding(idx, w))  # (B, T, C)
        for block in self.blocks:
            x = block(x, self.cos[:T], self.sin[:T])
        return self.ln_f(x) @ w.t()

    @torch.jit.export
    def empty_cache(self, batch: int) -> tuple[Tensor, Tensor]:
        """(L, B, H, S, D) zeros for keys and for values."""
        shape = [self.n_layers, batch, self.n_heads, self.block_size, self.head_size]
        return torch.zeros(shape, device=self.cos.device), torch.zeros(shape, device=self.cos.device)

    @torch.jit.export
    def step(self, idx: Tensor, pos: Tensor, k_cache: Tensor,
             v_cache: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """idx (B, T) new tokens at positions pos..pos+T-1 (pos a 0-d long tensor, pos + T <=
        block_size) -> logits of the last one (B, V) and the caches (L, B, H, S, D), updated in
        place (copying them out per step cost a third of a step) and returned for the caller."""
        T = idx.shape[1]
        w = self.embedding()
        x = F.embedding(idx, w)
        rows = pos + torch.arange(T, device=idx.device)  # (T,)
        cos, sin = self.cos.index_select(0, rows), self.sin.index_select(0, rows)
        keys = torch.arange(self.block_size, device=idx.device)
        mask = keys[None, :] <= rows[:, None]  # (T, S)
        for i, block in enumerate(self.blocks):
            x, _, _ = block.cached(x, cos, sin, pos, mask, k_cache[i], v_cache[i])
        logits = self.ln_f(x[:, -1]) @ w.t()
        return logits, k_cache, v_cache

    def prepare_for_export(self) -> Composer:
        return self.eval()


@torch.no_grad()
def generate_plain(model: Composer, idx: Tensor, n_new: int, temperature: float = 1.0,
                   generator: torch.Generator | None = None) -> Tensor:
    """The benchmark's baseline: no cache, the whole sequence through ``forward`` per token (as a
    HuggingFace generate loop without ``past_key_values``)."""
    for _ in range(n_new):
        logits = model(idx[:, -model.block_size:])[:, -1] / temperature
        nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)
        idx = torch.cat([idx, nxt], dim=1)
    return idx


@torch.no_grad()
def generate_cached(model, idx: Tensor, n_new: int, temperature: float = 1.0,
                    generator: torch.Generator | None = None) -> Tensor:
    """The same sampling through ``step`` and the KV cache (no masks; see inference for those)."""
    B, T = idx.shape
    k, v = model.empty_cache(B)
    logits, k, v = model.step(idx, torch.tensor(0), k, v)
    out = [idx]
    for pos in range(T, T + n_new):
        nxt = torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator)
        out.append(nxt)
        if pos >= model.block_size:
            raise ValueError(f"generate_cached writes at most block_size ({model.block_size}) tokens")
        if pos < T + n_new - 1:
            logits, k, v = model.step(nxt, torch.tensor(pos), k, v)
    return torch.cat(out, dim=1)

"""The composer's training data: pieces of a built multitrack set, reduced to chosen tracks, as token
sequences (with transpositions and chord variants) cropped into batches; held-out NLL per note.

Used by ``models.composer.train`` (the decoder), ``train_musegan`` (the baseline) and ``study``.
"""
from __future__ import annotations

import math
import random

import numpy as np
import torch
import torch.nn.functional as F

from models.composer.model import Composer
from models.composer.tokens import CHORD_VARIANTS
from models.data.multitrack import transpose

IGNORE = -100


def load_pieces(set_name: str, split: str | None = None, limit: int = 0) -> list:
    """A built multitrack set's pieces (models.data.multitrack), the first ``limit`` when not 0."""
    from models.data import multitrack

    return multitrack.load(set_name, split)[:limit or None]


def select_tracks(pieces: list, names: list[str]) -> list:
    """Pieces reduced to the first track of each named instrument; pieces with none of them go."""
    out = []
    for p in pieces:
        keep = [p.instruments.index(n) for n in names if n in p.instruments]
        if not keep:
            continue
        mask = np.isin(p.track, keep)
        remap = np.zeros(len(p.instruments), np.int16)
        remap[keep] = np.arange(len(keep))
        fields = {"notes": p.notes[mask], "track": remap[p.track[mask]],
                  "instruments": [p.instruments[i] for i in keep]}
        if hasattr(p, "programs"):
            fields["programs"] = [p.programs[i] for i in keep]
        out.append(type(p)(**{**vars(p), **fields}))
    return out


def without_conditions(pieces: list) -> list:
    return [type(p)(**{**vars(p), "keys": p.keys[:0], "chords": p.chords[:0]}) for p in pieces]


def data_instruments(pieces: list) -> list[str]:
    """The instruments of a set, in first-seen order: the tokenizer's vocabulary."""
    seen: dict[str, None] = {}
    for p in pieces:
        for name in p.instruments:
            seen.setdefault(name)
    return list(seen)


class Sequences:
    """Token sequences of pieces (and their transpositions and chord variants, see
    ``TrainConfig.chord_dropout``), encoded once, cropped on demand."""

    def __init__(self, pieces: list, tokenizer, shifts: range = range(0, 1), chord_dropout: float = 0.0,
                 chord_thinning: float = 0.0, track_reorder: float = 0.0) -> None:
        self.pieces, self.tok, self.shifts = pieces, tokenizer, list(shifts)
        self.chord_dropout, self.chord_thinning = chord_dropout, chord_thinning
        self.track_reorder = track_reorder
        self.cache: dict[tuple[int, int, str], np.ndarray | None] = {}
        self.piece_cache: dict[tuple[int, int, str], object] = {}

    def piece(self, i: int, shift: int = 0, chords: str = "full"):
        """The i-th piece transposed and with its chord variant; None when a note would leave its
        instrument's range."""
        if (i, shift, chords) not in self.piece_cache:
            piece = transpose(self.pieces[i], shift) if shift else self.pieces[i]
            self.piece_cache[(i, shift, chords)] = None if piece is None else CHORD_VARIANTS[chords](piece)
        return self.piece_cache[(i, shift, chords)]

    def get(self, i: int, shift: int = 0, chords: str = "full") -> np.ndarray | None:
        if (i, shift, chords) not in self.cache:
            piece = self.piece(i, shift, chords)
            self.cache[(i, shift, chords)] = None if piece is None else self.tok.encode(piece)
        return self.cache[(i, shift, chords)]

    def _reordered(self, i: int, shift: int, chords: str, rng: random.Random) -> np.ndarray | None:
        """The piece with a random subset of its tracks written last in each bar (a request's
        filled tracks), a fifth of the bars left in vocabulary order (cells filled in some bars only)."""
        piece = self.piece(i, shift, chords)
        if piece is None:
            return None
        index = {name: k for k, name in enumerate(self.tok.cfg.instruments)}
        tracks = sorted(index[n] for n in piece.instruments)
        if len(tracks) < 2:
            return self.get(i, shift, chords)
        last = tuple(rng.sample(tracks, rng.randint(1, len(tracks) - 1)))
        n_bars = bar_count(piece) + 2  # a chord change after the last note may add bars
        fixed = frozenset(b for b in range(n_bars) if rng.random() < 0.2)
        return self.tok.encode(piece, last, fixed)

    def _variant(self, rng: random.Random) -> str:
        if not self.chord_dropout and not self.chord_thinning:
            return "full"  # draws nothing: runs without augmentation keep their batches
        r = rng.random()
        return "none" if r < self.chord_dropout else "bar" if r < self.chord_dropout + self.chord_thinning \
            else "full"

    def batch(self, batch_size: int, block_size: int,
              rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.zeros((batch_size, block_size), np.int64)
        y = np.full((batch_size, block_size), IGNORE, np.int64)
        for b in range(batch_size):
            ids = None
            while ids is None:
                key = rng.randrange(len(self.pieces)), rng.choice(self.shifts), self._variant(rng)
                # draws nothing without reordering: runs without it keep their batches
                ids = self._reordered(*key, rng) if self.track_reorder and rng.random() < self.track_reorder \
                    else self.get(*key)
            start = rng.randrange(0, max(1, len(ids) - block_size - 1))
            crop = ids[start:start + block_size + 1]
            x[b, :len(crop) - 1] = crop[:-1]
            y[b, :len(crop) - 1] = np.where(self.tok.condition[crop[1:]], IGNORE, crop[1:])
        return torch.from_numpy(x), torch.from_numpy(y)


@torch.no_grad()
def evaluate(model: Composer, seqs: Sequences, device: str = "cpu") -> dict[str, float]:
    """Held-out NLL per note (nats), summed over every predicted token, windows of block_size with
    half of each window as context for the next (every token scored once)."""
    model.eval()
    T = model.block_size
    total, notes, tokens, bars = 0.0, 0, 0, 0
    for i in range(len(seqs.pieces)):
        ids = seqs.get(i)
        notes += seqs.tok.count_notes(ids)
        tokens += len(ids)
        bars += bar_count(seqs.pieces[i])  # bars of music, not BAR tokens (REMI repeats them per track)
        scored = 1  # the first token (BOS) is never predicted
        start = 0
        while scored < len(ids):
            window = torch.from_numpy(ids[start:start + T + 1]).to(device)[None]
            logp = F.log_softmax(model(window[:, :-1]).float(), -1)[0]
            tgt = window[0, 1:]
            nll = -logp.gather(1, tgt[:, None])[:, 0]
            keep = ~torch.from_numpy(seqs.tok.condition[tgt.cpu().numpy()]).to(device)
            first = scored - start - 1  # targets before it were scored by the previous window
            keep[:max(first, 0)] = False
            total += float(nll[keep].sum())
            scored = start + window.shape[1]
            start = scored - 1 - T // 2
    nll = total / max(notes, 1)
    return {"nll_per_note": nll, "ppl_per_note": math.exp(min(nll, 50.0)), "notes": notes,
            "tokens_per_note": tokens / max(notes, 1), "tokens_per_bar": tokens / max(bars, 1)}


def bar_count(piece) -> int:
    from models.composer.tokens import bar_grid

    end = int((piece.notes["time"] + piece.notes["duration"]).max()) if len(piece.notes) else 1
    return len(bar_grid(piece.meters, end)[0])

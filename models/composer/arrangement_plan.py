"""The arrangement model as the composer uses it: ``Arranger`` loads an exported model (or a
checkpoint) and plans a request's instruments and per-track controls from a seed, a latent or an
interpolation between two; ``find_directions`` names directions in the latent. The models and the
summaries they read and write are ``models.composer.arrangement``.

    arranger = Arranger.load("models/pretrained/composer-arrangement.pt")
    plan = arranger.plan(8, (4, 4), instruments=None, seed=3)            # the arranger chooses
    plan.request_controls()  # density / polyphony / rhythm / ranges per instrument (ComposeRequest)
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from models.composer.arrangement import (
    DIRECTIONS,
    FEATURES,
    MAX_REQUEST_BARS,
    N_CLASSES,
    REGISTER_LOW,
    REGISTER_STEP,
    RHYTHM_LEVELS,
    ArrangementConfig,
    ArrangementVAE,
    Summary,
    collate,
    slot_instrument,
    slot_names,
)
from models.composer.tokens import (
    METERS,
    density_bounds,
)
from models.data.instruments import INSTRUMENTS


@dataclass
class ArrangementPlan:
    """What the arranger chose: ``instruments`` in writing order (the most active first: later tracks
    are written seeing earlier ones), and per instrument per bar the composer's controls."""

    instruments: list[str]
    bars: int
    meter: tuple[int, int]
    density: dict[str, list[int]]  # notes per bar: the lower bound of the planned DENSITY bucket
    density_bucket: dict[str, list[int]]
    polyphony: dict[str, list[int]]  # most notes starting together (0 in a silent bar)
    rhythm: dict[str, list[str]]  # RHYTHM_LEVELS
    register: dict[str, list[int]]  # planned mean MIDI pitch (0 in a silent bar)
    z: Tensor = field(repr=False, default_factory=lambda: torch.zeros(0))

    def request_controls(self) -> dict[str, dict]:
        """Whole-piece controls as ``ComposeRequest`` takes them (one value per track): the median
        planned notes per bar, the most planned polyphony, the most common rhythm of the sounding
        bars, a pitch window of an octave either side of the planned mean register, inside the
        instrument's range, and the planned register of every bar as the register target (0 in a
        silent bar). Keys: instruments, density, polyphony, rhythm, ranges, register."""
        out: dict[str, dict] = {"density": {}, "polyphony": {}, "rhythm": {}, "ranges": {}, "register": {}}
        for name in self.instruments:
            inst = slot_instrument(name)
            if inst in out["density"]:
                continue  # ComposeRequest has one track per instrument name
            out["density"][inst] = int(np.median(self.density[name]))
            out["polyphony"][inst] = max(1, max(self.polyphony[name]))
            sounding = [r for r in self.rhythm[name] if r != "silent"] or ["plain"]
            out["rhythm"][inst] = Counter(sounding).most_common(1)[0][0]
            regs = [r for r in self.register[name] if r] or [60]
            low, high = int(INSTRUMENTS[inst].low), int(INSTRUMENTS[inst].high)
            mean = int(round(float(np.mean(regs))))
            out["ranges"][inst] = (max(low, min(mean - 12, high - 12)), min(high, max(mean + 12, low + 12)))
            out["register"][inst] = [min(max(int(r), low), high) if r else 0 for r in self.register[name]]
        out["instruments"] = tuple(dict.fromkeys(slot_instrument(n) for n in self.instruments))  # type: ignore
        return out


def _sample(logits: Tensor, temperature: float, gen: torch.Generator) -> Tensor:
    """One class per row of logits (N, C)."""
    probs = torch.softmax(logits.float() / temperature, -1)
    return torch.multinomial(probs, 1, generator=gen)[:, 0]


class Arranger:
    """A trained arrangement VAE (eager, or the TorchScript file) and its metadata: plan, directions,
    interpolation."""

    def __init__(self, module, metadata: dict) -> None:
        self.module = module.eval()
        self.metadata = metadata
        self.cfg = ArrangementConfig.from_dict(metadata["config"])
        self.slots = list(self.cfg.slots)
        self.directions = {k: torch.tensor(v) for k, v in metadata.get("directions", {}).items()}

    @staticmethod
    def load(path: str | Path) -> Arranger:
        """A shipped TorchScript file (``metadata.json`` inside) or a training checkpoint."""
        from models.format import load_scripted, validate

        path = Path(path)
        if not path.exists():
            raise ValueError(f"{path} does not exist; train one with "
                             "python -m models.composer.train_arrangement")
        try:
            module, meta = load_scripted(path)
        except (RuntimeError, ValueError):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            if ckpt.get("model_kind", "vae") != "vae":
                raise ValueError(f"{path} holds the autoregressive baseline, which has no latent to "
                                 "plan with; load a VAE checkpoint (--model vae)") from None
            module = ArrangementVAE(ArrangementConfig.from_dict(ckpt["config"]))
            module.load_state_dict(ckpt["model"])
            return Arranger(module, ckpt)
        problem = validate(meta, path)
        if problem or meta["task"] != "compose_arrange":
            raise ValueError(problem or f"{path} is a {meta['task']} model, not a compose_arrange one")
        return Arranger(module, meta)

    @property
    def z_dim(self) -> int:
        return self.cfg.z_dim

    def sample_z(self, seed: int) -> Tensor:
        """z (z_dim,) from the prior N(0, I), seeded."""
        return torch.randn(self.z_dim, generator=torch.Generator().manual_seed(int(seed)))

    def direction(self, name: str) -> Tensor:
        """A unit vector (z_dim,) in the latent: moving along it by +k (prior standard deviations)
        raises what it is named for (see ``DIRECTIONS``)."""
        if name not in self.directions:
            raise ValueError(f"no direction {name!r} in this arranger; choose from "
                             f"{', '.join(self.directions) or 'none (train it to find them)'}")
        return self.directions[name].clone()

    @staticmethod
    def interpolate(z_a: Tensor, z_b: Tensor, t: float) -> Tensor:
        """The setting a fraction t in [0, 1] of the way from z_a to z_b (linear: t = 0 is z_a, t = 1 is
        z_b exactly)."""
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"t must be in [0, 1] (0 = z_a, 1 = z_b), got {t}")
        if z_a.shape != z_b.shape:
            raise ValueError(f"z_a and z_b must have the same shape, got {tuple(z_a.shape)} and "
                             f"{tuple(z_b.shape)}")
        return z_a if t == 0.0 else z_b if t == 1.0 else z_a + (z_b - z_a) * t

    def _slots_of(self, instruments) -> list[int]:
        out = []
        for slot in slot_names(list(instruments)):
            if slot not in self.slots:
                known = ", ".join(dict.fromkeys(slot_instrument(s) for s in self.slots))
                inst = slot_instrument(slot)
                why = "more tracks of it than the training data had" if inst in known.split(", ") \
                    else "an instrument it never saw"
                raise ValueError(f"the arranger cannot plan {slot!r} ({why}); name instruments from "
                                 f"{known} (a name repeated as often as the data repeats it)")
            out.append(self.slots.index(slot))
        return out

    @torch.no_grad()
    def decode(self, z: Tensor, bars: int, meter: tuple[int, int], present: Tensor | None = None):
        """Presence probabilities (S,) and, given ``present`` (S,) 0/1, cell logits (bars, S, sum C);
        requests longer than the model's window repeat z per window. An autoregressive decoder's cell
        logits here see silent bars before each bar; plans read them bar by bar (``_rollout``)."""
        m = torch.tensor([METERS.index(tuple(meter))])
        p = present if present is not None else torch.zeros(len(self.slots))
        logits, cells = [], []
        for start in range(0, bars, self.cfg.max_bars):
            n = min(self.cfg.max_bars, bars - start)
            pres, c = self.module(z[None].float(), m, torch.tensor([n]), p[None].float())
            logits.append(pres[0])
            cells.append(c[0, :n])
        return torch.sigmoid(logits[0]), torch.cat(cells)

    def _pick(self, cells: Tensor, pick) -> Tensor:
        """Classes (n, P, F) from cell logits (n, P, sum C), feature by feature; a silent bar (density
        0) is silent in every feature, a sounding one in none."""
        n, P = cells.shape[:2]
        out, start = [], 0
        for c in N_CLASSES:
            out.append(pick(cells[..., start:start + c].reshape(-1, c)).view(n, P))
            start += c
        feats = torch.stack(out, -1)
        silent = feats[..., :1] == 0
        rest = torch.where(silent, torch.zeros_like(feats[..., 1:]), feats[..., 1:].clamp_min(1))
        return torch.cat([feats[..., :1], rest], -1)

    @torch.no_grad()
    def _rollout(self, z: Tensor, bars: int, meter: tuple[int, int], present: Tensor, chosen: list[int],
                 pick) -> tuple[dict[str, np.ndarray], Tensor]:
        """The chosen tracks' classes per bar ({feature: (bars, P)}) picked by ``pick`` (logits (N, C) ->
        classes (N,)) and the cell logits they were picked from (bars, P, sum C). The parallel decoder
        gives a window's bars at once; the autoregressive one bar by bar, each bar seeing the bars
        picked before it. Requests longer than the window repeat z per window."""
        m = torch.tensor([METERS.index(tuple(meter))])
        zb, pb = z[None].float(), present[None].float()
        picked, logits = [], []
        for start in range(0, bars, self.cfg.max_bars):
            n = min(self.cfg.max_bars, bars - start)
            nb = torch.tensor([n])
            if self.cfg.decoder != "ar":
                c = self.module(zb, m, nb, pb)[1][0, :n, chosen]
                picked.append(self._pick(c, pick))
                logits.append(c)
                continue
            grid = torch.zeros(1, n, len(self.slots), len(FEATURES), dtype=torch.long)
            for t in range(n):
                c = self.module(zb, m, nb, pb, grid[:, :t + 1])[1][0, t:t + 1, chosen]  # (1, P, sum C)
                grid[0, t, chosen] = self._pick(c, pick)[0]
                logits.append(c)
            picked.append(grid[0][:, chosen])
        feats = torch.cat(picked).numpy()
        return {name: feats[..., f] for f, name in enumerate(FEATURES)}, torch.cat(logits)

    def plan(self, bars: int, meter: tuple[int, int] = (4, 4), instruments=None, seed: int = 0,
             z: Tensor | None = None, temperature: float = 1.0, allowed=None) -> ArrangementPlan:
        """Choose instruments (``instruments=None``: the arranger chooses, among the tracks ``allowed``
        names when given, such as a composer's instruments; else exactly those named, a name repeated
        for several tracks; a plan names the k-th track of a name ``name#k``) and per-bar per-track
        controls. ``z`` (z_dim,) is the setting; without it the seed draws one from the prior. The same
        arguments give the same plan."""
        if not isinstance(bars, int) or not 1 <= bars <= MAX_REQUEST_BARS:
            raise ValueError(f"bars must be a whole number 1..{MAX_REQUEST_BARS}, got {bars!r}; ask for "
                             "at least one bar")
        if tuple(meter) not in METERS:
            raise ValueError(f"meter {meter} is not supported; use one of "
                             f"{', '.join(f'{n}/{d}' for n, d in METERS)}")
        if not temperature > 0:
            raise ValueError(f"temperature must be above 0, got {temperature}; 1.0 samples the model as is")
        if instruments is not None and len(instruments) == 0:
            raise ValueError("instruments is empty; name at least one, or pass None to let the arranger "
                             "choose")
        gen = torch.Generator().manual_seed(int(seed))
        if z is None:
            z = torch.randn(self.z_dim, generator=gen)
        elif tuple(z.shape) != (self.z_dim,):
            raise ValueError(f"z must have shape ({self.z_dim},), got {tuple(z.shape)}")
        probs, _ = self.decode(z, min(bars, self.cfg.max_bars), meter)
        if instruments is not None:
            chosen = self._slots_of(instruments)
        else:
            mask = torch.ones(len(self.slots), dtype=torch.bool)
            if allowed is not None:
                mask = torch.zeros(len(self.slots), dtype=torch.bool)
                mask[self._slots_of(allowed)] = True  # a name once: its first track only
            logit = torch.logit(probs.clamp(1e-6, 1 - 1e-6)) / temperature
            draw = (torch.rand(len(self.slots), generator=gen) < torch.sigmoid(logit)) & mask
            if not draw.any():  # at least one track: the likeliest allowed one
                draw[int(torch.where(mask, probs, torch.full_like(probs, -1.0)).argmax())] = True
            chosen = torch.nonzero(draw)[:, 0].tolist()
        present = torch.zeros(len(self.slots))
        present[chosen] = 1.0
        feats, cells = self._rollout(z, bars, meter, present, chosen, lambda x: _sample(x, temperature, gen))
        names = [self.slots[s] for s in chosen]
        order = sorted(range(len(chosen)), key=lambda i: (-feats["density"][:, i].mean(), chosen[i]))
        # a sounding bar's register is the decoder's expected mean pitch there, not the sampled 6-semitone
        # class: it moves smoothly with z, so a direction moves it every time (a sampled class stayed
        # put or jumped a class against the move in about one seed in eight)
        start = sum(N_CLASSES[:FEATURES.index("register")])
        stop = start + N_CLASSES[FEATURES.index("register")]
        p = torch.softmax(cells[..., start:stop].float(), -1)[..., 1:]
        centres = REGISTER_LOW + REGISTER_STEP * torch.arange(p.shape[-1]) + REGISTER_STEP / 2
        expected = ((p * centres).sum(-1) / p.sum(-1).clamp_min(1e-8)).numpy()
        reg = lambda k, e: 0 if k == 0 else int(round(float(e)))
        return ArrangementPlan(
            instruments=[names[i] for i in order], bars=bars, meter=tuple(meter),
            density={names[i]: [density_bounds(int(b))[0] for b in feats["density"][:, i]] for i in order},
            density_bucket={names[i]: feats["density"][:, i].tolist() for i in order},
            polyphony={names[i]: feats["polyphony"][:, i].tolist() for i in order},
            rhythm={names[i]: [RHYTHM_LEVELS[int(k)] for k in feats["rhythm"][:, i]] for i in order},
            register={names[i]: [reg(k, e) for k, e in zip(feats["register"][:, i], expected[:, i])]
                      for i in order}, z=z)

    @torch.no_grad()
    def expected(self, z: Tensor, bars: int, meter: tuple[int, int] = (4, 4)) -> dict[str, float]:
        """The decoder's expectations at z (no sampling): number of instruments, and over the likely
        set (presence > 0.5) the mean density bucket, polyphony, register and rhythm classes (an
        autoregressive decoder's bar by bar, each bar seeing the likeliest bars before it)."""
        probs, _ = self.decode(z, bars, meter)
        present = (probs > 0.5).float()
        if not present.any():
            present[int(probs.argmax())] = 1.0
        chosen = torch.nonzero(present)[:, 0].tolist()
        _, cells = self._rollout(z, bars, meter, present, chosen, lambda x: x.argmax(-1))
        out, start = {"instruments": float(probs.sum())}, 0
        for f, c in enumerate(N_CLASSES):
            p = torch.softmax(cells[..., start:start + c], -1)
            out[FEATURES[f]] = float((p * torch.arange(c)).sum(-1).mean())
            start += c
        return out


def summary_stats(s: Summary) -> dict[str, float]:
    """What the directions are named for, measured on a summary: instruments present, and over the
    present cells the mean density bucket, polyphony, register and rhythm classes."""
    cells = s.grid[:, s.present]  # (T, P, F)
    out = {"instruments": float(s.present.sum())}
    for f, name in enumerate(FEATURES):
        out[name] = float(cells[..., f].mean()) if cells.size else 0.0
    return out


@torch.no_grad()
def find_directions(model: ArrangementVAE, items: list[Summary],
                    quantile: float = 0.25) -> dict[str, list[float]]:
    """Per name in DIRECTIONS: mean latent (mu) of the windows in the top ``quantile`` of that summary
    minus that of the bottom ``quantile``, as a unit vector (moving by +k is k prior std)."""
    model.eval()
    mus = []
    for i in range(0, len(items), 64):
        b = collate(items[i:i + 64], model.cfg.max_bars)
        mus.append(model.encode(b["grid"], b["bar_mask"], b["present"], b["meter"], b["n_bars"])[0])
    mu = torch.cat(mus)
    stats = [summary_stats(s) for s in items]
    out = {}
    for name in DIRECTIONS:
        v = np.array([st[name] for st in stats])
        lo, hi = np.quantile(v, quantile), np.quantile(v, 1 - quantile)
        high, low = torch.from_numpy(v >= hi), torch.from_numpy(v <= lo)
        if lo == hi:  # the set barely varies: split at the value itself
            high, low = torch.from_numpy(v > hi), torch.from_numpy(v <= lo)
        if not high.any() or not low.any():
            continue
        d = mu[high].mean(0) - mu[low].mean(0)
        out[name] = (d / d.norm().clamp_min(1e-8)).tolist()
    return out


def nll_summary(terms: dict[str, Tensor], n_cells: int) -> dict[str, float]:
    total = float((terms["nll/presence"] + terms["nll/cells"] + terms["kl"]).sum())
    return {"nll_per_cell": total / max(n_cells, 1), "total_nats": total}


def log_mean_exp(x: Tensor, dim: int) -> Tensor:
    return x.logsumexp(dim) - math.log(x.shape[dim])

"""A bidirectional voice-infill model for four-part chorales (Coconet-style, Huang et al. 2017).

The score is a grid of 16th-note frames by voice (soprano, alto, tenor, bass). Each cell holds a
pitch or a rest and an onset flag (does a note start here); a hidden cell holds MASK in both. A
stack of dilated 1-D convolutions over time (receptive field about eight 4/4 bars, plus a mean over
the whole piece for the key) reads every cell at once, the given voices before and after a hidden
cell alike, and predicts the pitch and the onset of each hidden cell.

Filling (``VoiceInfiller.fill``) runs ``passes`` rounds: each round predicts every hidden cell and
fixes the most confident share of those still open, so later cells see earlier choices (one pass is
plain argmax; ``benchmarks/compose_voice_infill.py`` measures which is better). Every voice keeps to
its range (or a narrower one asked for). Frames become notes where the onset flag is set or the
pitch changes. With ``keep_rhythm`` the hidden part's own onsets and durations are kept (its rests
and onsets stay visible) and only the pitch of each note is chosen ("preserve rhythm").

``models.composer.inference.Composer`` attaches a companion infiller (``COMPANION_FILE`` beside the
composer) and uses it for requests that fill whole voices of bars around given ones.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bridge.score import NOTE_DTYPE

VOICES = ("soprano", "alto", "tenor", "bass")
TASK = "compose_infill"
COMPANION_FILE = "composer-voice-infill.pt"
COMPANION_OF = ("composer-satb",)  # the composers (metadata names) a shipped infiller pairs with
# fill passes of a composer request: its fills are sampled, and sampled fills need passes
# (test note F1 at temperature 1: 0.354 at 1 pass, 0.468 at 4, 0.525 at 16)
PASSES = 16
FRAME_TICKS = 6  # a 16th note at 24 ticks per quarter
RESOLUTION = 24
VELOCITY = 64
ONSET_MASK = 2  # onset input: 0 no onset, 1 onset, 2 hidden


@dataclass(frozen=True)
class VoiceInfillConfig:
    n_voices: int = 4
    pitch_low: int = 33  # MIDI; pitches outside are clamped into the vocabulary
    pitch_high: int = 86
    d_voice: int = 32  # embedding width per voice cell
    d_model: int = 128
    n_blocks: int = 10
    kernel: int = 3
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16)  # cycled over the blocks
    dropout: float = 0.1
    max_bar_frames: int = 48  # a 12/8 or 3/2 bar is 24 frames

    @property
    def n_pitches(self) -> int:
        return self.pitch_high - self.pitch_low + 1

    @property
    def rest(self) -> int:  # pitch class index of a rest; MASK is rest + 1
        return self.n_pitches

    @property
    def mask(self) -> int:
        return self.n_pitches + 1

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> VoiceInfillConfig:
        return VoiceInfillConfig(**{**d, "dilations": tuple(d["dilations"])})


class Block(nn.Module):
    """Pre-norm residual block: dilated conv over time, GELU, 1x1 conv."""

    def __init__(self, d: int, kernel: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.conv = nn.Conv1d(d, d, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2)
        self.mix = nn.Conv1d(d, d, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, C)
        h = self.norm(x).transpose(1, 2)  # (B, C, T)
        h = self.mix(F.gelu(self.conv(h))).transpose(1, 2)
        return x + self.drop(h)


class VoiceInfillNet(nn.Module):
    def __init__(self, cfg: VoiceInfillConfig) -> None:
        super().__init__()
        self.cfg = cfg
        V, E, C = cfg.n_voices, cfg.d_voice, cfg.d_model
        self.pitch_emb = nn.Embedding(V * (cfg.n_pitches + 2), E)  # per voice: pitches, rest, mask
        self.onset_emb = nn.Embedding(V * 3, E)
        self.inp = nn.Linear(V * E, C)
        self.pos_emb = nn.Embedding(cfg.max_bar_frames, C)
        self.bar_emb = nn.Embedding(cfg.max_bar_frames + 1, C)
        self.blocks = nn.ModuleList(Block(C, cfg.kernel, cfg.dilations[i % len(cfg.dilations)], cfg.dropout)
                                    for i in range(cfg.n_blocks))
        self.context = nn.Linear(C, C)  # the whole piece's mean (its key), added half way
        self.norm = nn.LayerNorm(C)
        self.pitch_head = nn.Linear(C, V * (cfg.n_pitches + 1))
        self.onset_head = nn.Linear(C, V)
        self.register_buffer("voice_offset", torch.arange(V), persistent=False)
        self.stride = cfg.n_pitches + 2  # plain ints: TorchScript reads no dataclass
        self.max_pos = cfg.max_bar_frames

    def forward(self, pitch: Tensor, onset: Tensor, bar_pos: Tensor,
                bar_frames: Tensor) -> tuple[Tensor, Tensor]:
        """pitch (B, V, T) in 0..mask, onset (B, V, T) in 0..2, bar_pos (B, T) frame in the bar,
        bar_frames (B, T) bar length -> pitch logits (B, V, T, P + 1), onset logits (B, V, T)."""
        B, V, T = pitch.shape
        off = self.voice_offset[None, :, None]
        e = self.pitch_emb(pitch + off * self.stride) + self.onset_emb(onset + off * 3)
        x = self.inp(e.permute(0, 2, 1, 3).reshape(B, T, -1))  # (B, T, C)
        x = x + self.pos_emb(bar_pos.clamp(0, self.max_pos - 1))
        x = x + self.bar_emb(bar_frames.clamp(0, self.max_pos))
        half = len(self.blocks) // 2
        for i, block in enumerate(self.blocks):
            if i == half:
                x = x + self.context(x.mean(1, keepdim=True))
            x = block(x)
        x = self.norm(x)
        logits = self.pitch_head(x).reshape(B, T, V, -1).permute(0, 2, 1, 3)  # (B, V, T, P + 1)
        onsets = self.onset_head(x).transpose(1, 2)  # (B, V, T)
        return logits, onsets

    def prepare_for_export(self) -> VoiceInfillNet:
        return self.eval()


# frames <-> notes

def metre_frames(n_frames: int, bar_starts: np.ndarray,
                 meter: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(bar_pos, bar_frames) per frame: the frame's place in its bar, counted from the first full
    bar's downbeat (a pickup bar's frames sit at the end of a bar), and the bar's length."""
    bar = max(1, meter[0] * 4 * RESOLUTION // meter[1] // FRAME_TICKS)
    anchor = 0
    if len(bar_starts) > 1 and (bar_starts[1] - bar_starts[0]) // FRAME_TICKS < bar:
        anchor = int(bar_starts[1]) // FRAME_TICKS
    pos = (np.arange(n_frames) - anchor) % bar
    return pos.astype(np.int64), np.full(n_frames, bar, np.int64)


def to_frames(voices: list[np.ndarray], n_frames: int,
              cfg: VoiceInfillConfig) -> tuple[np.ndarray, np.ndarray]:
    """Notes per voice (NOTE_DTYPE) -> pitch (V, T) indices (rest where none sounds) and onset (V, T);
    a later or higher note wins a shared frame."""
    pitch = np.full((len(voices), n_frames), cfg.rest, np.int64)
    onset = np.zeros((len(voices), n_frames), np.int64)
    for v, notes in enumerate(voices):
        for n in notes[np.lexsort((notes["pitch"], notes["time"]))]:
            s = int(n["time"]) // FRAME_TICKS
            e = max(s + 1, -(-int(n["time"] + n["duration"]) // FRAME_TICKS))
            if s >= n_frames:
                continue
            pitch[v, s:e] = min(max(int(n["pitch"]), cfg.pitch_low), cfg.pitch_high) - cfg.pitch_low
            onset[v, s] = 1
    return pitch, onset


def to_notes(pitch: np.ndarray, onset: np.ndarray, cells: np.ndarray, cfg: VoiceInfillConfig) -> np.ndarray:
    """One voice's frames (T,) -> the notes starting in ``cells`` (T,) bool, each ending at the next
    onset, rest, pitch change or the end of its run of cells."""
    rows = []
    T = len(pitch)
    t = 0
    while t < T:
        if not cells[t] or pitch[t] == cfg.rest:
            t += 1
            continue
        e = t + 1
        while e < T and cells[e] and pitch[e] == pitch[t] and not onset[e]:
            e += 1
        rows.append((t * FRAME_TICKS, int(pitch[t]) + cfg.pitch_low, (e - t) * FRAME_TICKS))
        t = e
    notes = np.zeros(len(rows), NOTE_DTYPE)
    if rows:
        arr = np.array(rows, np.int64)
        notes["time"], notes["pitch"], notes["duration"] = arr[:, 0], arr[:, 1], arr[:, 2]
        notes["velocity"] = VELOCITY
    return notes


# filling

def _choose(logp: Tensor, temperature: float, top_p: float, generator: torch.Generator) -> Tensor:
    """Index per row of log-probabilities (N, K): argmax at temperature 0, else a nucleus sample."""
    if temperature <= 0:
        return logp.argmax(-1)
    probs = torch.softmax(logp / temperature, -1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < top_p
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p * keep)
    return torch.multinomial(probs / probs.sum(-1, keepdim=True), 1, generator=generator)[:, 0]


class VoiceInfiller:
    """A trained infill net (eager or TorchScript) and its config; ``fill`` writes hidden cells."""

    def __init__(self, module, cfg: VoiceInfillConfig, metadata: dict | None = None) -> None:
        self.module, self.cfg, self.metadata = module, cfg, metadata or {}
        self.voices = list(self.metadata.get("voices", VOICES))

    @staticmethod
    def load(path: str | Path, device: str = "cpu") -> VoiceInfiller:
        from models.format import load_for_inference, validate

        module, meta = load_for_inference(path, device)
        problem = validate(meta, Path(path))
        if problem or meta["task"] != TASK:
            raise ValueError(problem or f"{path} is a {meta['task']} model, not a {TASK} one")
        return VoiceInfiller(module, VoiceInfillConfig.from_dict(meta["model"]), meta)

    def ranges(self, narrower: dict[str, tuple[int, int]] | None = None) -> list[tuple[int, int]]:
        from models.data.instruments import INSTRUMENTS

        out = []
        for name in self.voices:
            low, high = INSTRUMENTS[name].low, INSTRUMENTS[name].high
            if narrower and name in narrower:
                low, high = max(low, narrower[name][0]), min(high, narrower[name][1])
            out.append((low, high))
        return out

    @torch.no_grad()
    def fill(self, voices: list[np.ndarray], hidden: np.ndarray, bar_starts: np.ndarray,
             meter: tuple[int, int], passes: int = 1, temperature: float = 0.0, top_p: float = 1.0,
             seed: int = 0, ranges: dict[str, tuple[int, int]] | None = None,
             keep_rhythm: bool = False) -> list[np.ndarray]:
        """Notes per voice (NOTE_DTYPE, 24 ticks per quarter; a hidden cell's notes are ignored
        unless ``keep_rhythm``) and ``hidden`` (V, T) bool frames to write -> the written notes of
        each voice, only notes starting in its hidden frames (empty for a voice with none)."""
        cfg = self.cfg
        V, T = hidden.shape
        if V != len(self.voices):
            raise ValueError(f"expected hidden frames for {len(self.voices)} voices, got {V}")
        if passes < 1:
            raise ValueError(f"passes must be 1 or more, got {passes}")
        pitch, onset = to_frames(voices, T, cfg)
        rhythm = pitch != cfg.rest  # the hidden part's own sounding frames (keep_rhythm)
        if keep_rhythm:
            open_ = hidden & rhythm
            pitch[open_] = cfg.mask
        else:
            open_ = hidden.copy()
            pitch[hidden], onset[hidden] = cfg.mask, ONSET_MASK
        allowed = torch.zeros(V, cfg.n_pitches + 1, dtype=torch.bool)
        allowed[:, cfg.rest] = not keep_rhythm
        for v, (low, high) in enumerate(self.ranges(ranges)):
            lo, hi = max(low, cfg.pitch_low) - cfg.pitch_low, min(high, cfg.pitch_high) - cfg.pitch_low
            allowed[v, lo:hi + 1] = True
        pos, bar = metre_frames(T, bar_starts, meter)
        pos_t, bar_t = torch.from_numpy(pos)[None], torch.from_numpy(bar)[None]
        units = self._units(open_, onset, keep_rhythm)
        gen = torch.Generator().manual_seed(int(seed))
        for k in range(passes):
            if not units:
                break
            logits, onsets = self.module(torch.from_numpy(pitch)[None], torch.from_numpy(onset)[None],
                                         pos_t, bar_t)
            masked = logits[0].float().masked_fill(~allowed[:, None, :], -1e9)
            logp = torch.log_softmax(masked, -1)  # (V, T, P + 1)
            scores = torch.stack([logp[v, frames].mean(0) for v, frames in units])  # (U, P+1)
            choice = _choose(scores, temperature, top_p, gen)
            confidence = scores.gather(1, choice[:, None])[:, 0]
            n_fix = math.ceil(len(units) / (passes - k))
            order = confidence.argsort(descending=True)[:n_fix].tolist()
            for u in order:
                v, frames = units[u]
                pitch[v, frames.numpy()] = int(choice[u])
                if not keep_rhythm:
                    t = int(frames[0])
                    p_on = float(torch.sigmoid(onsets[0, v, t]))
                    on = p_on > 0.5 if temperature <= 0 else float(torch.rand(1, generator=gen)) < p_on
                    onset[v, t] = int(on)
            fixed = set(order)
            units = [u for i, u in enumerate(units) if i not in fixed]
        out = []
        for v in range(V):
            starts = onset[v].copy()
            runs = hidden[v] & ~np.concatenate([[False], hidden[v, :-1]])
            starts[runs] = 1  # a hidden run starts a note even where a given one held on
            out.append(to_notes(pitch[v], starts, hidden[v], cfg))
        return out

    @staticmethod
    def _units(open_: np.ndarray, onset: np.ndarray, keep_rhythm: bool) -> list[tuple[int, Tensor]]:
        """What one choice fixes: a frame, or with ``keep_rhythm`` a whole kept note's frames."""
        units = []
        for v in range(open_.shape[0]):
            frames = np.flatnonzero(open_[v])
            if not keep_rhythm:
                units += [(v, torch.tensor([t])) for t in frames]
                continue
            start = 0
            for i in range(1, len(frames) + 1):
                if i == len(frames) or frames[i] != frames[i - 1] + 1 or onset[v, frames[i]]:
                    units.append((v, torch.from_numpy(frames[start:i])))
                    start = i
        return units


# the composer's companion (models.composer.inference.Composer.load / compose)

def attach_infiller(composer_meta: dict, infiller, folder: Path, device: str = "cpu") -> VoiceInfiller | None:
    """``infiller`` as given (a VoiceInfiller or its file), none for False, or for None the companion
    file in ``folder`` when it names this composer among those it pairs with."""
    if infiller is False:
        return None
    if isinstance(infiller, VoiceInfiller):
        return infiller
    if infiller is not None:
        return VoiceInfiller.load(infiller, device)
    return companion_for(composer_meta, folder, device)


def companion_for(composer_meta: dict, folder: Path | None = None,
                  device: str = "cpu") -> VoiceInfiller | None:
    """The infiller in ``folder`` (default: the shipped models/pretrained) paired with the composer
    whose metadata this is, or None."""
    path = (folder or Path(__file__).resolve().parent.parent / "pretrained") / COMPANION_FILE
    if not path.is_file():
        return None
    infiller = VoiceInfiller.load(path, device)
    paired = composer_meta.get("name") in infiller.metadata.get("companion_of", ())
    instruments = {i["name"] for i in composer_meta.get("instruments", [])}
    return infiller if paired and set(infiller.voices) <= instruments else None


KEEP = "keep"  # the rhythm control that keeps a filled voice's own onsets and durations


def can_fill(infiller: VoiceInfiller | None, request, instruments: list[str]) -> bool:
    """Whether ``infiller`` writes ``request``'s infill cells: every voice of it given, the filled
    ones in ``infill``, no instrument it has no voice for, no chords, density, given_bars, no rhythm
    control but ``keep`` on a filled voice, and bars it knows."""
    if infiller is None or not request.infill:
        return False
    voices = infiller.voices
    names = set(request.instruments or instruments) | set(request.given)
    rhythm_ok = all(level == KEEP and name in request.infill for name, level in request.rhythm.items())
    if request.rhythm and set(request.rhythm) != set(request.infill):
        rhythm_ok = False  # keep on every filled voice or on none
    if (names - set(voices) or any(v not in request.given for v in voices) or not rhythm_ok
            or request.chords or request.density or request.given_bars):
        return False
    numerator, denominator = request.meter
    bar_ticks = numerator * 4 * RESOLUTION // denominator
    return bar_ticks % FRAME_TICKS == 0 and 0 < bar_ticks // FRAME_TICKS <= infiller.cfg.max_bar_frames


def fill_request(infiller: VoiceInfiller, request, instruments: list[str]):
    """The ComposeRequest with its infill cells written by ``infiller`` and turned into given notes
    (``infill`` emptied), or None where the infiller cannot honour it (``can_fill``). Voices whose
    rhythm control is ``keep`` keep their given notes' onsets and durations in the filled cells
    (preserve rhythm): only the pitches are written."""
    import dataclasses

    if not can_fill(infiller, request, instruments):
        return None
    voices = infiller.voices
    numerator, denominator = request.meter
    bar_ticks = numerator * 4 * RESOLUTION // denominator
    bar = bar_ticks // FRAME_TICKS
    hidden = np.zeros((len(voices), request.bars * bar), bool)
    for name, (start, stop) in request.infill.items():
        hidden[voices.index(name), start * bar:stop * bar] = True
    keep_rhythm = any(level == KEEP for level in request.rhythm.values())
    given, context = [], []
    for v, name in enumerate(voices):
        notes = request.given[name]
        cell = notes["time"] // FRAME_TICKS
        inside = (cell < hidden.shape[1]) & hidden[v, np.minimum(cell, hidden.shape[1] - 1)]
        given.append(notes[(cell < hidden.shape[1]) & ~inside])
        # the notes the infiller sees: a kept rhythm's hidden notes too (their pitches are ignored)
        kept = request.rhythm.get(name) == KEEP
        context.append(notes[cell < hidden.shape[1]] if kept else given[-1])
    written = infiller.fill(context, hidden, np.arange(request.bars) * bar_ticks, (numerator, denominator),
                            PASSES, request.temperature, request.top_p, request.seed, dict(request.ranges),
                            keep_rhythm=keep_rhythm)
    keep = {name: np.sort(np.concatenate([given[v], written[v]]), order=["time", "pitch"])
            for v, name in enumerate(voices)}
    return dataclasses.replace(request, given=keep, infill={}, rhythm={})


# export

def infill_metadata(cfg: VoiceInfillConfig, name: str, metrics: dict | None = None, data: str = "",
                    version: str = "1.0.0") -> dict:
    from bridge.protocol import PROTOCOL_VERSION
    from models.data.instruments import INSTRUMENTS
    from models.format import FORMAT_VERSION

    return {
        "format_version": FORMAT_VERSION, "protocol_version": PROTOCOL_VERSION, "task": TASK,
        "name": name, "version": version, "voices": list(VOICES),
        "ranges": [[INSTRUMENTS[v].low, INSTRUMENTS[v].high] for v in VOICES],
        "resolution": RESOLUTION, "frame_ticks": FRAME_TICKS, "model": cfg.to_dict(), "data": data,
        "inputs": ["pitch (1,V,T) int64", "onset (1,V,T) int64", "bar_pos (1,T) int64",
                   "bar_frames (1,T) int64"],
        "outputs": ["pitch logits (1,V,T,P+1) float32", "onset logits (1,V,T) float32"],
        "methods": ["forward"], "metrics": metrics or {}, "companion_of": list(COMPANION_OF),
    }


def export_infiller(model: VoiceInfillNet, path: str | Path, metadata: dict, atol: float = 1e-4) -> Path:
    """Save as TorchScript with its metadata, reload, and compare to eager mode on random input."""
    from models.format import save_scripted

    path = Path(path)
    if path.suffix != ".pt":
        raise ValueError(f"the voice infiller exports to TorchScript (.pt); got {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.prepare_for_export()
    loaded = save_scripted(model, path, metadata)
    cfg = model.cfg
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for T in (1, 37, 200):
            x = (torch.randint(0, cfg.mask + 1, (1, cfg.n_voices, T), generator=g),
                 torch.randint(0, 3, (1, cfg.n_voices, T), generator=g),
                 torch.randint(0, 16, (1, T), generator=g), torch.full((1, T), 16))
            for want, got in zip(model(*x), loaded(*x)):
                err = float((want - got).abs().max())
                if not err <= atol:
                    raise RuntimeError(f"exported infiller differs from eager for {T} frames: "
                                       f"max abs error {err:.3g} > {atol}")
    return path

"""Griffin-Lim as a vocoder file: log-mel frames in, audio out, with the GAN vocoder's interface and
metadata (task ``perform_vocoder``), so the neural performer, the engine and the CLI can play the
synthesis model's mels through it where the trained vocoder is not good enough yet.

Magnitudes come from the mel filters' pseudo-inverse (clamped at 0); phases from fast Griffin-Lim
(Perraudin, Balazs and Søndergaard 2013, momentum 0.99), started from a fixed pseudo-random phase
so that the same mel always gives the same audio. It has no trained weights: its quality is the
mel's (80 bands to 8 kHz, nothing above) with Griffin-Lim's phase smear. Measured against the GAN
vocoder in benchmarks/RESULTS.md, "Perform: which half of the chain loses the notes".

    python -m models.performer.griffin_lim --iters 16 --export models/pretrained/performer-vocoder-gl.pt
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from models.performer import render
from models.performer.vocoder import export_vocoder, vocoder_metadata

NAME = "performer-vocoder-gl"
DEFAULT_ITERS = 16  # the most that keeps the whole neural chain above 20x real time on one thread


class GriffinLim(nn.Module):
    """(B, n_mels, T) natural-log mel -> (B, (T - 1) * hop) float32 audio."""

    def __init__(self, iters: int = DEFAULT_ITERS, momentum: float = 0.99) -> None:
        super().__init__()
        if not 1 <= iters <= 1000:
            raise ValueError(f"iters must be 1..1000, got {iters}")
        self.iters, self.momentum = int(iters), float(momentum)
        self.n_fft, self.hop, self.win = render.N_FFT, render.HOP, render.WIN
        self.register_buffer("inverse", torch.linalg.pinv(render.mel_filterbank()).float())
        self.register_buffer("window", torch.hann_window(render.WIN))
        bins = torch.arange(render.N_FFT // 2 + 1, dtype=torch.float64)
        self.register_buffer("bin_seed", (bins * 12.9898).float())

    def _istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        return torch.istft(spec, self.n_fft, self.hop, self.win, self.window, center=True, length=length)

    def _stft(self, audio: torch.Tensor) -> torch.Tensor:
        return torch.stft(audio, self.n_fft, self.hop, self.win, self.window, center=True, pad_mode="reflect",
                          return_complex=True)

    def magnitudes(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, T) natural-log mel -> (B, F, T) linear magnitudes (the filters' pseudo-inverse)."""
        return torch.clamp(self.inverse @ torch.exp(mel.float()), min=0.0)

    def initial_phase(self, frames: int, first: int = 0) -> torch.Tensor:
        """(F, frames) unit phasors of frames first..first + frames - 1: a fixed pseudo-random phase per
        (bin, frame), the classic sine hash, the same for every call."""
        t = (torch.arange(frames, dtype=torch.float32, device=self.bin_seed.device) + first) * 78.233
        hashed = torch.sin(self.bin_seed[:, None] + t[None, :]) * 43758.5453
        phase = 2.0 * torch.pi * (hashed - torch.floor(hashed))
        return torch.polar(torch.ones_like(phase), phase)

    def refine(self, mag: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        """``iters`` fast Griffin-Lim steps from ``angles`` (B, F, T unit phasors): the phasors reached."""
        length = (mag.shape[-1] - 1) * self.hop
        previous = torch.zeros_like(angles)
        for _ in range(self.iters):
            rebuilt = self._stft(self._istft(mag * angles, length))
            angles = rebuilt - (self.momentum / (1.0 + self.momentum)) * previous
            angles = angles / torch.clamp(angles.abs(), min=1e-8)
            previous = rebuilt
        return angles

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        mag = self.magnitudes(mel)
        angles = self.initial_phase(mel.shape[-1])[None].expand(mag.shape[0], -1, -1)
        return self._istft(mag * self.refine(mag, angles), (mel.shape[-1] - 1) * self.hop)


class CarriedPhase:
    """Griffin-Lim for a stream of overlapping windows on one frame grid (a live session's blocks):
    each window starts from the phase the last window reached on the frames they share and, past
    them, from its last frame advanced by that frame's own phase advance (a phase vocoder's
    extrapolation); only the frames no window has seen yet get the hash phase. A tone then keeps one
    phase track from block to block instead of a new guess each block, which smeared its pitch.

        carried = CarriedPhase(GriffinLim(16))
        audio = carried(mel, first_frame)   # mel (n_mels, T) of frames first_frame.. on the grid
    """

    def __init__(self, model: GriffinLim) -> None:
        self.model = model
        self.first, self.angles = 0, None  # the last window's first frame and (F, T) phasors

    @torch.no_grad()
    def __call__(self, mel: torch.Tensor, first_frame: int) -> torch.Tensor:
        """(n_mels, T) log-mel of frames first_frame .. first_frame + T - 1 -> ((T - 1) * hop,) audio."""
        frames = mel.shape[-1]
        mag = self.model.magnitudes(mel[None])
        angles = self.model.initial_phase(frames, first_frame)
        if self.angles is not None:
            known_end = self.first + self.angles.shape[1]
            lo, hi = max(first_frame, self.first), min(first_frame + frames, known_end)
            if hi > lo:  # a window that shares no frame with the last (after silence) starts afresh
                angles[:, lo - first_frame:hi - first_frame] = self.angles[:, lo - self.first:hi - self.first]
            if lo < hi == known_end < first_frame + frames and self.angles.shape[1] >= 2:
                step = self.angles[:, -1] * self.angles[:, -2].conj()  # phase advance per frame
                k = torch.arange(1, first_frame + frames - known_end + 1, dtype=torch.float32)
                advance = torch.polar(torch.ones(len(step), len(k)), torch.angle(step)[:, None] * k[None])
                angles[:, known_end - first_frame:] = self.angles[:, -1:] * advance
        angles = self.model.refine(mag, angles[None])
        self.first, self.angles = first_frame, angles[0]
        return self.model._istft(mag * angles, (frames - 1) * self.model.hop)[0]


def metadata_for(model: GriffinLim) -> dict:
    settings = {"generator": "griffin-lim", "iters": model.iters, "momentum": model.momentum}
    return vocoder_metadata(NAME, 0, settings)


def export(model: GriffinLim, path: str | Path) -> Path:
    """TorchScript with metadata, reloaded and checked against eager (``vocoder.export_vocoder``)."""
    return export_vocoder(model, path, metadata_for(model), frames=(40, 300))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iters", type=int, default=DEFAULT_ITERS, help="iterations (default %(default)s)")
    p.add_argument("--export", required=True, help="the .pt file to write")
    args = p.parse_args(argv)
    print(export(GriffinLim(args.iters), args.export))


if __name__ == "__main__":
    main()

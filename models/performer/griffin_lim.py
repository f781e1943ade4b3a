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

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        frames = mel.shape[-1]
        length = (frames - 1) * self.hop
        mag = torch.clamp(self.inverse @ torch.exp(mel.float()), min=0.0)  # (B, F, T)
        # a fixed pseudo-random phase per (bin, frame): the classic sine hash, the same for every call
        t = torch.arange(frames, dtype=torch.float32, device=mel.device) * 78.233
        hashed = torch.sin(self.bin_seed[:, None] + t[None, :]) * 43758.5453
        phase = 2.0 * torch.pi * (hashed - torch.floor(hashed))
        angles = torch.polar(torch.ones_like(phase), phase)[None].expand(mag.shape[0], -1, -1)
        previous = torch.zeros_like(angles)
        for _ in range(self.iters):
            rebuilt = self._stft(self._istft(mag * angles, length))
            angles = rebuilt - (self.momentum / (1.0 + self.momentum)) * previous
            angles = angles / torch.clamp(angles.abs(), min=1e-8)
            previous = rebuilt
        return self._istft(mag * angles, length)


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

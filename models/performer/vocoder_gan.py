"""What the vocoder is trained against: discriminators and losses (training only; the engine never
imports this).

- multi-period discriminator (HiFi-GAN): the waveform folded into (T / p, p) for p = 2, 3, 5, 7, 11
  and read by 2-D convolutions along time, so each sees one phase of a periodic signal;
- multi-resolution discriminator (UnivNet, as Vocos uses it): 2-D convolutions over linear
  magnitude spectrograms at three STFT sizes;
- losses: least-squares GAN, feature matching (L1 between the discriminators' inner activations on
  real and generated audio), and mel L1 (``vocoder.MelSpectrogram``); the multi-resolution STFT
  distance (spectral convergence + log-magnitude L1) is an evaluation metric here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

PERIODS = (2, 3, 5, 7, 11)
RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))  # (n_fft, hop), Hann window of n_fft
LRELU_SLOPE = 0.1

Features = list[torch.Tensor]


def convolve(convs: nn.ModuleList, post: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, Features]:
    """A discriminator's stack: its scores (B, n) and every layer's activations (for feature matching)."""
    feats = []
    for conv in convs:
        x = F.leaky_relu(conv(x), LRELU_SLOPE)
        feats.append(x)
    x = post(x)
    feats.append(x)
    return x.flatten(1), feats


class PeriodDiscriminator(nn.Module):
    def __init__(self, period: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        self.period = period
        dims = (1, *channels)
        self.convs = nn.ModuleList(
            [
                weight_norm(
                    nn.Conv2d(
                        dims[i], dims[i + 1], (5, 1), (3 if i < len(channels) - 1 else 1, 1), padding=(2, 0)
                    )
                )
                for i in range(len(channels))
            ]
        )
        self.post = weight_norm(nn.Conv2d(channels[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, Features]:  # (B, n)
        b, n = audio.shape
        pad = (-n) % self.period
        x = F.pad(audio, (0, pad), mode="reflect").view(b, 1, (n + pad) // self.period, self.period)
        return convolve(self.convs, self.post, x)


class ResolutionDiscriminator(nn.Module):
    def __init__(self, n_fft: int, hop: int, channels: int) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.convs = nn.ModuleList(
            [
                weight_norm(nn.Conv2d(1, channels, (3, 9), padding=(1, 4))),
                weight_norm(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))),
            ]
        )
        self.post = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, Features]:
        spec = torch.stft(
            audio, self.n_fft, self.hop, self.n_fft, self.window, center=True, return_complex=True
        ).abs()  # (B, F, T)
        x = spec.transpose(1, 2).unsqueeze(1)  # (B, 1, T, F)
        return convolve(self.convs, self.post, x)


class Discriminators(nn.Module):
    """Every sub-discriminator's score and features on a batch of audio."""

    def __init__(
        self, period_channels: tuple[int, ...] = (16, 64, 128, 256, 256), resolution_channels: int = 32
    ) -> None:
        super().__init__()
        self.subs = nn.ModuleList(
            [PeriodDiscriminator(p, period_channels) for p in PERIODS]
            + [ResolutionDiscriminator(n, h, resolution_channels) for n, h in RESOLUTIONS]
        )

    def forward(self, audio: torch.Tensor) -> list[tuple[torch.Tensor, Features]]:
        return [sub(audio) for sub in self.subs]


def discriminator_loss(
    real: list[tuple[torch.Tensor, Features]], fake: list[tuple[torch.Tensor, Features]]
) -> torch.Tensor:
    return sum(torch.mean((1 - r) ** 2) + torch.mean(f**2) for (r, _), (f, _) in zip(real, fake)) / len(real)


def generator_loss(fake: list[tuple[torch.Tensor, Features]]) -> torch.Tensor:
    return sum(torch.mean((1 - f) ** 2) for f, _ in fake) / len(fake)


def feature_loss(
    real: list[tuple[torch.Tensor, Features]], fake: list[tuple[torch.Tensor, Features]]
) -> torch.Tensor:
    total, n = 0.0, 0
    for (_, rf), (_, ff) in zip(real, fake):
        for r, f in zip(rf, ff):
            total = total + torch.mean(torch.abs(r.detach() - f))
            n += 1
    return total / n


def stft_distance(
    fake: torch.Tensor, real: torch.Tensor, resolutions: tuple[tuple[int, int], ...] = RESOLUTIONS
) -> torch.Tensor:
    """Multi-resolution STFT distance (Yamamoto et al., Parallel WaveGAN): per resolution, spectral
    convergence ‖|S_real| - |S_fake|‖_F / ‖|S_real|‖_F plus mean |log |S_real| - log |S_fake||,
    averaged over the resolutions."""
    total = fake.new_zeros(())
    for n_fft, hop in resolutions:
        window = torch.hann_window(n_fft, device=fake.device)
        sf = torch.stft(fake, n_fft, hop, n_fft, window, return_complex=True).abs().clamp(min=1e-7)
        sr = torch.stft(real, n_fft, hop, n_fft, window, return_complex=True).abs().clamp(min=1e-7)
        total = total + torch.linalg.norm(sr - sf) / torch.linalg.norm(sr).clamp(min=1e-7)
        total = total + torch.mean(torch.abs(torch.log(sr) - torch.log(sf)))
    return total / len(resolutions)

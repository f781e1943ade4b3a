"""The performer's vocoder: log-mel frames (``render.log_mel``'s settings) to audio.

Two generators of about the same size, both trained the same way (``vocoder_gan``: multi-period and
multi-resolution discriminators, feature matching, mel L1):

- ``vocos``: Siuzdak, "Vocos" (2023). ConvNeXt blocks at the frame rate, then a linear head giving
  each frame's log-magnitude and phase, and an inverse STFT. Every layer runs at the frame rate
  (1/256 of the sample rate), which is why it is fast on a CPU.
- ``hifigan``: Kong et al., "HiFi-GAN" (2020), V3 layout: transposed convolutions upsampling 8 × 8 × 4
  with ResBlock2 stacks, ending at the sample rate.

Both take (B, n_mels, T) natural-log mel magnitudes whose frame i is centred on sample i * hop (``torch.stft``
with ``center=True``) and return (B, (T - 1) * hop) audio: the same samples those frames were
computed from, for a clip of a whole number of hops.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.format import FORMAT_VERSION, save_scripted, validate
from models.performer import render

GENERATORS = ("vocos", "hifigan")


@dataclass(frozen=True)
class VocoderConfig:
    generator: str = "vocos"
    sample_rate_hz: int = render.SAMPLE_RATE_HZ
    n_mels: int = render.N_MELS
    n_fft: int = render.N_FFT
    hop: int = render.HOP
    # vocos
    dim: int = 192
    intermediate_dim: int = 576
    n_layers: int = 6
    kernel_size: int = 7
    # hifigan (V3 layout, ResBlock2)
    upsample_initial_channel: int = 256
    upsample_rates: tuple[int, ...] = (8, 8, 4)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 8)
    resblock_kernel_sizes: tuple[int, ...] = (3, 5, 7)
    resblock_dilations: tuple[tuple[int, ...], ...] = field(default=((1, 2), (2, 6), (3, 12)))

    def __post_init__(self) -> None:
        if self.generator not in GENERATORS:
            raise ValueError(
                f"VocoderConfig.generator must be one of {', '.join(GENERATORS)}, got {self.generator!r}"
            )
        for name in (
            "sample_rate_hz",
            "n_mels",
            "n_fft",
            "hop",
            "dim",
            "intermediate_dim",
            "n_layers",
            "upsample_initial_channel",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"VocoderConfig.{name} must be at least 1, got {getattr(self, name)}")
        product = 1
        for r in self.upsample_rates:
            product *= r
        if self.generator == "hifigan" and product != self.hop:
            raise ValueError(
                f"VocoderConfig.upsample_rates {list(self.upsample_rates)} multiply to {product}; "
                f"they must multiply to the hop ({self.hop})"
            )
        if len(self.upsample_kernel_sizes) != len(self.upsample_rates):
            raise ValueError(
                "VocoderConfig.upsample_kernel_sizes needs one kernel per upsample rate, got "
                f"{len(self.upsample_kernel_sizes)} for {len(self.upsample_rates)}"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> VocoderConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        for k in ("upsample_rates", "upsample_kernel_sizes", "resblock_kernel_sizes"):
            if k in d:
                d[k] = tuple(d[k])
        if "resblock_dilations" in d:
            d["resblock_dilations"] = tuple(tuple(x) for x in d["resblock_dilations"])
        return cls(**d)


class MelSpectrogram(nn.Module):
    """``render.log_mel`` in torch, batched and differentiable: (B, n) audio -> (B, n_mels, n // hop + 1)."""

    def __init__(
        self,
        sample_rate_hz: int = render.SAMPLE_RATE_HZ,
        n_fft: int = render.N_FFT,
        hop: int = render.HOP,
        n_mels: int = render.N_MELS,
    ) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer(
            "filters", render.mel_filterbank(sample_rate_hz, n_fft, n_mels), persistent=False
        )
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(
            audio,
            self.n_fft,
            self.hop,
            self.n_fft,
            self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        ).abs()  # (B, F, T)
        return torch.log(torch.clamp(self.filters @ spec, min=render.LOG_FLOOR))


# Vocos


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, intermediate_dim: int, kernel_size: int, layer_scale: float) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        y = self.dwconv(x).transpose(1, 2)  # (B, T, C)
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).transpose(1, 2)


class VocosGenerator(nn.Module):
    def __init__(self, cfg: VocoderConfig) -> None:
        super().__init__()
        self.n_fft, self.hop = cfg.n_fft, cfg.hop
        self.embed = nn.Conv1d(cfg.n_mels, cfg.dim, cfg.kernel_size, padding=cfg.kernel_size // 2)
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.blocks = nn.ModuleList(
            [
                ConvNeXtBlock(cfg.dim, cfg.intermediate_dim, cfg.kernel_size, 1.0 / cfg.n_layers)
                for _ in range(cfg.n_layers)
            ]
        )
        self.final_norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.head = nn.Linear(cfg.dim, cfg.n_fft + 2)  # log-magnitude and phase of n_fft // 2 + 1 bins
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:  # (B, n_mels, T) -> (B, (T - 1) * hop)
        x = self.norm(self.embed(mel).transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        x = self.head(self.final_norm(x.transpose(1, 2))).transpose(1, 2)  # (B, n_fft + 2, T)
        log_mag, phase = x.chunk(2, dim=1)
        mag = torch.clamp(torch.exp(log_mag), max=100.0)  # the cap keeps an early step from exploding
        spec = torch.complex(mag * torch.cos(phase), mag * torch.sin(phase))
        return torch.istft(
            spec,
            self.n_fft,
            self.hop,
            self.n_fft,
            self.window,
            center=True,
            length=(mel.shape[-1] - 1) * self.hop,
        )


# HiFi-GAN V3

LRELU_SLOPE = 0.1


class ResBlock2(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [
                nn.utils.parametrizations.weight_norm(
                    nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=d * (kernel_size - 1) // 2)
                )
                for d in dilations
            ]
        )
        self.slope = LRELU_SLOPE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = x + conv(F.leaky_relu(x, self.slope))
        return x


class HiFiGANGenerator(nn.Module):
    def __init__(self, cfg: VocoderConfig) -> None:
        super().__init__()
        self.hop = cfg.hop
        self.n_kernels = len(cfg.resblock_kernel_sizes)
        wn = nn.utils.parametrizations.weight_norm
        self.conv_pre = wn(nn.Conv1d(cfg.n_mels, cfg.upsample_initial_channel, 7, padding=3))
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        ch = cfg.upsample_initial_channel
        for rate, k in zip(cfg.upsample_rates, cfg.upsample_kernel_sizes):
            self.ups.append(wn(nn.ConvTranspose1d(ch, ch // 2, k, rate, padding=(k - rate) // 2)))
            ch //= 2
            for rk, dil in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilations):
                self.resblocks.append(ResBlock2(ch, rk, tuple(dil)))
        self.conv_post = wn(nn.Conv1d(ch, 1, 7, padding=3))
        self.slope = LRELU_SLOPE

    def forward(self, mel: torch.Tensor) -> torch.Tensor:  # (B, n_mels, T) -> (B, (T - 1) * hop)
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, self.slope))
            acc = torch.zeros_like(x)
            for j, block in enumerate(self.resblocks):
                if j // self.n_kernels == i:
                    acc = acc + block(x)
            x = acc / self.n_kernels
        audio = torch.tanh(self.conv_post(F.leaky_relu(x))).squeeze(
            1
        )  # (B, T * hop), frame i on [i, i+1) hops
        half = self.hop // 2  # shift so that frame i is centred on sample i * hop, as the mel was
        return audio[:, half : audio.shape[-1] - self.hop + half]


class Vocoder(nn.Module):
    """mel -> audio with the configured generator; ``forward`` is what the engine calls."""

    def __init__(self, cfg: VocoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.generator = VocosGenerator(cfg) if cfg.generator == "vocos" else HiFiGANGenerator(cfg)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:  # (B, n_mels, T) -> (B, (T - 1) * hop)
        return self.generator(mel)

    def prepare_for_export(self) -> Vocoder:
        """Weight norm folded into the weights, eval mode (HiFi-GAN's remove_weight_norm)."""
        for module in self.modules():
            if nn.utils.parametrize.is_parametrized(module, "weight"):
                nn.utils.parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        return self.eval()


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


TASK = "perform_vocoder"
VERSION = "1.0.0"


# export: what every perform_vocoder file carries (trained or griffin_lim.py); the checked export

def vocoder_metadata(name: str, parameters: int, model: dict, sample_rate_hz: int = render.SAMPLE_RATE_HZ,
                     hop: int = render.HOP, n_fft: int = render.N_FFT, n_mels: int = render.N_MELS) -> dict:
    """The ``perform_vocoder`` metadata of any vocoder file (trained or Griffin-Lim): the mel
    settings it reads, its io, its size and ``model`` (its own settings)."""
    return {
        "format_version": FORMAT_VERSION,
        "task": TASK,
        "name": name,
        "version": VERSION,
        "sample_rate_hz": sample_rate_hz,
        "hop": hop,
        "n_fft": n_fft,
        "n_mels": n_mels,
        "mel": {
            "win": render.WIN,
            "fmin_hz": render.FMIN_HZ,
            "fmax_hz": render.FMAX_HZ,
            "scale": "slaney",
            "norm": "slaney",
            "log": "natural",
            "log_floor": render.LOG_FLOOR,
            "magnitude": "abs",
            "center": True,
            "pad_mode": "reflect",
        },
        "io": {"input": "(B, n_mels, T) float32 log-mel", "output": "(B, (T - 1) * hop) float32 audio, mono"},
        "parameters": parameters,
        "methods": ["forward"],
        "model": model,
    }


def export_vocoder(model: torch.nn.Module, path: str | Path, metadata: dict, atol: float = 1e-4,
                   frames: tuple[int, ...] = (2, 37, 300)) -> Path:
    """TorchScript with metadata; reloaded and checked against eager on ``frames`` frames."""
    problem = validate(metadata)
    if problem:
        raise ValueError(f"vocoder metadata is not valid: {problem}")
    path = Path(path)
    if path.suffix != ".pt":
        raise ValueError(f"the vocoder exports to TorchScript (.pt), got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "prepare_for_export"):
        model = model.prepare_for_export()
    loaded = save_scripted(model, path, metadata)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n in frames:
            mel = torch.randn(1, metadata["n_mels"], n, generator=gen) - 4.0
            err = float((model(mel) - loaded(mel)).abs().max())
            if not err <= atol:
                raise RuntimeError(f"exported vocoder differs from eager on {n} frames: max abs error "
                                   f"{err:.3g}")
    return path

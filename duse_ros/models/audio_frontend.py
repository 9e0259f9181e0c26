"""The audio front end: a mono 16 kHz waveform -> a fixed-size, normalised 128-bin log-mel image.

One implementation, used by BHGap's forward and by anything that prepares audio for it
(training loaders, statistics, plots). Public API:

    FbankConfig                       the numbers (rate, mels, window, hop, normalisation, span)
    num_frames(config)                the fixed frame count a config produces
    log_mel_fbank(waveform, config)   (S,) or (B, S) -> (B, n, mels): raw log-mel, n from the length
    LogMelFrontend(config)            nn.Module: (B, S) -> (B, num_frames, mels), padded/cropped, normalised
    frontend_for(model_config)        the front end a BHGap config uses (its span_s and fbank stats)

The log-mel follows Kaldi's `compute-fbank-feats` (torchaudio.compliance.kaldi.fbank with
dither 0, window "hanning", use_energy False), which is what AudioMAE-family encoders were
trained on: 25 ms frames every 10 ms with no padding at the edges (snip_edges), each frame's DC
offset removed, pre-emphasis 0.97, a symmetric Hann window, zero-padded to a 512-point FFT,
power spectrum, triangular filters spaced on the HTK mel scale (1127 ln(1 + f/700)) whose
triangles are linear in mel, 20 Hz up to Nyquist, then log with a floor of float32 epsilon.
Framing is `Tensor.unfold` + `torch.fft.rfft` rather than `torch.stft`: Kaldi's per-frame DC
removal and pre-emphasis happen between framing and the window, which stft cannot do.

Fixed size: the frame count is that of `span_s` seconds of audio, rounded up to a multiple of
`frame_multiple` (the audio encoder's patch height). Shorter input is padded with log-mel 0
(AudioMAE's convention: the pad is applied before normalisation), longer input is cropped at
the end. Normalisation: (x - mean) / std with AudioSet's statistics as AudioMAE uses them
(mean -4.2677393, std 2 x 4.5689974).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

AUDIOSET_FBANK_MEAN = -4.2677393
AUDIOSET_FBANK_STD = 2 * 4.5689974
_EPS = torch.finfo(torch.float32).eps


@dataclass(frozen=True)
class FbankConfig:
    sample_rate: int = 16000
    num_mel_bins: int = 128
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    preemphasis: float = 0.97
    low_freq: float = 20.0
    high_freq: float = 0.0  # <= 0: Nyquist + high_freq (Kaldi's convention)
    span_s: float = 2.0  # the clip span the fixed frame count is derived from
    frame_multiple: int = 16  # frame count rounded up to this (the audio patch height)
    mean: float = AUDIOSET_FBANK_MEAN
    std: float = AUDIOSET_FBANK_STD

    def __post_init__(self):
        for name in ("sample_rate", "num_mel_bins", "frame_multiple"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"FbankConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.span_s <= 0 or self.std <= 0:
            raise ValueError(f"FbankConfig: span_s and std must be > 0, got {self.span_s}, {self.std}")
        if self.window_samples > self.span_samples:
            raise ValueError(f"FbankConfig: span_s={self.span_s} is shorter than one {self.frame_length_ms} ms frame")

    @property
    def window_samples(self) -> int:
        return int(self.sample_rate * self.frame_length_ms / 1000)

    @property
    def hop_samples(self) -> int:
        return int(self.sample_rate * self.frame_shift_ms / 1000)

    @property
    def n_fft(self) -> int:
        return 1 << (self.window_samples - 1).bit_length()  # next power of two: 400 -> 512

    @property
    def span_samples(self) -> int:
        return int(round(self.span_s * self.sample_rate))

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def frames_in(num_samples: int, config: FbankConfig) -> int:
    """Kaldi's snip_edges frame count for a waveform of `num_samples`."""
    if num_samples < config.window_samples:
        return 0
    return 1 + (num_samples - config.window_samples) // config.hop_samples


def num_frames(config: FbankConfig) -> int:
    """The fixed frame count of `LogMelFrontend`: span_s of audio, rounded up to frame_multiple."""
    return math.ceil(frames_in(config.span_samples, config) / config.frame_multiple) * config.frame_multiple


def _mel(freq: torch.Tensor) -> torch.Tensor:
    return 1127.0 * torch.log1p(freq / 700.0)


def mel_filterbank(config: FbankConfig) -> torch.Tensor:
    """(num_mel_bins, n_fft // 2 + 1) Kaldi mel weights; the Nyquist bin's column is zero."""
    nyquist = 0.5 * config.sample_rate
    high = config.high_freq if config.high_freq > 0 else nyquist + config.high_freq
    if not 0.0 <= config.low_freq < high <= nyquist:
        raise ValueError(f"FbankConfig: need 0 <= low_freq < high_freq <= Nyquist, got {config.low_freq}, {high}")
    n_bins = config.n_fft // 2
    mel_low, mel_high = (
        _mel(torch.tensor(config.low_freq, dtype=torch.float64)),
        _mel(torch.tensor(high, dtype=torch.float64)),
    )
    delta = (mel_high - mel_low) / (config.num_mel_bins + 1)
    edges = mel_low + delta * torch.arange(config.num_mel_bins + 2, dtype=torch.float64)  # (M + 2,)
    left, center, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (M, 1)
    fft_mel = _mel(torch.arange(n_bins, dtype=torch.float64) * config.sample_rate / config.n_fft)[None]  # (1, n_bins)
    up = (fft_mel - left) / (center - left)
    down = (right - fft_mel) / (right - center)
    weights = torch.clamp(torch.minimum(up, down), min=0.0)  # (M, n_bins)
    return F.pad(weights, (0, 1)).float()  # (M, n_bins + 1)


def _power_frames(waveform: torch.Tensor, config: FbankConfig) -> torch.Tensor:
    """(B, S) -> (B, n, n_fft // 2 + 1) power spectra of Kaldi's frames."""
    if torch.onnx.is_in_onnx_export():  # a gather whose size follows S (the exporter unrolls unfold)
        count = (waveform.shape[-1] - config.window_samples) // config.hop_samples + 1
        starts = torch.arange(count, device=waveform.device) * config.hop_samples
        frames = waveform[:, starts[:, None] + torch.arange(config.window_samples, device=waveform.device)]
    else:
        frames = waveform.unfold(-1, config.window_samples, config.hop_samples)  # (B, n, W)
    frames = frames - frames.mean(dim=-1, keepdim=True)  # remove DC offset
    previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)  # x[-1] := x[0]
    frames = frames - config.preemphasis * previous
    window = torch.hann_window(config.window_samples, periodic=False, dtype=frames.dtype, device=frames.device)
    frames = frames * window
    if torch.onnx.is_in_onnx_export():  # ONNX's TorchScript exporter has no rfft: a DFT as two matmuls
        cos, sin = _dft_matrices(config.window_samples, config.n_fft, frames.device)
        return (frames @ cos).square() + (frames @ sin).square()
    spectrum = torch.fft.rfft(frames, n=config.n_fft)  # (B, n, n_fft / 2 + 1)
    return spectrum.real.square() + spectrum.imag.square()


def _dft_matrices(samples: int, n_fft: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(samples, n_fft // 2 + 1) cosine and sine of the real DFT of `samples` values zero-padded to
    n_fft: frames @ cos and frames @ sin are rfft's real and (negated) imaginary parts."""
    t = torch.arange(samples, dtype=torch.float64)[:, None]
    f = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[None]
    angle = 2 * math.pi * ((t * f) % n_fft) / n_fft
    return angle.cos().float().to(device), angle.sin().float().to(device)


def log_mel_fbank(
    waveform: torch.Tensor, config: FbankConfig = FbankConfig(), filterbank: torch.Tensor | None = None
) -> torch.Tensor:
    """Raw (unpadded, unnormalised) Kaldi log-mel: (S,) or (B, S) float -> (B, n, num_mel_bins),
    n = 1 + (S - window) // hop. Computed in float32 whatever the input dtype."""
    if waveform.dim() == 1:
        waveform = waveform.unsqueeze(0)
    if waveform.dim() != 2:
        raise ValueError(f"waveform must be (S,) or (B, S), got shape {tuple(waveform.shape)}")
    if waveform.shape[-1] < config.window_samples:
        raise ValueError(
            f"waveform of {waveform.shape[-1]} samples is shorter than one frame "
            f"({config.window_samples} samples at {config.sample_rate} Hz)"
        )
    with torch.autocast(waveform.device.type, enabled=False):
        if filterbank is None:
            filterbank = mel_filterbank(config).to(waveform.device)
        power = _power_frames(waveform.float(), config)
        return torch.clamp(power @ filterbank.T, min=_EPS).log()


class LogMelFrontend(nn.Module):
    """(B, S) mono waveform at `config.sample_rate` -> (B, num_frames(config), num_mel_bins),
    normalised. Any S of at least one frame is accepted: the log-mel is padded or cropped to the
    fixed frame count."""

    def __init__(self, config: FbankConfig = FbankConfig()):
        super().__init__()
        self.config = config
        self.num_frames = num_frames(config)
        self.register_buffer("filterbank", mel_filterbank(config), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        fbank = log_mel_fbank(waveform, self.config, self.filterbank)  # (B, n, M)
        n = fbank.shape[1]
        if torch.onnx.is_in_onnx_export():  # one traced expression for any S: a negative pad crops
            fbank = F.pad(fbank, (0, 0, 0, self.num_frames - n))
        elif n < self.num_frames:
            fbank = F.pad(fbank, (0, 0, 0, self.num_frames - n))  # log-mel 0, as AudioMAE pads
        else:
            fbank = fbank[:, : self.num_frames]
        return (fbank - self.config.mean) / self.config.std

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"{c.sample_rate} Hz, {c.num_mel_bins} mels, {c.frame_length_ms:g}/{c.frame_shift_ms:g} ms, "
            f"{self.num_frames} frames ({c.span_s:g} s)"
        )


def frontend_for(model_config: dict) -> LogMelFrontend:
    """The front end of a BHGap model config (registered name resolved by the caller, or a
    checkpoint's JSON dict): its span_s, fbank_mean/fbank_std and the audio patch height."""
    from .vit_encoders import encoder_config

    audio = encoder_config(model_config.get("audio_encoder", "vit-b16"))
    return LogMelFrontend(
        FbankConfig(
            span_s=float(model_config.get("span_s", 2.0)),
            mean=float(model_config.get("fbank_mean", AUDIOSET_FBANK_MEAN)),
            std=float(model_config.get("fbank_std", AUDIOSET_FBANK_STD)),
            frame_multiple=int(audio["patch_size"]),
        )
    )

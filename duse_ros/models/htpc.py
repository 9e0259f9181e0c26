"""HTPC, the Hierarchical Temporal Prompt Cluster: DuSE's prompts for both CLIP towers.

n learnable text tokens P_j (n, text_width) for each of the first M text-encoder layers. One MLP,
shared by every layer, maps them to the visual tokens of the same layer: V_j = ReLU(W P_j + b)
(the paper's equation 6). For the first layer a sinusoidal encoding of the frame index t is added
after the MLP, broadcast over the n tokens, so each of the T frames gets prompts of its own.

Without the visual branch (`vision_width=None`) the same module is CoOp's text-only prompts,
the ablation that replaces HTPC.
"""
from __future__ import annotations

import torch
from torch import nn

# Fraction of the text encoder's layers that get prompts; Shallow prompts the input layer only.
STRATEGIES = {"shallow": 0.0, "normal": 1 / 3, "deep": 2 / 3}


def prompt_depth(strategy: str, text_layers: int) -> int:
    """M, the number of prompted layers (counted from the input layer) of each tower."""
    try:
        fraction = STRATEGIES[strategy]
    except KeyError:
        raise ValueError(f"unknown prompt strategy {strategy!r}; known: {sorted(STRATEGIES)}") from None
    return max(1, round(text_layers * fraction))


def sinusoidal_encoding(positions: int, dim: int) -> torch.Tensor:
    """(positions, dim): sin on even channels, cos on odd ones, wavelengths up to 10000 (Vaswani et al.)."""
    position = torch.arange(positions, dtype=torch.float32)[:, None]
    rate = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    angle = position * rate                                      # (positions, ceil(dim / 2))
    encoding = torch.zeros(positions, dim)
    encoding[:, 0::2] = torch.sin(angle)
    encoding[:, 1::2] = torch.cos(angle[:, : dim // 2])
    return encoding


class HTPC(nn.Module):
    def __init__(self, depth: int, n_prompts: int, text_width: int, vision_width: int | None, num_frames: int):
        super().__init__()
        self.text = nn.Parameter(torch.randn(depth, n_prompts, text_width) * 0.02)  # P_0..P_{M-1}
        if vision_width is None:
            self.mlp = None
        else:
            self.mlp = nn.Sequential(nn.Linear(text_width, vision_width), nn.ReLU())
            self.register_buffer("frame_encoding", sinusoidal_encoding(num_frames, vision_width), persistent=False)

    @property
    def depth(self) -> int:
        return self.text.shape[0]

    def text_prompts(self) -> list[torch.Tensor]:
        """One (n, text_width) tensor per prompted text layer."""
        return list(self.text.unbind(0))

    def visual_prompts(self) -> list[torch.Tensor]:
        """Layer 0: (T, n, vision_width), one set per frame; layers 1..M-1: (n, vision_width).
        Empty for CoOp prompts."""
        if self.mlp is None:
            return []
        visual = self.mlp(self.text)                              # (M, n, vision_width)
        first = visual[0] + self.frame_encoding[:, None, :].to(visual.dtype)
        return [first, *visual[1:].unbind(0)]

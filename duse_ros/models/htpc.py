"""HTPC, the Hierarchical Temporal Prompt Cluster: DuSE's prompts for both CLIP towers.

n learnable text tokens P_j (n, text_width) for each of the first M_T text-encoder layers. One
MLP, shared by every layer, maps them to the visual tokens V_i of the first M_V image-encoder
layers: V_i = MLP(P_k(i)), k(i) = floor(i M_T / M_V), so each tower is prompted to the same
relative depth (a third of its layers for "normal") and image layer i takes the text prompts of
the text layer at the same relative depth. With towers of equal depth (ViT-B) k(i) = i.

The MLP is Linear -> ReLU -> Linear (the paper's Eq. 6 is ReLU(W P + b); ending in a linear
layer keeps every visual prompt non-zero at initialisation, where a final ReLU zeroes half).
For the first image layer a sinusoidal encoding of the frame index t is added, broadcast over
the n tokens, so each of the T frames gets prompts of its own. Its scale is the image tower's
own positional embedding's (`frame_encoding_scale`): the unscaled encoding (norm ~ sqrt(width/2))
would swamp tokens whose norm is well under 1.

Without the visual branch (`vision_width=None`) the same module is CoOp's text-only prompts,
the ablation that replaces HTPC.
"""

from __future__ import annotations

import torch
from torch import nn

# Fraction of each tower's layers that get prompts; Shallow prompts the input layer only.
STRATEGIES = {"shallow": 0.0, "normal": 1 / 3, "deep": 2 / 3}


def prompt_depth(strategy: str, layers: int) -> int:
    """M, the number of prompted layers (counted from the input layer) of a tower with `layers`."""
    try:
        fraction = STRATEGIES[strategy]
    except KeyError:
        raise ValueError(f"unknown prompt strategy {strategy!r}; known: {sorted(STRATEGIES)}") from None
    return max(1, round(layers * fraction))


def sinusoidal_encoding(positions: int, dim: int) -> torch.Tensor:
    """(positions, dim): sin on even channels, cos on odd ones, wavelengths up to 10000 (Vaswani et al.)."""
    position = torch.arange(positions, dtype=torch.float32)[:, None]
    rate = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    angle = position * rate  # (positions, ceil(dim / 2))
    encoding = torch.zeros(positions, dim)
    encoding[:, 0::2] = torch.sin(angle)
    encoding[:, 1::2] = torch.cos(angle[:, : dim // 2])
    return encoding


class HTPC(nn.Module):
    def __init__(
        self,
        text_depth: int,
        n_prompts: int,
        text_width: int,
        vision_width: int | None,
        num_frames: int,
        vision_depth: int | None = None,
        frame_encoding_scale: float = 1.0,
    ):
        super().__init__()
        self.text = nn.Parameter(torch.randn(text_depth, n_prompts, text_width) * 0.02)  # P_0..P_{M_T-1}
        if vision_width is None:
            self.mlp = None
            self.vision_depth = 0
        else:
            self.mlp = nn.Sequential(nn.Linear(text_width, text_width), nn.ReLU(), nn.Linear(text_width, vision_width))
            self.vision_depth = vision_depth or text_depth
            encoding = sinusoidal_encoding(num_frames, vision_width)
            encoding *= frame_encoding_scale / encoding.norm(dim=-1).mean()
            self.register_buffer("frame_encoding", encoding, persistent=False)
            source = [i * text_depth // self.vision_depth for i in range(self.vision_depth)]
            self.register_buffer("source_layer", torch.tensor(source), persistent=False)

    @property
    def depth(self) -> int:
        """M_T, the number of prompted text layers."""
        return self.text.shape[0]

    def text_prompts(self) -> list[torch.Tensor]:
        """One (n, text_width) tensor per prompted text layer."""
        return list(self.text.unbind(0))

    def visual_prompts(self) -> list[torch.Tensor]:
        """Image layer 0: (T, n, vision_width), one set per frame; layers 1..M_V-1:
        (n, vision_width). Empty for CoOp prompts."""
        if self.mlp is None:
            return []
        visual = self.mlp(self.text)[self.source_layer]  # (M_V, n, vision_width)
        first = visual[0] + self.frame_encoding[:, None, :].to(visual.dtype)
        return [first, *visual[1:].unbind(0)]

"""LSEA, the Latent Semantic Emotion Aggregator: frame features and class text features to one
video feature V_g.

    frames (B, T, D) -> temporal self-attention -> linear -> attention pooling -> V_o (B, D)
    per head h (N heads): V_h = A_h V_o, F_h = B_h F_T (C, D)
                          T_h = softmax(V_h . F_h) F_h
    V_g = mean_h (beta V_h + (1 - beta) T_h)

The semantic similarity is the plain dot product of the paper's Eq. 12 (no 1/sqrt(D) as in
scaled dot-product attention). Initialisation stays near CLIP's features: the linear layer is
the identity, each head map is the identity plus small noise (so heads differ), and the temporal
attention's output projection and the pooling scores start small and random, not zero. Exactly
zero, they make a saddle for anything that only the frame order tells apart: with uniform pooling
and no attention output, the video feature is the same for every ordering of the same frames,
so no gradient points towards using the order (the motion-only smoke set stayed at chance).
"""

from __future__ import annotations

import torch
from torch import nn


class LSEA(nn.Module):
    def __init__(self, dim: int, n_heads: int = 4, beta: float = 0.7):
        super().__init__()
        self.n_heads = n_heads
        self.beta = beta
        self.norm = nn.LayerNorm(dim)
        self.temporal_attn = nn.MultiheadAttention(dim, max(1, dim // 64), batch_first=True)
        self.linear = nn.Linear(dim, dim)
        self.score = nn.Linear(dim, 1)
        self.video_heads = nn.Linear(dim, n_heads * dim)
        self.text_heads = nn.Linear(dim, n_heads * dim)
        self._init_near_identity()

    @torch.no_grad()
    def _init_near_identity(self) -> None:
        dim = self.linear.in_features
        nn.init.normal_(self.temporal_attn.out_proj.weight, std=0.02)
        nn.init.zeros_(self.temporal_attn.out_proj.bias)
        self.linear.weight.copy_(torch.eye(dim))
        nn.init.zeros_(self.linear.bias)
        nn.init.normal_(self.score.weight, std=dim**-0.5)
        nn.init.zeros_(self.score.bias)
        for heads in (self.video_heads, self.text_heads):
            nn.init.normal_(heads.weight, std=0.02)
            heads.weight += torch.eye(dim).repeat(self.n_heads, 1)
            nn.init.zeros_(heads.bias)

    def pool(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (B, T, D) -> V_o (B, D)."""
        h = self.norm(frames)
        x = frames + self.temporal_attn(h, h, h, need_weights=False)[0]
        x = self.linear(x)  # (B, T, D)
        weights = self.score(x).softmax(dim=1)  # (B, T, 1), softmax over time
        return (weights * x).sum(dim=1)

    def forward(self, frames: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """frames (B, T, D), text features F_T (C, D) -> V_g (B, D)."""
        v_o = self.pool(frames)
        b, d = v_o.shape
        v = self.video_heads(v_o).view(b, self.n_heads, d)  # (B, N, D)
        f = self.text_heads(text).view(-1, self.n_heads, d).transpose(0, 1).to(v.dtype)  # (N, C, D)
        attn = torch.einsum("bnd,ncd->bnc", v, f)  # Eq. 12: V_h . F_h
        t_o = torch.einsum("bnc,ncd->bnd", attn.softmax(dim=-1).to(v.dtype), f)
        return (self.beta * v + (1 - self.beta) * t_o).mean(dim=1)

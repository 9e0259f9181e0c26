"""LSEA, the Latent Semantic Emotion Aggregator: frame features and class text features to one
video feature V_g.

    frames (B, T, D) -> [LayerNorm] -> temporal self-attention [+ frames] -> linear
                     -> attention pooling over time -> V_o (B, D)
    per head h (N heads): V_h = A_h V_o, F_h = B_h F_T (C, D)
                          T_h = softmax(sim(V_h, F_h)) F_h
    V_g = mean_h (beta V_h + (1 - beta) T_h)

Three switches, each the paper's form or ours:
- `similarity`: "dot" (default), the plain dot product of the paper's Eq. 12 (no 1/sqrt(D) as in
  scaled dot-product attention), or "cosine", what the paper's prose says. Cosines lie in
  [-1, 1], so over C classes their softmax stays close to uniform: T_h is then nearly the mean
  of the class features.
- `pre_norm` (default True, ours): a LayerNorm before the temporal attention; the paper has none.
- `residual` (default True, ours): the attention output added to the frames; the paper passes
  the attention output alone to the linear layer.
`PAPER_FORM` names the paper's form (dot, no norm, no residual).

Initialisation stays near CLIP's features: the linear layer is the identity, each head map is
the identity plus small noise (so heads differ), and with the residual the temporal attention's
output projection and the pooling scores start small and random, not zero. Exactly zero, they
make a saddle for anything that only the frame order tells apart: with uniform pooling and no
attention output, the video feature is the same for every ordering of the same frames, so no
gradient points towards using the order (the motion-only smoke set stayed at chance). Without
the residual the attention output is all that passes on, so its projection keeps PyTorch's
default initialisation (output at the frames' scale).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SIMILARITIES = ("dot", "cosine")
PAPER_FORM = {"similarity": "dot", "pre_norm": False, "residual": False}


class LSEA(nn.Module):
    def __init__(
        self,
        dim: int,
        n_heads: int = 4,
        beta: float = 0.7,
        similarity: str = "dot",
        pre_norm: bool = True,
        residual: bool = True,
    ):
        super().__init__()
        if similarity not in SIMILARITIES:
            raise ValueError(f"LSEA similarity {similarity!r}: expected one of {SIMILARITIES}")
        self.n_heads = n_heads
        self.beta = beta
        self.similarity = similarity
        self.residual = residual
        self.norm = nn.LayerNorm(dim) if pre_norm else None
        self.temporal_attn = nn.MultiheadAttention(dim, max(1, dim // 64), batch_first=True)
        self.linear = nn.Linear(dim, dim)
        self.score = nn.Linear(dim, 1)
        self.video_heads = nn.Linear(dim, n_heads * dim)
        self.text_heads = nn.Linear(dim, n_heads * dim)
        self._init_near_identity()

    @torch.no_grad()
    def _init_near_identity(self) -> None:
        dim = self.linear.in_features
        if self.residual:
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
        h = self.norm(frames) if self.norm is not None else frames
        x = self.temporal_attn(h, h, h, need_weights=False)[0]
        if self.residual:
            x = frames + x
        x = self.linear(x)  # (B, T, D)
        weights = self.score(x).softmax(dim=1)  # (B, T, 1), softmax over time
        return (weights * x).sum(dim=1)

    def forward(self, frames: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """frames (B, T, D), text features F_T (C, D) -> V_g (B, D)."""
        v_o = self.pool(frames)
        b, d = v_o.shape
        v = self.video_heads(v_o).view(b, self.n_heads, d)  # (B, N, D)
        f = self.text_heads(text).view(-1, self.n_heads, d).transpose(0, 1).to(v.dtype)  # (N, C, D)
        if self.similarity == "cosine":
            attn = torch.einsum("bnd,ncd->bnc", F.normalize(v, dim=-1), F.normalize(f, dim=-1))
        else:
            attn = torch.einsum("bnd,ncd->bnc", v, f)  # Eq. 12: V_h . F_h
        t_o = torch.einsum("bnc,ncd->bnd", attn.softmax(dim=-1).to(v.dtype), f)
        return (self.beta * v + (1 - self.beta) * t_o).mean(dim=1)

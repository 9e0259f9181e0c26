"""Losses over DuSE's class logits (logit_scale * cos(V_g, F_T(i)), the paper's equation 1).

"ce" is softmax cross-entropy over those similarity logits; "focal" (`focal_loss`) down-weights
well-classified clips by (1 - p_t)^gamma (Lin et al., 2017) for imbalanced sets such as MAFW,
with optional per-class weights alpha. At gamma 0 it is the (class-weighted) cross-entropy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma: float = 2.0,
    alpha: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """-alpha_t (1 - p_t)^gamma log p_t. alpha: (C,) per-class weights or None.
    reduction: "mean" (alpha-weighted mean, like cross_entropy's `weight`), "sum" or "none"."""
    log_p = F.log_softmax(logits.float(), dim=-1).gather(1, target[:, None]).squeeze(1)  # (B,)
    loss = -(1.0 - log_p.exp()).pow(gamma) * log_p
    weight = alpha.to(loss)[target] if alpha is not None else torch.ones_like(loss)
    loss = weight * loss
    if reduction == "mean":
        return loss.sum() / weight.sum()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"unknown reduction {reduction!r}; expected 'mean', 'sum' or 'none'")


class FocalLoss(nn.Module):
    def __init__(self, gamma: float = 2.0, alpha: torch.Tensor | None = None):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("alpha", None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return focal_loss(logits, target, self.gamma, self.alpha)


def build_loss(name: str, gamma: float = 2.0, alpha: torch.Tensor | None = None) -> nn.Module:
    """ "ce" or "focal" as a module taking (logits (B, C), target (B,)); alpha: (C,) class weights."""
    if name == "ce":
        return nn.CrossEntropyLoss(weight=None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32))
    if name == "focal":
        return FocalLoss(gamma, alpha)
    raise ValueError(f"unknown loss {name!r}; expected 'ce' or 'focal'")

"""BHGap's coarse-to-fine alignment of audio to video, after both encoders.

Macro, `LowRankAdversarialAlign`: a rank-r coupling Gamma = U V^T (T x Na) carries the Na audio
tokens onto the T frame positions, a small MLP G refines them, and a critic D scores tokens as
video (real) or carried audio (fake) through a gradient-reversal layer: one backward pass trains
D to tell them apart while the coupling, G and the projections in front learn to make them
indistinguishable (WGAN critic loss plus a gradient penalty on interpolates).

Micro, `MMDRefiner`: a multi-kernel MMD between a clip's carried audio tokens and its video
tokens (Gaussian kernels whose bandwidths are multiples of the clip's mean squared distance),
reduced by a few gradient steps on an offset of the audio tokens. The gradient is in closed
form, so the refinement also runs under `torch.inference_mode()`, and training differentiates
through the unrolled steps. MMD is per clip, so a reading never depends on its batch mates.
"""

from __future__ import annotations

import torch
from torch import nn


class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.scale * grad, None


def reverse_gradient(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward; the gradient is multiplied by -scale on the way back."""
    return _ReverseGrad.apply(x, scale)


class GradientReversal(nn.Module):
    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reverse_gradient(x, self.scale)


def _masked_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """values (B, ...) averaged with per-clip weights (B,); 0 when no weight."""
    values = values.flatten(1).mean(dim=1)
    return (values * weights).sum() / weights.sum().clamp(min=1.0)


class LowRankAdversarialAlign(nn.Module):
    def __init__(
        self,
        dim: int,
        video_tokens: int,
        audio_tokens: int,
        rank: int = 8,
        critic_width: int = 256,
        adversarial: bool = True,
    ):
        super().__init__()
        # Gamma starts as the plain average of the audio tokens at every frame (column 0), plus noise.
        self.U = nn.Parameter(torch.randn(video_tokens, rank) * 0.02)
        self.V = nn.Parameter(torch.randn(audio_tokens, rank) * 0.02)
        with torch.no_grad():
            self.U[:, 0] = 1.0
            self.V[:, 0] = 1.0 / audio_tokens
        self.refine = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim), nn.GELU(), nn.Linear(dim, dim))
        # The critic only serves the training loss; without it (ablation) the coupling still carries audio.
        self.critic = (
            nn.Sequential(
                nn.Linear(dim, critic_width),
                nn.LeakyReLU(0.2),
                nn.Linear(critic_width, critic_width // 2),
                nn.LeakyReLU(0.2),
                nn.Linear(critic_width // 2, 1),
            )
            if adversarial
            else None
        )
        self.reverse = GradientReversal()

    def coupling(self) -> torch.Tensor:
        return self.U @ self.V.T  # (T, Na)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """audio tokens (B, Na, dim) -> carried onto the frames (B, T, dim)."""
        carried = torch.einsum("tn,bnd->btd", self.coupling().to(audio.dtype), audio)
        return carried + self.refine(carried)

    def loss(
        self, video: torch.Tensor, carried: torch.Tensor, weights: torch.Tensor, gp_weight: float = 10.0
    ) -> torch.Tensor:
        """Critic loss through the reversal layer, + gradient penalty when autograd is recording.
        video, carried: (B, T, dim); weights (B,): 1 for clips that have both modalities."""
        real = self.critic(self.reverse(video))  # (B, T, 1)
        fake = self.critic(self.reverse(carried))
        loss = _masked_mean(fake, weights) - _masked_mean(real, weights)
        if gp_weight and torch.is_grad_enabled():
            eps = torch.rand(video.shape[0], video.shape[1], 1, device=video.device, dtype=video.dtype)
            mix = (eps * video.detach() + (1 - eps) * carried.detach()).requires_grad_(True)
            (grad,) = torch.autograd.grad(self.critic(mix).sum(), mix, create_graph=True)
            loss = loss + gp_weight * _masked_mean((grad.norm(dim=-1) - 1.0).square(), weights)
        return loss


def _bandwidth_scale(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared distance over all pairs of the pooled tokens, per clip: (B, 1, 1), no gradient."""
    pooled = torch.cat([x, y], dim=1).detach()
    return torch.cdist(pooled, pooled).square().mean(dim=(1, 2), keepdim=True).clamp(min=1e-6)


def _kernels(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor, bandwidths: torch.Tensor) -> torch.Tensor:
    """(B, n, m, K) Gaussian kernels exp(-|a_i - b_j|^2 / (beta_k * scale))."""
    d2 = (a.unsqueeze(2) - b.unsqueeze(1)).square().sum(-1, keepdim=True)  # (B, n, m, 1)
    return torch.exp(-d2 / (bandwidths * scale.unsqueeze(-1)))


def mmd2(
    x: torch.Tensor, y: torch.Tensor, bandwidths=(0.25, 0.5, 1.0, 2.0, 4.0), scale: torch.Tensor | None = None
) -> torch.Tensor:
    """Biased multi-kernel MMD^2 per clip: x (B, n, d), y (B, m, d) -> (B,), averaged over kernels.
    0 for identical sets; bandwidths are multiples of the clips' mean squared distance."""
    bw = torch.as_tensor(bandwidths, dtype=x.dtype, device=x.device)
    scale = _bandwidth_scale(x, y) if scale is None else scale
    kxx = _kernels(x, x, scale, bw).mean(dim=(1, 2))
    kyy = _kernels(y, y, scale, bw).mean(dim=(1, 2))
    kxy = _kernels(x, y, scale, bw).mean(dim=(1, 2))
    return (kxx + kyy - 2 * kxy).mean(dim=-1)


def mmd2_grad(x: torch.Tensor, y: torch.Tensor, bandwidths, scale: torch.Tensor) -> torch.Tensor:
    """d mmd2(x, y) / d x in closed form (the bandwidth scale held fixed): (B, n, d)."""
    bw = torch.as_tensor(bandwidths, dtype=x.dtype, device=x.device)
    n, m, k = x.shape[1], y.shape[1], bw.numel()
    coef = -2.0 / (bw * scale.unsqueeze(-1))  # (B, 1, 1, K)
    wxx = (_kernels(x, x, scale, bw) * coef).sum(-1)  # (B, n, n)
    wxy = (_kernels(x, y, scale, bw) * coef).sum(-1)  # (B, n, m)
    # d/dx_i of k(x_i, z) = coef * k * (x_i - z)
    gxx = wxx.sum(-1, keepdim=True) * x - wxx @ x
    gxy = wxy.sum(-1, keepdim=True) * x - wxy @ y
    return (2.0 / (n * n) * gxx - 2.0 / (n * m) * gxy) / k


class MMDRefiner(nn.Module):
    """x (B, n, d) moved towards y (B, m, d) by `steps` gradient steps on mmd2; returns the moved
    x and its remaining mmd2 (B,). A step moves a token by about `step_size` x the bandwidth-scaled
    gradient, whatever the feature scale."""

    def __init__(self, steps: int = 3, step_size: float = 0.5, bandwidths=(0.25, 0.5, 1.0, 2.0, 4.0)):
        super().__init__()
        self.steps, self.step_size, self.bandwidths = int(steps), float(step_size), tuple(bandwidths)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale = _bandwidth_scale(x, y)
        gain = self.step_size * scale * x.shape[1] / 2.0  # (B, 1, 1)
        for _ in range(self.steps):
            x = x - gain * mmd2_grad(x, y, self.bandwidths, scale)
        return x, mmd2(x, y, self.bandwidths, scale)


def masked_token_mean(tokens: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """tokens (B, L, d), keep (B, L) bool -> mean over kept tokens (B, d)."""
    w = keep.to(tokens.dtype).unsqueeze(-1)
    return (tokens * w).sum(1) / w.sum(1).clamp(min=1.0)

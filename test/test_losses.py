"""Losses over DuSE's similarity logits: focal loss against cross-entropy."""

import pytest
import torch
import torch.nn.functional as F

from duse_ros.models.losses import FocalLoss, build_loss, focal_loss


def batch(seed=0, n=32, classes=7):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, classes, generator=g) * 3, torch.randint(0, classes, (n,), generator=g)


def test_focal_loss_at_gamma_zero_is_cross_entropy():
    logits, target = batch()
    assert torch.allclose(focal_loss(logits, target, gamma=0.0), F.cross_entropy(logits, target), atol=1e-6)
    alpha = torch.linspace(0.5, 2.0, 7)
    assert torch.allclose(
        focal_loss(logits, target, gamma=0.0, alpha=alpha), F.cross_entropy(logits, target, weight=alpha), atol=1e-6
    )
    assert torch.allclose(FocalLoss(gamma=0.0)(logits, target), build_loss("ce")(logits, target), atol=1e-6)


def test_focal_loss_down_weights_easy_examples():
    logits, target = batch(1)
    per_clip_ce = F.cross_entropy(logits, target, reduction="none")
    per_clip = focal_loss(logits, target, gamma=2.0, reduction="none")
    p_t = torch.exp(-per_clip_ce)
    assert torch.allclose(per_clip, (1 - p_t) ** 2 * per_clip_ce, atol=1e-6)
    assert (per_clip <= per_clip_ce + 1e-7).all()
    assert torch.allclose(focal_loss(logits, target, gamma=2.0, reduction="sum"), per_clip.sum())
    assert torch.allclose(build_loss("focal", gamma=2.0)(logits, target), per_clip.mean())


def test_focal_loss_has_gradients_and_rejects_bad_options():
    logits, target = batch(2)
    logits.requires_grad_(True)
    focal_loss(logits, target).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match="reduction"):
        focal_loss(logits, target, reduction="max")
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        build_loss("hinge")

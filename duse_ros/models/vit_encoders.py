"""Frozen ViT encoders for BHGap: timm's VisionTransformer built from a named config, weights
from a file the user names (read by `weight_files`: never code), run block by block.

Two kinds share one builder: a visual encoder over RGB frames (e.g. MAE-Face's ViT-B/16) and an
audio encoder over log-mel images, 1 input channel, time as height and mel bins as width
(AudioMAE's layout). Weights: a state dict in a .safetensors file, a TorchScript archive, or a
PyTorch file read with `torch.load(weights_only=True)`; a {"model": ...} or {"state_dict": ...}
wrapper and a "module." prefix are unwrapped, MAE's decoder, mask token and any classifier head
are ignored, and a position embedding for another grid (AudioMAE's 10 s 1024 x 128 input, a
visual encoder trained at another size) is resampled to this encoder's grid. A missing tensor
or a wrong shape is an error naming the file and the key.
"""

from __future__ import annotations

import logging
import math
from functools import partial
from pathlib import Path

import torch
from torch import nn

from .torchvision_shim import import_open_clip
from .weight_files import check_finite, read_state_dict

log = logging.getLogger(__name__)

# Named encoder shapes (timm VisionTransformer arguments). MAE-family checkpoints use LayerNorm
# eps 1e-6 and qkv biases.
ENCODERS: dict[str, dict] = {
    "vit-b16": {"patch_size": 16, "embed_dim": 768, "depth": 12, "num_heads": 12, "mlp_ratio": 4.0},
    "vit-s16": {"patch_size": 16, "embed_dim": 384, "depth": 12, "num_heads": 6, "mlp_ratio": 4.0},
    # Tests and the CPU demo: random weights, the same code path.
    "vit-tiny": {"patch_size": 16, "embed_dim": 192, "depth": 4, "num_heads": 3, "mlp_ratio": 4.0},
}
# Keys of MAE pre-training / fine-tuning checkpoints that an encoder does not use.
_IGNORED_PREFIXES = ("decoder", "mask_token", "head", "fc_norm")


def encoder_config(name_or_config: str | dict) -> dict:
    """A named shape from ENCODERS, or a dict with the same keys (checked)."""
    if isinstance(name_or_config, str):
        if name_or_config not in ENCODERS:
            raise KeyError(
                f"unknown encoder {name_or_config!r}; known: {sorted(ENCODERS)} (or a dict of {sorted(ENCODERS['vit-b16'])})"
            )
        return dict(ENCODERS[name_or_config])
    config = dict(name_or_config)
    missing = sorted(set(ENCODERS["vit-b16"]) - set(config))
    if missing:
        raise KeyError(f"encoder config {config} lacks {missing}")
    return config


def build_encoder(config: str | dict, img_size: tuple[int, int], in_chans: int) -> nn.Module:
    """timm VisionTransformer (no head), random init, frozen, in eval mode."""
    import_open_clip()  # timm imports torchvision, which needs the CPU shim here
    from timm.models.vision_transformer import VisionTransformer

    c = encoder_config(config)
    for side in img_size:
        if side % c["patch_size"]:
            raise ValueError(f"encoder input {img_size} is not a multiple of its patch size {c['patch_size']}")
    encoder = VisionTransformer(
        img_size=img_size,
        patch_size=c["patch_size"],
        in_chans=in_chans,
        num_classes=0,
        embed_dim=c["embed_dim"],
        depth=c["depth"],
        num_heads=c["num_heads"],
        mlp_ratio=c["mlp_ratio"],
        qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        global_pool="token",
    )
    return encoder.requires_grad_(False).eval()


def embed(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> tokens before the first block (N, 1 + grid, D), as timm's forward_features."""
    x = encoder.patch_embed(x)
    x = encoder._pos_embed(x)
    x = encoder.patch_drop(x)
    return encoder.norm_pre(x)


def _resample_pos_embed(pos: torch.Tensor, encoder: nn.Module, source: str) -> torch.Tensor:
    from timm.layers import resample_abs_pos_embed

    grid = tuple(encoder.patch_embed.grid_size)
    prefix = encoder.num_prefix_tokens
    old_tokens = pos.shape[1] - prefix
    if old_tokens == grid[0] * grid[1]:
        return pos
    # A square grid stays square; an audio grid keeps its mel-bin width and changes its length.
    if grid[0] == grid[1] and math.isqrt(old_tokens) ** 2 == old_tokens:
        old = (math.isqrt(old_tokens),) * 2
    elif old_tokens % grid[1] == 0:
        old = (old_tokens // grid[1], grid[1])
    else:
        raise ValueError(f"{source}: pos_embed has {old_tokens} grid tokens, which fit no grid of width {grid[1]}")
    log.info("%s: position embedding resampled from grid %s to %s", source, old, grid)
    return resample_abs_pos_embed(pos, list(grid), list(old), num_prefix_tokens=prefix)


def load_encoder_weights(encoder: nn.Module, path: str, what: str) -> None:
    """Load `path` into `encoder` in place; `what` names the config key in errors."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"{what} {str(file)!r} does not exist")
    source = f"{what} {str(file)!r}"
    tensors = read_state_dict(file, source)
    expected = encoder.state_dict()
    # MAE checkpoints fine-tuned with global pooling carry fc_norm instead of the final norm.
    optional = {k for k in expected if k.startswith("norm.")}
    missing = sorted(k for k in expected if k not in tensors and k not in optional)
    if missing:
        raise ValueError(
            f"{source} lacks encoder tensors {missing[:6]}{' ...' if len(missing) > 6 else ''} "
            f"({len(missing)} of {len(expected)})"
        )
    for key, ref in expected.items():
        if key == "pos_embed" and key in tensors:  # another grid is resampled, once the rest fits
            continue
        if key in tensors and tuple(tensors[key].shape) != tuple(ref.shape):
            raise ValueError(
                f"{source}: tensor {key!r} has shape {tuple(tensors[key].shape)}, "
                f"the encoder expects {tuple(ref.shape)} (check the encoder config)"
            )
    unused = sorted(k for k in tensors if k not in expected and not k.startswith(_IGNORED_PREFIXES))
    if unused:
        raise ValueError(
            f"{source} holds tensors this encoder does not have: {unused[:6]}"
            f"{' ...' if len(unused) > 6 else ''}: is it the right kind of checkpoint?"
        )
    if "pos_embed" in tensors:
        tensors["pos_embed"] = _resample_pos_embed(tensors["pos_embed"], encoder, source)
    absent = sorted(optional - set(tensors))
    if absent:
        log.warning("%s has no %s: the final LayerNorm keeps its identity init", source, absent)
    encoder.load_state_dict({k: v for k, v in tensors.items() if k in expected}, strict=False)
    check_finite(encoder.named_parameters(), source)

"""A frozen open_clip CLIP, built by name with weights from a local file, driven layer by layer.

DuSE inserts prompt tokens between the transformer blocks of both CLIP towers, so it runs the
towers block by block here instead of calling `encode_image`/`encode_text`. With no prompts the
two functions below compute exactly what open_clip's own methods compute.

Weights come only from a file the user names, read by `weight_files` (an open_clip
state dict as .bin/.pt/.pth/.safetensors, or OpenAI's original TorchScript .pt), never from a
model hub. Extra open_clip configurations ship in `open_clip_configs/`: `DuSE-Tiny` is a small
random CLIP for tests (its towers differ in width and depth on purpose, so a mix-up of the two
fails loudly).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .torchvision_shim import import_open_clip
from .weight_files import check_finite, read_state_dict

_CONFIG_DIR = Path(__file__).with_name("open_clip_configs")
_configs_added = False


def open_clip_module():
    """The open_clip module, with duse_ros's extra model configurations registered (once)."""
    global _configs_added
    open_clip = import_open_clip()
    if not _configs_added:
        open_clip.add_model_config(_CONFIG_DIR)
        _configs_added = True
    return open_clip


def clip_config(backbone: str) -> dict:
    """open_clip's configuration dict for a model name (no weights, nothing built). Only CLIPs
    with open_clip's own ViT and text transformer qualify: timm or Hugging Face towers are
    driven differently, and building them would fetch their weights from a hub."""
    config = open_clip_module().get_model_config(backbone)
    if config is None:
        raise KeyError(f"open_clip has no model config named {backbone!r}")
    vision, text = config.get("vision_cfg", {}), config.get("text_cfg", {})
    foreign = [key for key in ("timm_model_name", "hf_model_name", "hf_tokenizer_name") if key in {**vision, **text}]
    if foreign or config.get("custom_text") or isinstance(vision.get("layers"), (list, tuple)):
        raise ValueError(
            f"open_clip model {backbone!r} is not a plain ViT CLIP ({', '.join(foreign) or 'custom towers'}); "
            "DuSE supports open_clip's own ViT + text transformer, e.g. ViT-B-32, ViT-B-16, ViT-L-14"
        )
    return config


@functools.cache
def tokenizer(backbone: str):
    """open_clip's tokenizer for `backbone` (built once per process: reading the BPE vocabulary takes ~0.1 s)."""
    clip_config(backbone)
    return open_clip_module().get_tokenizer(backbone)


class _RandomInitNote(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


def create_frozen_clip(
    backbone: str, weights: str = "", quick_gelu: bool = False, image_size: int | None = None
) -> nn.Module:
    """Build open_clip's CLIP `backbone` ("ViT-B-16", ...), load `weights` (a file path; "" keeps
    open_clip's random init) and freeze it. Tensors go to the current default device, so
    `with torch.device("meta"):` builds a weightless model for parameter counts.

    `quick_gelu` must match the weights: True for OpenAI's CLIP, False for LAION/DataComp ones.
    """
    open_clip = open_clip_module()
    clip_config(backbone)  # an unknown or unsupported name fails here, before anything is built
    path = Path(weights).expanduser().resolve() if weights else None
    if path is not None and not path.is_file():
        raise FileNotFoundError(f"CLIP weights file {str(path)!r} for {backbone} does not exist")
    root = logging.getLogger()
    quiet = _RandomInitNote()
    if path is not None:  # the weights load below; open_clip's "initialized randomly" would mislead
        root.addFilter(quiet)
    try:
        clip = open_clip.create_model(
            backbone, device=torch.empty(0).device, force_quick_gelu=quick_gelu, force_image_size=image_size
        )
    finally:
        root.removeFilter(quiet)
    if path is not None:
        load_clip_weights(clip, path, backbone)
    if not isinstance(clip, open_clip.CLIP):
        raise ValueError(f"{backbone} is a {type(clip).__name__}; DuSE needs an open_clip CLIP with its own text tower")
    if not clip.visual.transformer.batch_first or not clip.transformer.batch_first:
        raise ValueError(f"{backbone}: DuSE expects batch-first transformers")
    return clip.requires_grad_(False).eval()


def load_clip_weights(clip: nn.Module, path: Path, backbone: str) -> None:
    """`path`'s tensors into `clip` (read by `weight_files`: never code from the file), fitted as
    open_clip's own checkpoint loading fits them: a scalar logit_scale reshaped, position
    embeddings resized to this model's grid and context; then every key must match and every
    parameter be finite."""
    from open_clip.factory import resize_pos_embed, resize_text_pos_embed

    what = f"CLIP weights {str(path)!r}"
    state = read_state_dict(path, what)
    for name in {n for n, _ in clip.named_buffers()} - set(clip.state_dict()):
        state.pop(name, None)  # a traced CLIP saves the attention mask open_clip builds itself
    if "logit_scale" in state and state["logit_scale"].ndim != clip.logit_scale.ndim:
        state["logit_scale"] = state["logit_scale"].reshape(clip.logit_scale.shape)
    try:
        resize_pos_embed(state, clip)
        resize_text_pos_embed(state, clip)
        clip.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, ValueError) as e:
        detail = str(e) if len(str(e)) < 800 else str(e)[:800] + " ..."
        raise ValueError(f"{what} do not fit open_clip model {backbone}: {detail}") from None
    check_finite(clip.named_parameters(), what)


def encode_image_prompted(
    visual: nn.Module, images: torch.Tensor, prompts: Sequence[torch.Tensor | None] = ()
) -> torch.Tensor:
    """open_clip's `VisionTransformer.forward`, block by block, with prompt tokens.

    images: (N, 3, H, W). prompts[i] (None, (n, width) or (N, n, width)) is appended to the
    token sequence before block i and its outputs are dropped after it; blocks past the end of
    `prompts` run unprompted. Returns the projected image features (N, embed_dim).
    """
    x = visual._embeds(images)  # (N, 1 + grid², width)
    for i, block in enumerate(visual.transformer.resblocks):
        p = prompts[i] if i < len(prompts) else None
        if p is None:
            x = block(x)
            continue
        n = p.shape[-2]
        p = p.to(x.dtype).expand(x.shape[0], n, x.shape[-1])
        x = block(torch.cat([x, p], dim=1))[:, :-n]  # (N, 1 + grid², width)
    pooled, _ = visual._pool(x)
    return pooled @ visual.proj if visual.proj is not None else pooled


def encode_text_prompted(
    clip: nn.Module, token_ids: torch.Tensor, prompts: Sequence[torch.Tensor | None] = (), start: int = 1
) -> torch.Tensor:
    """open_clip's `CLIP.encode_text`, block by block, with prompt tokens in reserved slots.

    token_ids: (C, L), with n placeholder slots at [start, start + n). prompts[0] (n, width)
    replaces the slots' token embeddings (the positional embedding is added to it, as CoOp
    does); prompts[i] for i > 0 replaces the slots' hidden states before block i, discarding
    what block i - 1 wrote there. Returns the projected text features (C, embed_dim).
    """
    open_clip = open_clip_module()
    cast_dtype = clip.transformer.get_cast_dtype()
    x = clip.token_embedding(token_ids).to(cast_dtype)  # (C, L, width)
    for i, block in enumerate(clip.transformer.resblocks):
        p = prompts[i] if i < len(prompts) else None
        if p is not None:
            n = p.shape[-2]
            p = p.to(x.dtype).expand(x.shape[0], n, x.shape[-1])
            x = torch.cat([x[:, :start], p, x[:, start + n :]], dim=1)
        if i == 0:
            x = x + clip.positional_embedding.to(x.dtype)
        x = block(x, attn_mask=clip.attn_mask)
    x = clip.ln_final(x)
    x = open_clip.transformer.text_global_pool(
        x, token_ids, clip.text_pool_type, eos_token_id=getattr(clip, "text_eos_id", None)
    )
    if clip.text_projection is None:
        return x
    return clip.text_projection(x) if isinstance(clip.text_projection, nn.Linear) else x @ clip.text_projection

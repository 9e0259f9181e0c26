"""The one way nodes, tools, training and benchmarks turn what a user names into a model.

    load_model("fer2013-minixception")          a registered name; pretrained weights resolved
    load_model("duse-vitb16-normal", clip_weights="/models/ViT-B-16.pt")
    load_model("/models/duse_dfew.json")        a checkpoint: its config, then its weights
    load_model({"arch": "tiny", ...})           a config dict

It sits above the three owners it dispatches to, so none of them imports another upwards:
`duse_ros.models` builds architectures from configs (random init), `duse_ros.checkpoint` reads
and writes safetensors + JSON through the registry, and `duse_ros.weights` finds the converted
pretrained weights a registered config names with `"pretrained"`.
"""

from __future__ import annotations

from pathlib import Path

from duse_ros.checkpoint import load_checkpoint
from duse_ros.models import AffectModel, build_model, get_config
from duse_ros.weights import load_converted


def load_model(name_or_config: str | Path | dict, **overrides) -> AffectModel:
    """A model from a registered name, a checkpoint's .json path, or a config dict; `overrides`
    replace config keys (frozen-backbone files such as `clip_weights`, `frames_per_window`, ...)."""
    if isinstance(name_or_config, (str, Path)) and str(name_or_config).endswith(".json"):
        return load_checkpoint(name_or_config, **overrides)
    config = get_config(str(name_or_config)) if isinstance(name_or_config, (str, Path)) else dict(name_or_config)
    if config.get("pretrained"):
        return load_converted(config["pretrained"], **overrides)
    return build_model(config, **overrides)

"""Named model configurations and architecture builders.

A configuration is plain JSON-able data with an "arch" key naming a builder. A name such as
`duse-vitb16-normal` maps to one configuration; a path ending in `.json` is a checkpoint's
config (see `duse_ros.checkpoint`), whose trainable weights are loaded after building.
"""

from __future__ import annotations

import copy
import difflib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import torch

from .base import AffectModel

# The largest model build_model makes: ViT-L/14 DuSE holds 0.44e9 parameters; 2e9 (8 GB of fp32)
# is past anything registered, and far below what a typo such as `stem_width: 1e5` asks for.
MAX_PARAMETERS = 2_000_000_000

_ARCHS: dict[str, Callable[[dict], AffectModel]] = {}
_CONFIGS: dict[str, dict] = {}


def register_arch(arch: str):
    """Decorator: `builder(config) -> AffectModel` for configs whose "arch" is `arch`."""

    def wrap(builder: Callable[[dict], AffectModel]):
        if arch in _ARCHS:
            raise ValueError(f"architecture {arch!r} registered twice")
        _ARCHS[arch] = builder
        return builder

    return wrap


def register_config(name: str, config: dict) -> None:
    if "arch" not in config:
        raise ValueError(f"config {name!r} has no 'arch' key")
    if name in _CONFIGS:
        raise ValueError(f"model configuration {name!r} registered twice")
    _CONFIGS[name] = {**config, "name": name}


def with_defaults(config: dict, defaults: dict, family: str) -> tuple[str, str, dict]:
    """(name, arch, the config's other keys over `defaults`); a key `defaults` lacks is an error
    naming the config, so a typo never falls back to a default silently."""
    config = dict(config)
    name = config.pop("name", family.lower())
    arch = config.pop("arch", family.lower())
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise KeyError(f"{family} config {name!r}: unknown keys {unknown}; known: {sorted(defaults)}")
    return name, arch, {**defaults, **config}


def list_configs() -> list[str]:
    return sorted(_CONFIGS)


class UnknownModelError(KeyError):
    """A model name that is neither registered nor a checkpoint path; str() is the message itself
    (a KeyError's would be quoted), fit for a one-line error at configure."""

    def __str__(self) -> str:
        return str(self.args[0])


def get_config(name: str) -> dict:
    try:
        return copy.deepcopy(_CONFIGS[name])
    except KeyError:
        close = difflib.get_close_matches(str(name), list_configs(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownModelError(
            # what to do first, the long list last: /diagnostics keeps a failure's first 1000 characters
            f"unknown model {name!r}{hint}: give a registered name or a checkpoint's .json path; "
            f"registered ({len(_CONFIGS)}): {', '.join(list_configs())}"
        ) from None


def build_model(name_or_config: str | dict, **overrides) -> AffectModel:
    """The architecture a registered name or a config dict describes, with its initial weights
    (random where nothing else is named). Checkpoints and pretrained weights load through
    `duse_ros.loading.load_model`, which calls this.

    `overrides` replace config keys (e.g. `clip_weights=` for a frozen backbone file).
    """
    if isinstance(name_or_config, (str, Path)) and str(name_or_config).endswith(".json"):
        raise ValueError(f"{name_or_config} is a checkpoint: load it with duse_ros.loading.load_model")
    config = get_config(name_or_config) if isinstance(name_or_config, str) else copy.deepcopy(dict(name_or_config))
    if config.get("pretrained"):
        raise ValueError(
            f"{config.get('name', '?')!r} names pretrained weights ({config['pretrained']!r}): "
            "load it with duse_ros.loading.load_model"
        )
    config.update(overrides)
    arch = config.get("arch")
    if arch not in _ARCHS:
        raise KeyError(f"config {config.get('name', '?')!r} names unknown arch {arch!r}; known: {sorted(_ARCHS)}")
    check_size(config)
    return _ARCHS[arch](config)


# parameter_count by config (JSON text): a meta-device build costs about 40 % of a real one, and
# the same configuration is built again and again (a node's every configure, tests).
_COUNTS: dict[str, int] = {}
_MAX_COUNTS = 256


def parameter_count(config: dict) -> int:
    """Parameters and buffers of the model `config` describes, counted on the meta device
    (nothing allocated, no weights file read); once per configuration."""
    weightless = {k: ("" if k.endswith("_weights") else v) for k, v in config.items()}
    try:
        key = json.dumps(weightless, sort_keys=True)
    except (TypeError, ValueError):  # not plain JSON data: count it afresh
        key = None
    if key is not None and key in _COUNTS:
        return _COUNTS[key]
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # the real build that follows says it all once
    try:
        with torch.device("meta"):
            model = _ARCHS[config["arch"]](weightless)
    finally:
        logging.disable(previous)
    count = sum(t.numel() for t in (*model.parameters(), *model.buffers()))
    if key is not None:
        if len(_COUNTS) >= _MAX_COUNTS:
            _COUNTS.clear()
        _COUNTS[key] = count
    return count


def check_size(config: dict) -> None:
    """ValueError before anything is allocated when `config` describes an absurdly large model."""
    count = parameter_count(config)
    if count > MAX_PARAMETERS:
        sizes = {k: v for k, v in config.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 1}
        raise ValueError(
            f"model config {config.get('name', '?')!r} would hold {count:.3g} parameters "
            f"({4 * count / 1e9:.0f} GB in fp32), more than the {MAX_PARAMETERS:.0g} allowed: "
            f"check its sizes {sizes}"
        )

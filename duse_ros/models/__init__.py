"""Emotion models (pure PyTorch, no ROS). `build_model(name_or_config)` is the entry point."""

from . import (
    bhgap,  # noqa: F401  (registers the BHGap configurations)
    duse,  # noqa: F401  (registers the DuSE configurations)
    minixception,  # noqa: F401  (registers the trained FER2013 default)
    tiny,  # noqa: F401  (registers the tiny random-init configurations)
)
from .base import AffectModel, InputSpec, ModelOutput
from .registry import build_model, get_config, list_configs, register_arch, register_config

__all__ = [
    "AffectModel",
    "InputSpec",
    "ModelOutput",
    "build_model",
    "get_config",
    "list_configs",
    "register_arch",
    "register_config",
]

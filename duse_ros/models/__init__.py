"""Emotion models (pure PyTorch, no ROS). `build_model(name_or_config)` is the entry point."""
from .base import AffectModel, InputSpec, ModelOutput
from .registry import build_model, get_config, list_configs, register_arch, register_config
from . import tiny  # noqa: F401  (registers the tiny random-init configurations)
from . import duse  # noqa: F401  (registers the DuSE configurations)
from . import bhgap  # noqa: F401  (registers the BHGap configurations)
from . import minixception  # noqa: F401  (registers the trained FER2013 default)

__all__ = [
    "AffectModel", "InputSpec", "ModelOutput",
    "build_model", "get_config", "list_configs", "register_arch", "register_config",
]

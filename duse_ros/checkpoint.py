"""Checkpoints: a JSON config beside a safetensors file of the trainable weights. No pickle.

my_model.json         {"arch": ..., ..., "weights": "my_model.safetensors", "weights_sha256": "..."}
my_model.safetensors  trainable tensors only (frozen backbones load from their own files)

The JSON records the weights file's sha256 when it is written; loading checks it (a checkpoint
written before the hash was recorded loads without it unless the caller requires it, as the
converted default weights do), and refuses NaN or infinite tensors, naming the file and tensor.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file

from duse_ros.models.base import AffectModel
from duse_ros.models.registry import build_model
from duse_ros.models.weight_files import WeightFileError, check_finite

SHA256_KEY = "weights_sha256"


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or does not match the model it configures."""


def save_checkpoint(model: AffectModel, json_path: str | Path, extra: dict | None = None) -> Path:
    """Write `<stem>.json` and `<stem>.safetensors`; returns the JSON path."""
    json_path = Path(json_path)
    if json_path.suffix != ".json":
        raise CheckpointError(f"checkpoint path must end in .json, got {json_path}")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    weights_path = json_path.with_suffix(".safetensors")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.trainable_state_dict().items()}
    save_file(tensors, str(weights_path), metadata={"model_id": model.model_id})
    config = dict(model.config())
    config["weights"] = weights_path.name
    config[SHA256_KEY] = hashlib.sha256(weights_path.read_bytes()).hexdigest()
    if extra:
        config["training"] = extra
    json_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return json_path


def read_config(json_path: str | Path) -> dict:
    json_path = Path(json_path)
    try:
        config = json.loads(json_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint config {json_path} does not exist") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"checkpoint config {json_path} is not valid JSON: {e}") from None
    for key in ("arch", "weights"):
        if key not in config:
            raise CheckpointError(f"checkpoint config {json_path} has no {key!r} field")
    return config


def load_checkpoint(json_path: str | Path, require_sha256: bool = False, **overrides) -> AffectModel:
    """Build the model a checkpoint config describes and load its trainable weights, checking
    the weights file's recorded sha256 (required with `require_sha256`), every key and shape, and
    that every tensor is finite."""
    json_path = Path(json_path)
    config = read_config(json_path)
    weights_path = (json_path.parent / config.pop("weights")).resolve()
    recorded = config.pop(SHA256_KEY, None)
    training = config.pop("training", None)
    config.update(overrides)
    tensors = read_weights(json_path, weights_path, recorded, require_sha256)
    model = build_model(config)
    load_trainable(model, tensors, source=str(weights_path))
    # A run with `epochs: 0` saves its initial (random) trainable weights: flagged like any other.
    model.untrained = isinstance(training, dict) and training.get("epoch") == 0
    model.checkpoint = str(json_path)
    return model


def read_weights(json_path: Path, weights_path: Path, sha256: str | None, require_sha256: bool) -> dict:
    """The checkpoint's tensors, read once from bytes whose sha256 was checked."""
    try:
        data = weights_path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{json_path}: weights file {weights_path} does not exist") from None
    except OSError as e:
        raise CheckpointError(f"{json_path}: cannot read weights {weights_path}: {e.strerror}") from None
    if sha256 is None and require_sha256:
        raise CheckpointError(f"{json_path} records no {SHA256_KEY}: the weights cannot be verified")
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise CheckpointError(
            f"{json_path}: weights file {weights_path} has sha256 {hashlib.sha256(data).hexdigest()}, "
            f"the checkpoint records {sha256}: the file was changed or damaged after it was written"
        )
    try:
        tensors = load_safetensors(data)
    except Exception as e:  # safetensors raises its own error type for corrupt headers
        raise CheckpointError(f"{json_path}: cannot read weights {weights_path}: {e}") from None
    try:
        check_finite(tensors, str(weights_path))
    except WeightFileError as e:
        raise CheckpointError(f"{json_path}: {e}") from None
    return tensors


def load_trainable(model: AffectModel, tensors: dict[str, torch.Tensor], source: str) -> None:
    expected = model.trainable_state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not match model {model.model_id!r}: "
            f"missing keys {missing[:8]}{'...' if len(missing) > 8 else ''}, "
            f"unexpected keys {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}"
        )
    for key, ref in expected.items():
        if tuple(tensors[key].shape) != tuple(ref.shape):
            raise CheckpointError(
                f"{source}: tensor {key!r} has shape {tuple(tensors[key].shape)}, "
                f"model {model.model_id!r} expects {tuple(ref.shape)}"
            )
    model.load_state_dict(tensors, strict=False)

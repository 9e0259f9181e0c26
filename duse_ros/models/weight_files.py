"""Reading a tensor file a user names (frozen CLIP towers, BHGap encoders, checkpoints) without
ever running code from it.

Three readers, nothing else:
- `.safetensors`: a header and raw tensors, no code by construction;
- a TorchScript archive, recognised as torch itself recognises one (its zip reader's records,
  relative to the archive's one top folder, include `constants.pkl`), read with `torch.jit.load`,
  whose unpickler only builds TorchScript types compiled from the archive;
- anything else: `torch.load(weights_only=True)`, which refuses every pickle global outside
  tensors and plain containers.
A zip that merely holds some `constants.pkl` in a sub-folder is not TorchScript to torch: it goes
to the `weights_only=True` reader like any other pickle, and whatever code it carries is refused.
The loaders check that the parameters they load are finite (`check_finite`): NaN weights would
pass configure and then fail every window. (Buffers such as an attention mask hold -inf on
purpose.)
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import torch

# Tensors of OpenAI's TorchScript CLIP that are constants of its graph, not weights.
_TORCHSCRIPT_CONSTANTS = ("input_resolution", "context_length", "vocab_size")


class WeightFileError(ValueError):
    """A weights file cannot be read safely, or holds something other than finite tensors."""


def is_torchscript(path: str | Path) -> bool:
    """The test torch.load applies before handing a file to torch.jit.load: a zip that torch's
    own archive reader opens, with `constants.pkl` among its records (names relative to the
    archive's top folder; torch's reader rejects records outside that folder)."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        return False
    try:
        with torch.serialization._open_zipfile_reader(str(path)) as archive:
            return torch.serialization._is_torchscript_zip(archive)
    except RuntimeError:  # not an archive torch can read at all: then not TorchScript either
        return False


def read_state_dict(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """The tensors of `path` on the CPU; `what` names the file's role in errors ("clip_weights
    '/models/ViT-B-16.pt'"). A {"state_dict": ...} / {"model": ...} wrapper and a "module."
    prefix are unwrapped; non-tensor entries are left out."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path))
        elif is_torchscript(path):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = torch.jit.load(str(path), map_location="cpu")
            obj = {k: v for k, v in module.state_dict().items() if k not in _TORCHSCRIPT_CONSTANTS}
        else:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightFileError(f"{what} does not exist") from None
    except Exception as e:  # noqa: BLE001 - pickled code, a corrupt file, a bad header: say which file
        detail = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise WeightFileError(
            f"{what} cannot be read as tensors (safetensors, TorchScript, or torch.load with "
            f"weights_only=True; no code from a weights file is run): {type(e).__name__}: {detail[:300]}"
        ) from None
    for key in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise WeightFileError(f"{what} holds a {type(obj).__name__}, not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items() if torch.is_tensor(v)}


def check_finite(tensors, what: str) -> None:
    """WeightFileError naming the first tensor (of a dict or `named_parameters()`) holding NaN or
    infinity."""
    for key, tensor in dict(tensors).items():
        if tensor.is_floating_point() and not tensor.is_meta and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise WeightFileError(f"{what}: tensor {key!r} holds {bad} non-finite values (NaN or infinity)")

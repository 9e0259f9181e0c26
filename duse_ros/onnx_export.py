"""A model to one self-describing ONNX file, and the check that a file is such an export, unaltered.

    data = export_onnx(load_model("fer2013-minixception"))         bytes of the .onnx file
    data = export_onnx(model, quantize=True)                       int8 weights (dynamic quantisation)
    metadata = verify_onnx(data)                                   the duse.* metadata, or OnnxExportError

What the graph holds: the model's forward in eval mode, traced with PyTorch's TorchScript ONNX
exporter (opset 17; torch 2.13's default dynamo exporter needs onnxscript and took more than ten
minutes on bhgap-tiny here). Everything that does not depend on the window is computed at export
and stored as constants: DuSE's text features and visual prompts (the exporter's constant
folding), BHGap's fixed prompts and filterbank. The batch axis (`faces`) is dynamic, and so is
the audio length. BHGap's Mamba scan and log-mel frontend take their export forms inside the
exporter (models/ssm.py `doubling_scan`, models/audio_frontend.py: a DFT as matmuls), which are
plain ONNX operators.

Inputs: `video` (faces, T, 3, S, S) float32, normalised as `input_spec` says; `audio` (faces,
samples) float32 for audio-visual models, which also take `has_video` (bool scalar): False runs
the audio-only path (the `video` fed then is ignored and may have 0 rows), as
`model(video=None, audio=...)` does. Output: `logits` (faces, C) in `class_names` order.

Metadata (ONNX metadata_props, all strings): duse.format, duse.model_id, duse.class_names (JSON),
duse.input_spec (JSON: the InputSpec's fields, `audio_s` included; a file written before that field
existed loads with audio_s None), duse.untrained, duse.source_checkpoint, duse.source_sha256 (of the
checkpoint's .json and weights file, "" when the weights are not from a checkpoint),
duse.quantization, duse.exporter, and duse.graph_sha256: the sha256 of the whole file with that
value's 64 hex digits written as zeros. Any byte changed after export (the graph, a weight, a
metadata entry) changes the digest and the file is refused. The digest guards against
corruption and editing by mistake; it is not a signature (whoever edits a file can recompute it).

An ONNX file is data: onnxruntime interprets its operators and runs no code from the file (no
custom-op library is ever registered, and a file is read as one buffer, so external-data
references cannot reach other files).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import re
import tempfile
from pathlib import Path

import torch
from torch import nn

from duse_ros.models import AffectModel
from duse_ros.models.base import window_audio_samples

FORMAT = "duse-onnx/1"
OPSET = 17
DIGEST_KEY = "duse.graph_sha256"
REQUIRED_KEYS = (
    "duse.format",
    "duse.model_id",
    "duse.class_names",
    "duse.input_spec",
    "duse.untrained",
    "duse.source_checkpoint",
    "duse.source_sha256",
    "duse.quantization",
    "duse.exporter",
)
QUANTIZATIONS = ("none", "int8-dynamic")
# The protobuf encoding of the digest entry (StringStringEntryProto: key = field 1, value = field 2,
# both length-delimited): the key is found as bytes, so checking needs no ONNX parser.
_DIGEST_PREFIX = b"\x0a" + bytes([len(DIGEST_KEY)]) + DIGEST_KEY.encode() + b"\x12\x40"
_BLANK_DIGEST = b"0" * 64
_TRACE_BATCH = 2


class OnnxExportError(ValueError):
    """A file that is not a duse_ros ONNX export, or one altered since."""


def _need(package: str):
    try:
        return __import__(package)
    except ImportError:
        raise ImportError(
            f"ONNX export and runtime need the {package!r} package: pip install 'duse_ros[onnx]' "
            "(onnx and onnxruntime; onnxruntime-gpu on a CUDA machine)"
        ) from None


def source_sha256(checkpoint: str) -> str:
    """sha256 over a checkpoint's .json and the weights file it names; "" for no checkpoint."""
    if not checkpoint:
        return ""
    json_path = Path(checkpoint)
    digest = hashlib.sha256(json_path.read_bytes())
    weights = json.loads(json_path.read_text()).get("weights")
    if weights:
        with open(json_path.parent / weights, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


class _Call(nn.Module):
    """model(video=..., audio=...) with positional tensors, as the tracer calls it."""

    def __init__(self, model: AffectModel, video: bool, audio: bool):
        super().__init__()
        self.model, self.video, self.audio = model, video, audio

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        it = iter(inputs)
        return self.model(video=next(it) if self.video else None, audio=next(it) if self.audio else None)


def example_inputs(model: AffectModel, batch: int = _TRACE_BATCH, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random window tensors of the shapes `model` takes: {"video": ..., "audio": ...}."""
    spec = model.input_spec
    g = torch.Generator().manual_seed(seed)
    out = {}
    if spec.uses_video:
        out["video"] = torch.randn(batch, spec.num_frames, 3, spec.image_size, spec.image_size, generator=g)
    if spec.uses_audio:
        # the graph takes audio of any length; it is traced on a window's
        out["audio"] = 0.1 * torch.randn(batch, window_audio_samples(model), generator=g)
    return out


@contextlib.contextmanager
def _export_mode():
    # nn.TransformerEncoder's fused eval fast path (BHGap's fusion) has no ONNX symbolic
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad():
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


def _trace(model: AffectModel, inputs: dict[str, torch.Tensor], opset: int):
    """One ONNX ModelProto of model(**inputs), batch (and audio length) dynamic."""
    import io
    import warnings

    onnx = _need("onnx")
    names = list(inputs)
    axes = {"video": {0: "faces"}, "audio": {0: "faces", 1: "samples"}}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # the deprecation notice of the TorchScript exporter, and tracer notes on shape arithmetic
        warnings.simplefilter("ignore")
        torch.onnx.export(
            # in eval mode: the exporter puts the module back in the mode it found it in, recursively
            _Call(model, "video" in inputs, "audio" in inputs).eval(),
            tuple(inputs.values()),
            buffer,
            dynamo=False,
            input_names=names,
            output_names=["logits"],
            dynamic_axes={**{n: axes[n] for n in names}, "logits": {0: "faces"}},
            opset_version=opset,
            do_constant_folding=True,
        )
    return onnx.load_from_string(buffer.getvalue())


def _branch_on_video(with_video, audio_only):
    """One model whose `has_video` input picks the audio-visual or the audio-only graph (an If)."""
    from onnx import TensorProto, helper

    def as_branch(proto, name: str, prefix: str):
        graph = proto.graph
        outer = {i.name for i in graph.input}

        def rename(n: str) -> str:
            return n if not n or n in outer else prefix + n

        for node in graph.node:
            node.input[:] = [rename(n) for n in node.input]
            node.output[:] = [rename(n) for n in node.output]
            node.name = prefix + node.name
        for init in graph.initializer:
            init.name = rename(init.name)
        for out in graph.output:
            out.name = rename(out.name)
        return helper.make_graph(list(graph.node), name, [], list(graph.output), list(graph.initializer))

    inputs = list(with_video.graph.input) + [helper.make_tensor_value_info("has_video", TensorProto.BOOL, [])]
    output = with_video.graph.output[0]
    logits = helper.make_tensor_value_info("logits", output.type.tensor_type.elem_type, ["faces", None])
    node = helper.make_node(
        "If",
        ["has_video"],
        ["logits"],
        name="has_video",
        then_branch=as_branch(with_video, "with_video", "av/"),
        else_branch=as_branch(audio_only, "audio_only", "a/"),
    )
    graph = helper.make_graph([node], "duse_ros", inputs, [logits])
    return helper.make_model(graph, opset_imports=list(with_video.opset_import), ir_version=with_video.ir_version)


def _quantize(proto):
    """Dynamic int8 quantisation of the MatMul and Gemm weights (activations quantised per run)."""
    _need("onnxruntime")
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(proto, str(src))
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
        return onnx.load(str(dst))


def export_onnx(model: AffectModel, quantize: bool = False, opset: int = OPSET) -> bytes:
    """The bytes of `model`'s ONNX export, metadata and digest included (see the module doc)."""
    onnx = _need("onnx")
    model.eval()
    spec = model.input_spec
    inputs = example_inputs(model)
    with _export_mode(), model.frozen_for_export():
        proto = _trace(model, inputs, opset)
        if spec.uses_audio and spec.uses_video:
            proto = _branch_on_video(proto, _trace(model, {"audio": inputs["audio"]}, opset))
    if quantize:
        proto = _quantize(proto)
    metadata = {
        "duse.format": FORMAT,
        "duse.model_id": model.model_id,
        "duse.class_names": json.dumps(list(model.class_names)),
        "duse.input_spec": json.dumps(dataclasses.asdict(spec)),
        "duse.untrained": json.dumps(bool(model.untrained)),
        "duse.source_checkpoint": model.checkpoint or "",
        "duse.source_sha256": source_sha256(model.checkpoint),
        "duse.quantization": "int8-dynamic" if quantize else "none",
        "duse.exporter": f"torch {torch.__version__} TorchScript exporter, opset {opset}, onnx {onnx.__version__}",
    }
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name, proto.producer_version = "duse_ros", ""
    return seal(proto)


def seal(proto) -> bytes:
    """The file bytes of ModelProto `proto` (its duse.* metadata set) with the digest entry added."""
    for entry in list(proto.metadata_props):
        if entry.key == DIGEST_KEY:
            proto.metadata_props.remove(entry)
    proto.metadata_props.add(key=DIGEST_KEY, value=_BLANK_DIGEST.decode())
    if proto.ByteSize() >= 2**31:
        raise OnnxExportError("the export is over 2 GB, more than one ONNX file can hold")
    data = proto.SerializeToString()
    start = _digest_offset(data)
    return data[:start] + hashlib.sha256(data).hexdigest().encode() + data[start + 64 :]


def _digest_offset(data: bytes) -> int:
    at = data.find(_DIGEST_PREFIX)
    if at < 0:
        raise OnnxExportError(f"no {DIGEST_KEY} entry: not a duse_ros ONNX export (make one with duse-export)")
    if data.find(_DIGEST_PREFIX, at + 1) >= 0:
        raise OnnxExportError(f"more than one {DIGEST_KEY} entry: the file was altered")
    return at + len(_DIGEST_PREFIX)


def verify_onnx(data: bytes, source: str = "ONNX file") -> None:
    """Raise OnnxExportError unless `data` is a duse_ros export whose bytes are those exported."""
    start = _digest_offset(data)
    recorded = data[start : start + 64]
    if not re.fullmatch(rb"[0-9a-f]{64}", recorded):
        raise OnnxExportError(f"{source}: its {DIGEST_KEY} is not a sha256 hex digest: the file was altered")
    actual = hashlib.sha256(data[:start] + _BLANK_DIGEST + data[start + 64 :]).hexdigest()
    if actual != recorded.decode():
        raise OnnxExportError(
            f"{source}: altered since export (sha256 {actual[:12]}..., recorded {recorded[:12].decode()}...): "
            "export the model again with duse-export"
        )


def check_metadata(metadata: dict[str, str], source: str = "ONNX file") -> dict:
    """The duse.* metadata decoded: {"model_id", "class_names", "input_spec", "untrained", ...};
    OnnxExportError naming the key for anything missing or malformed."""
    missing = [k for k in REQUIRED_KEYS if k not in metadata]
    if missing:
        raise OnnxExportError(f"{source}: metadata lacks {missing}: not a duse_ros export (make one with duse-export)")
    if metadata["duse.format"] != FORMAT:
        raise OnnxExportError(f"{source}: duse.format {metadata['duse.format']!r}, this version reads {FORMAT!r}")
    try:
        class_names = json.loads(metadata["duse.class_names"])
        spec = json.loads(metadata["duse.input_spec"])
        untrained = json.loads(metadata["duse.untrained"])
    except json.JSONDecodeError as e:
        raise OnnxExportError(f"{source}: malformed metadata ({e})") from None
    if not (isinstance(class_names, list) and class_names and all(isinstance(c, str) for c in class_names)):
        raise OnnxExportError(f"{source}: duse.class_names must be a non-empty list of names")
    if not isinstance(untrained, bool) or metadata["duse.quantization"] not in QUANTIZATIONS:
        raise OnnxExportError(f"{source}: duse.untrained or duse.quantization malformed")
    return {
        "model_id": metadata["duse.model_id"],
        "class_names": class_names,
        "input_spec": spec,
        "untrained": untrained,
        "source_checkpoint": metadata["duse.source_checkpoint"],
        "source_sha256": metadata["duse.source_sha256"],
        "quantization": metadata["duse.quantization"],
        "exporter": metadata["duse.exporter"],
    }

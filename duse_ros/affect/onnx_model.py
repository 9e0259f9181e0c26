"""ONNX Runtime behind the AffectModel interface, so the inference engine runs an exported model
with its one queue, batching and counters (runtime `onnxruntime` of affect_node).

    model = load_onnx_model("/models/fer.onnx", device="cpu")      a duse-export file, verified
    model = load_onnx_model("fer2013-minixception")                 any other name: exported in memory
    InferenceEngine(model, device="cpu", ...)                       tensors stay on the host; ORT
                                                                    moves them to its provider

Providers: device "cpu" -> CPUExecutionProvider; "cuda" / "cuda:N" -> TensorRT (when installed,
e.g. a Jetson's onnxruntime-gpu), then CUDA, then CPU for what they do not take; "auto" -> the
same when available, else CPU. `provider` names the one that runs the graph.

Stopping: the engine checks for stop() before the forward, like any module. A run already in
ORT is ended by `interrupt()` (ORT's RunOptions.terminate, checked between graph nodes), which
raises the engine's ForwardCancelled; without it a stop waits at most one forward (one batch).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from duse_ros.affect.engine import ForwardCancelled
from duse_ros.loading import load_model
from duse_ros.models.base import AffectModel, InputSpec
from duse_ros.onnx_export import OnnxExportError, check_metadata, export_onnx, verify_onnx

_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise ImportError(
            "runtime 'onnxruntime' needs the onnxruntime package: pip install 'duse_ros[onnx]' "
            "(onnxruntime-gpu on a CUDA machine or Jetson), or set runtime to 'torch'"
        ) from None
    return onnxruntime


def choose_providers(device: str, available: list[str]) -> list[str | tuple[str, dict]]:
    """ORT providers for a device parameter, most preferred first; ValueError saying what to
    install or set when the device asks for a GPU this onnxruntime cannot use."""
    spec = str(device).strip().lower()
    if spec == "cpu":
        return ["CPUExecutionProvider"]
    gpu = [p for p in _GPU_PROVIDERS if p in available]
    if spec == "auto":
        return [*gpu, "CPUExecutionProvider"]
    if spec != "cuda" and not spec.startswith("cuda:"):
        raise ValueError(f"invalid device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if not gpu:
        raise ValueError(
            f"device {device!r} with runtime 'onnxruntime' needs its TensorRT or CUDA provider, and this "
            f"onnxruntime has {available}: install onnxruntime-gpu (on a Jetson, NVIDIA's build) or set device to 'cpu'"
        )
    index = spec.partition(":")[2]
    if index and not index.isdigit():
        raise ValueError(f"invalid device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    options = {"device_id": int(index or 0)}
    return [*((p, dict(options)) for p in gpu), "CPUExecutionProvider"]


class OnnxModel(AffectModel):
    """An exported model run by ONNX Runtime; see the module doc. `data` must be a verified
    duse-export file's bytes (`load_onnx_model` checks them)."""

    runtime = "onnxruntime"

    def __init__(self, data: bytes, source: str, device: str = "cpu", threads: int = 0):
        super().__init__()
        ort = import_onnxruntime()
        verify_onnx(data, source)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        # ORT's pool otherwise spins after each run, taking the cores the node's other threads need
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = choose_providers(device, ort.get_available_providers())
        self._session = ort.InferenceSession(data, options, providers=providers)
        meta = check_metadata(self._session.get_modelmeta().custom_metadata_map, source)
        self._meta = meta
        self.model_id = meta["model_id"]
        self.class_names = meta["class_names"]
        spec = dict(meta["input_spec"])
        spec.update({k: tuple(spec[k]) for k in ("mean", "std") if k in spec})
        try:
            self.input_spec = InputSpec(**spec)
        except TypeError as e:
            raise OnnxExportError(f"{source}: duse.input_spec malformed ({e})") from None
        audio_s = self.input_spec.audio_s
        if audio_s is not None and (isinstance(audio_s, bool) or not isinstance(audio_s, (int, float)) or audio_s <= 0):
            raise OnnxExportError(f"{source}: duse.input_spec audio_s must be a number > 0 or null, got {audio_s!r}")
        self.untrained = meta["untrained"]
        self.checkpoint = source
        self.provider = self._session.get_providers()[0]
        self._check_graph(source)
        self._ort = ort
        self._lock = threading.Lock()
        self._active = None  # RunOptions of the run in progress
        self._interrupted = False

    def _check_graph(self, source: str) -> None:
        """The graph's inputs and output agree with the metadata (a file from another model is refused)."""
        spec = self.input_spec
        inputs = {i.name: i.shape for i in self._session.get_inputs()}
        expected = {"video"} if spec.uses_video else set()
        if spec.uses_audio:
            expected |= {"audio", "has_video"} if spec.uses_video else {"audio"}
        if set(inputs) != expected:
            raise OnnxExportError(
                f"{source}: graph inputs {sorted(inputs)} do not match its metadata ({sorted(expected)})"
            )
        if spec.uses_video and inputs["video"][1:] != [spec.num_frames, 3, spec.image_size, spec.image_size]:
            raise OnnxExportError(
                f"{source}: graph video input {inputs['video']} does not match duse.input_spec "
                f"({spec.num_frames} frames of {spec.image_size}px)"
            )
        outputs = self._session.get_outputs()
        width = outputs[0].shape[-1] if len(outputs) == 1 and outputs[0].shape else None
        if isinstance(width, int) and width != len(self.class_names):
            raise OnnxExportError(f"{source}: graph gives {width} logits for {len(self.class_names)} class names")

    def config(self) -> dict:
        return {"onnx": self.checkpoint, **self._meta}

    def forward(self, video: torch.Tensor | None = None, audio: torch.Tensor | None = None) -> torch.Tensor:
        spec = self.input_spec
        if video is None and audio is None:
            raise ValueError(f"{self.model_id} needs video or audio, got neither")
        if audio is not None and not spec.uses_audio:
            raise ValueError(f"{self.model_id} is a video-only model and takes no audio")
        if video is None and not spec.uses_audio:
            raise ValueError(f"{self.model_id} needs video, got none")
        feeds = {}
        if spec.uses_video:
            if video is None:  # the audio-only branch; the video fed is not read
                size = spec.image_size
                feeds["video"] = np.zeros((0, spec.num_frames, 3, size, size), dtype=np.float32)
            else:
                feeds["video"] = np.ascontiguousarray(video.detach().cpu().numpy(), dtype=np.float32)
        if spec.uses_audio:
            if audio is None:
                raise ValueError(f"{self.model_id}'s export needs audio with its video")
            feeds["audio"] = np.ascontiguousarray(audio.detach().cpu().numpy(), dtype=np.float32)
            if spec.uses_video:
                feeds["has_video"] = np.array(video is not None)
        run_options = self._ort.RunOptions()
        with self._lock:
            if self._interrupted:
                raise ForwardCancelled
            self._active = run_options
        try:
            (logits,) = self._session.run(["logits"], feeds, run_options)
        except Exception:
            if run_options.terminate:
                raise ForwardCancelled from None
            raise
        finally:
            with self._lock:
                self._active = None
        return torch.from_numpy(logits)

    def interrupt(self) -> None:
        """End the run in progress (it raises ForwardCancelled) and refuse runs until `resume()`."""
        with self._lock:
            self._interrupted = True
            if self._active is not None:
                self._active.terminate = True

    def resume(self) -> None:
        with self._lock:
            self._interrupted = False


def load_onnx_model(name: str | Path, device: str = "cpu", threads: int = 0, **overrides) -> OnnxModel:
    """An OnnxModel from a duse-export .onnx file (verified: OnnxExportError when it is not one,
    or altered), or from any name `load_model` takes, exported in memory first (`overrides` go
    to load_model)."""
    import_onnxruntime()
    if str(name).endswith(".onnx"):
        path = Path(name)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise OnnxExportError(f"cannot read ONNX file {path}: {e.strerror}") from None
        return OnnxModel(data, str(path), device=device, threads=threads)
    model = load_model(name, **overrides)
    exported = OnnxModel(export_onnx(model), f"{model.model_id} (exported at load)", device=device, threads=threads)
    exported.checkpoint = model.checkpoint
    return exported

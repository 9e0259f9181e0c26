"""duse-export and the onnxruntime runtime: every architecture round-trips to ONNX Runtime within
1e-4 of PyTorch, the export forms of BHGap's scan and frontend equal the originals, a file that
is altered, not ours, or from another model is refused, and the engine runs the ONNX model with
its usual contract (batched faces, stop ends a run in ORT)."""

from __future__ import annotations

import json
import sys
import threading
import time

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from duse_ros.affect.engine import ForwardCancelled, InferenceEngine, Job  # noqa: E402
from duse_ros.affect.onnx_model import OnnxModel, choose_providers, import_onnxruntime, load_onnx_model  # noqa: E402
from duse_ros.loading import load_model  # noqa: E402
from duse_ros.models import audio_frontend, build_model, ssm  # noqa: E402
from duse_ros.models.base import AffectModel, InputSpec  # noqa: E402
from duse_ros.onnx_export import DIGEST_KEY, OnnxExportError, example_inputs, export_onnx, seal  # noqa: E402
from duse_ros.tools import export as export_tool  # noqa: E402

ARCHITECTURES = ["fer2013-minixception", "duse-tiny", "bhgap-tiny", "tiny-random-video", "tiny-random-av"]
SLOW_EXPORTS = {"bhgap-tiny": "tracing the Mamba scan takes seconds"}
_EXPORTS: dict[str, tuple[AffectModel, bytes]] = {}


def exported(name: str) -> tuple[AffectModel, bytes]:
    """(the PyTorch model, its export), once per test session."""
    if name not in _EXPORTS:
        model = load_model(name).eval()
        _EXPORTS[name] = model, export_onnx(model)
    return _EXPORTS[name]


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW_EXPORTS else []) for n in ARCHITECTURES]
)
def test_onnx_runtime_equals_pytorch(name):
    model, data = exported(name)
    runtime = OnnxModel(data, name)
    assert (runtime.model_id, runtime.class_names, runtime.untrained) == (
        model.model_id,
        model.class_names,
        model.untrained,
    )
    assert runtime.input_spec == model.input_spec and runtime.provider == "CPUExecutionProvider"
    # three faces: not the batch the graph was traced with (2), on other windows than the trace's
    windows = [example_inputs(model, batch=3, seed=7)]
    if model.input_spec.uses_audio:  # the audio-only path (no face), and a shorter audio span
        windows.append({"audio": windows[0]["audio"][:, :-1234]})
        windows.append({"video": windows[0]["video"][:1], "audio": windows[0]["audio"][:1, 500:]})
    with torch.inference_mode():
        for inputs in windows:
            ours, theirs = runtime(**inputs), model(**inputs)
            assert ours.shape == theirs.shape
            assert torch.allclose(ours, theirs, atol=1e-4, rtol=0), (ours - theirs).abs().max()


def test_metadata_names_model_input_and_source():
    model, data = exported("fer2013-minixception")
    meta = {p.key: p.value for p in onnx.load_from_string(data).metadata_props}
    assert meta["duse.model_id"] == "fer2013-minixception"
    assert json.loads(meta["duse.class_names"]) == model.class_names
    assert json.loads(meta["duse.input_spec"])["image_size"] == model.input_spec.image_size
    assert meta["duse.untrained"] == "false" and meta["duse.quantization"] == "none"
    assert meta["duse.source_checkpoint"] == model.checkpoint and len(meta["duse.source_sha256"]) == 64
    assert len(meta[DIGEST_KEY]) == 64


def test_duse_text_features_are_constants_not_a_text_tower():
    model, data = exported("duse-tiny")
    graph = onnx.load_from_string(data).graph
    names = {i.name for i in graph.initializer}
    assert not any("token_embedding" in n or n.startswith("clip.transformer.") for n in names), sorted(names)[:20]
    # the graph has one input: the video (no token ids); the text tower's 49408-row embedding is gone
    assert [i.name for i in graph.input] == ["video"]
    assert max(np.prod(i.dims) for i in graph.initializer) < 49408 * 64


def test_doubling_scan_equals_mambapy_and_sequential():
    from mambapy.pscan import pscan

    g = torch.Generator().manual_seed(0)
    decay = torch.rand(2, 37, 6, 4, generator=g) * 0.9 + 0.05  # 37: not a power of two
    drive = torch.randn(2, 37, 6, 4, generator=g)
    h, expected = torch.zeros(2, 6, 4), []
    for t in range(37):
        h = decay[:, t] * h + drive[:, t]
        expected.append(h)
    expected = torch.stack(expected, dim=1)
    assert torch.allclose(ssm.doubling_scan(decay, drive), expected, atol=1e-5)
    assert torch.allclose(pscan(decay.clone(), drive.clone()), expected, atol=1e-5)


def test_export_forms_of_the_frontend_equal_the_originals(monkeypatch):
    config = audio_frontend.FbankConfig()
    frontend = audio_frontend.LogMelFrontend(config)
    waves = [0.1 * torch.randn(2, n, generator=torch.Generator().manual_seed(n)) for n in (32000, 20000, 40000)]
    originals = [frontend(w) for w in waves]
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    for wave, original in zip(waves, originals):
        assert torch.allclose(frontend(wave), original, atol=1e-4), (frontend(wave) - original).abs().max()


def test_an_audio_models_audio_length_travels_in_the_export():
    """audio_s is in duse.input_spec, the graph is traced on that much audio, and an export
    written before the field existed (its spec without audio_s) still loads, with None."""
    model = build_model("tiny-random-av", audio_s=3.0).eval()
    assert example_inputs(model)["audio"].shape[1] == 3 * model.input_spec.audio_rate
    data = export_onnx(model)
    meta = {p.key: p.value for p in onnx.load_from_string(data).metadata_props}
    assert json.loads(meta["duse.input_spec"])["audio_s"] == 3.0
    runtime = OnnxModel(data, "audio_s")
    assert runtime.input_spec == model.input_spec and runtime.input_spec.audio_s == 3.0
    proto = onnx.load_from_string(data)
    for entry in proto.metadata_props:
        if entry.key == "duse.input_spec":
            spec = json.loads(entry.value)
            del spec["audio_s"]
            entry.value = json.dumps(spec)
    assert OnnxModel(seal(proto), "older export").input_spec.audio_s is None
    for entry in proto.metadata_props:
        if entry.key == "duse.input_spec":
            entry.value = json.dumps({**spec, "audio_s": "long"})
    with pytest.raises(OnnxExportError, match="audio_s must be a number > 0 or null"):
        OnnxModel(seal(proto), "malformed")


def _tampered(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) >= 1
    return data.replace(old, new, 1)


def test_altered_bytes_edited_metadata_and_foreign_files_are_refused(tmp_path):
    model, data = exported("tiny-random-video")
    OnnxModel(data, "original")  # accepted
    weight = onnx.load_from_string(data).graph.initializer[0].raw_data[:16]
    flipped = _tampered(data, weight, bytes([weight[0] ^ 1]) + weight[1:])
    with pytest.raises(OnnxExportError, match="altered since export"):
        OnnxModel(flipped, "flipped")
    relabelled = _tampered(data, b'"happiness"', b'"happyness"')
    with pytest.raises(OnnxExportError, match="altered since export"):
        OnnxModel(relabelled, "relabelled")
    untrained = _tampered(data, b"duse.untrained\x12\x04true", b"duse.untrained\x12\x04True")
    with pytest.raises(OnnxExportError, match="altered since export"):
        OnnxModel(untrained, "flag edited")
    # a plain ONNX file (no duse metadata) is not a duse-export
    proto = onnx.load_from_string(data)
    del proto.metadata_props[:]
    with pytest.raises(OnnxExportError, match="not a duse_ros ONNX export"):
        OnnxModel(proto.SerializeToString(), "plain")
    path = tmp_path / "altered.onnx"
    path.write_bytes(flipped)
    with pytest.raises(OnnxExportError, match=f"{path}: altered since export"):
        load_onnx_model(path)


def test_a_graph_with_another_models_metadata_is_refused():
    """Sealed correctly, but the metadata says fer2013 (64px, 7 classes) over tiny-random-video's graph."""
    _, fer = exported("fer2013-minixception")
    _, tiny = exported("tiny-random-video")
    graph = onnx.load_from_string(tiny)
    del graph.metadata_props[:]
    for entry in onnx.load_from_string(fer).metadata_props:
        if entry.key != DIGEST_KEY:
            graph.metadata_props.add(key=entry.key, value=entry.value)
    with pytest.raises(OnnxExportError, match="does not match duse.input_spec"):
        OnnxModel(seal(graph), "mismatched")


def test_a_missing_onnxruntime_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"runtime 'onnxruntime' needs the onnxruntime package: pip install"):
        import_onnxruntime()
    with pytest.raises(ImportError, match="onnxruntime"):
        load_onnx_model("tiny-random-video")


def test_providers_follow_the_device_parameter():
    cpu_only = ["CPUExecutionProvider"]
    jetson = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers("cpu", jetson) == cpu_only
    assert choose_providers("auto", cpu_only) == cpu_only
    assert choose_providers("auto", jetson) == jetson
    assert choose_providers("cuda:1", jetson) == [
        ("TensorrtExecutionProvider", {"device_id": 1}),
        ("CUDAExecutionProvider", {"device_id": 1}),
        "CPUExecutionProvider",
    ]
    with pytest.raises(ValueError, match="install onnxruntime-gpu"):
        choose_providers("cuda", cpu_only)
    with pytest.raises(ValueError, match="invalid device"):
        choose_providers("tpu", jetson)


def test_the_engine_batches_faces_through_the_onnx_model():
    model, data = exported("tiny-random-video")
    runtime = OnnxModel(data, "tiny")
    results, done = [], threading.Event()

    def on_result(result):
        results.append(result)
        if len(results) == 3:
            done.set()

    g = torch.Generator().manual_seed(3)
    clips = [torch.randn(n, 16, 3, 112, 112, generator=g) for n in (2, 1, 3)]  # windows of 2, 1, 3 faces
    engine = InferenceEngine(runtime, device="cpu", queue_depth=4, max_batch=8, on_result=on_result)
    engine.start()
    try:
        for key, clip in enumerate(clips):
            assert engine.submit(Job(key=key, video=clip, audio=None))
        assert done.wait(60), "no results from the ONNX model"
    finally:
        engine.stop()
    assert [r.job.key for r in results] == [0, 1, 2] and all(r.error is None for r in results)
    with torch.inference_mode():
        for r, clip in zip(results, clips):
            assert np.allclose(r.probabilities, torch.softmax(model(video=clip), -1).numpy(), atol=1e-5)


class _SlowModel(AffectModel):
    """100 matmuls in a row: an ONNX run long enough (0.1 s or more) to be stopped in the middle."""

    def __init__(self):
        super().__init__()
        self.model_id, self.class_names = "slow", ["a", "b"]
        self.input_spec = InputSpec(num_frames=2, image_size=8)
        self.weight = torch.nn.Parameter(torch.eye(384) + 1e-3 * torch.randn(384, 384))

    def forward(self, video=None, audio=None):
        x = video.flatten(1)[:, :1, None] + torch.arange(384.0)  # (B, 1, 384)
        x = x.expand(-1, 128, -1)  # (B, 128, 384): 19 MMAC per matmul, 100 of them
        for _ in range(100):
            x = torch.tanh(x @ self.weight)
        return x[:, 0, :2]


def test_interrupt_ends_a_run_inside_onnx_runtime():
    runtime = OnnxModel(export_onnx(_SlowModel()), "slow", threads=1)
    video = torch.zeros(1, 2, 3, 8, 8)
    outcome = []

    def run():
        try:
            outcome.append(runtime(video=video))
        except ForwardCancelled as e:
            outcome.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 30
    while runtime._active is None and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.001)
    runtime.interrupt()
    thread.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], ForwardCancelled), outcome
    with pytest.raises(ForwardCancelled):  # refused until resumed
        runtime(video=video)
    runtime.resume()
    assert runtime(video=video).shape == (1, 2)


def test_duse_export_cli_writes_checks_and_refuses(tmp_path, capsys):
    out = tmp_path / "tiny.onnx"
    assert export_tool.main(["tiny-random-av", "-o", str(out)]) == 0
    assert "max |logit difference|" in capsys.readouterr().out
    assert export_tool.main(["tiny-random-av", "-o", str(out)]) == 2  # exists, no --force
    assert "--force" in capsys.readouterr().err
    assert export_tool.main(["--check", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["model_id"] == "tiny-random-av"
    out.write_bytes(out.read_bytes().replace(b"tiny-random-av", b"tiny-random-xx"))
    assert export_tool.main(["--check", str(out)]) == 2
    assert "altered since export" in capsys.readouterr().err
    assert export_tool.main(["no-such-model"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_int8_export_is_marked_and_close():
    model, _ = exported("tiny-random-video")
    runtime = OnnxModel(export_onnx(model, quantize=True), "int8")
    assert runtime.config()["quantization"] == "int8-dynamic"
    inputs = example_inputs(model, batch=2, seed=2)
    with torch.inference_mode():
        assert torch.allclose(runtime(**inputs), model(**inputs), atol=0.1)

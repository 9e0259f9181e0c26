"""affect_node with runtime onnxruntime, across processes over Fast DDS: a duse-export file runs
audio-visual windows through the engine and diagnostics name the runtime and provider; an
altered file fails configure with the reason."""

from __future__ import annotations

import pytest
import rclpy
from ros_harness import NodeProcess, Peer, stamps

from duse_ros.msg import EmotionState

pytest.importorskip("onnxruntime")

from duse_ros.loading import load_model  # noqa: E402
from duse_ros.onnx_export import export_onnx  # noqa: E402

NODE = "duse_ros.nodes.affect_node"
BASE = {
    "runtime": "onnxruntime",
    "face_mode": "full_frame",
    "diagnostics_period_s": 0.2,
    "queue_depth": 8,
    "qos.reliability": "reliable",
    "qos.depth": 400,
}


@pytest.fixture
def start_node():
    rclpy.init()
    procs: list[NodeProcess] = []

    def start(**params) -> NodeProcess:
        proc = NodeProcess(NODE, {**BASE, **params})
        procs.append(proc)
        return proc

    yield start
    try:
        for proc in procs:
            assert proc.stop() == 0, f"node did not exit cleanly:\n{proc.output()[-2000:]}"
    finally:
        rclpy.shutdown()


@pytest.fixture(scope="module")
def av_export(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "tiny_av.onnx"
    path.write_bytes(export_onnx(load_model("tiny-random-av")))
    return path


def test_an_exported_model_runs_in_the_node(start_node, av_export):
    node = start_node(model=str(av_export))
    peer = Peer("reliable")
    peer.wait_matched(node, audio=True)
    peer.play(stamps(10.0, 100), audio_rate=16000)
    peer.spin_until(lambda: len(peer.states) >= 2, 30, "two audio-visual states from ONNX Runtime", node)
    for state in peer.states:
        assert state.modality == EmotionState.MODALITY_AUDIO_VISUAL
        assert state.model_id == "tiny-random-av" and state.untrained and state.checkpoint == str(av_export)
        assert len(state.probabilities) == 11 and abs(sum(state.probabilities) - 1.0) < 1e-4
    peer.spin_until(lambda: int(peer.latest_diagnostics().get("inference.completed", 0)) >= 2, 10, "diagnostics", node)
    values = peer.latest_diagnostics()
    assert values["inference.runtime"] == "onnxruntime"
    assert values["inference.provider"] == "CPUExecutionProvider"
    assert int(values["inference.errors"]) == 0


def test_an_altered_export_fails_configure_with_the_reason(start_node, av_export, tmp_path):
    altered = tmp_path / "altered.onnx"
    altered.write_bytes(av_export.read_bytes().replace(b"tiny-random-av", b"tiny-random-xx", 1))
    node = start_node(model=str(altered))
    peer = Peer("reliable")

    def failures() -> int:  # the first comes from configure, the next from the timer after it
        return sum(
            "configure failed" in status.message and "altered since export" in status.message
            for arr in peer.diagnostics
            for status in arr.status
        )

    peer.spin_until(lambda: failures() >= 2, 30, "the configure error on /diagnostics", node)
    assert f"{altered}: altered since export" in node.output()
    assert node.alive(), "a refused model leaves the node up (unconfigured), not crashed"


def test_eval_bag_passes_the_runtime_to_the_node(av_export, tmp_path):
    """duse-eval-bag --runtime onnxruntime: the node runs the .onnx file (runtime torch refuses a
    .onnx model), and every window of the bag comes back."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from bag_fixtures import write_video

    from duse_ros.io.rosbag import BagFile
    from duse_ros.tools.make_bag import main as make_bag

    video = tmp_path / "talk.mov"
    write_video(video, seconds=4.0, fps=15)
    assert make_bag([str(video), "-o", str(tmp_path / "bag"), "-q"]) == 0
    out = tmp_path / "eval"
    args = ["--model", av_export, "--runtime", "onnxruntime", "--face-mode", "full_frame", "--no-bridge"]
    done = subprocess.run(
        [sys.executable, "-m", "duse_ros.tools.eval_bag", tmp_path / "bag", *args, "--out", out, "-q"],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:] + (out / "affect_node.log").read_text()[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["windows"] == report["windows_received"] >= 4 and report["dropped"] == 0
    with BagFile(out / "output_bag") as bag:
        states = [bag.deserialize(raw, ty) for _, ty, _, raw in bag.messages(["/duse_eval/emotion_state"])]
    assert states and all(s.checkpoint == str(av_export) and s.model_id == "tiny-random-av" for s in states)

"""A checkpoint exported by training/train.py drives affect_node in another process, and the node
warns when its span_s differs from the span the model was trained on."""

import logging

import pytest
import rclpy
from ros_harness import NodeProcess, Peer, stamps

from duse_ros.checkpoint import read_config
from training import train
from training.synthetic import make_motion_dataset

logging.getLogger().setLevel(logging.ERROR)


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.shutdown()


def test_trained_checkpoint_drives_the_affect_node(ros, tmp_path):
    data = make_motion_dataset(tmp_path / "motion", clips_per_class=3, size=32, folds=3)
    summary = train.main(
        [
            "--config",
            "training/configs/smoke_motion.yaml",
            "--data",
            str(data),
            "--out-dir",
            str(tmp_path / "run"),
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--span-s",
            "1.5",
            "--set",
            "data.folds=3",
            "--val-fraction",
            "0.5",
            "--progress",
            "false",
            "--tensorboard",
            "false",
        ]
    )
    checkpoint = summary["checkpoint"]
    assert read_config(checkpoint)["span_s"] == 1.5

    node = NodeProcess(
        "duse_ros.nodes.affect_node",
        {
            "model": checkpoint,
            "face_mode": "full_frame",
            "span_s": 2.0,
            "qos.reliability": "reliable",
            "qos.depth": 400,
            "queue_depth": 8,
            "diagnostics_period_s": 0.2,
        },
    )
    try:
        peer = Peer("reliable")
        peer.wait_matched(node)
        played = stamps(5.0, 75)
        peer.play(played)
        peer.spin_until(lambda: len(peer.states) >= 1, 60, "an EmotionState from the trained checkpoint", node)
        state = peer.states[0]
        assert state.checkpoint == checkpoint and state.model_id.startswith("duse-tiny")
        assert list(state.class_names) == summary["class_names"] and len(state.probabilities) == 7
        assert "span_s mismatch" in node.output() and "over 1.5 s" in node.output()
    finally:
        assert node.stop() == 0, node.output()[-2000:]

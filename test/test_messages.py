"""The generated messages cross a process boundary over real Fast DDS with every field intact."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
import rclpy
from msg_samples import samples
from rclpy.qos import QoSProfile, ReliabilityPolicy

from duse_ros.msg import AudioChunk, EmotionState


def test_constants_are_generated():
    assert (
        EmotionState.MODALITY_NONE,
        EmotionState.MODALITY_VIDEO,
        EmotionState.MODALITY_AUDIO,
        EmotionState.MODALITY_AUDIO_VISUAL,
    ) == (0, 1, 2, 3)
    assert EmotionState.LABEL_NO_FACE == "no_face"
    assert AudioChunk.FORMAT_F32LE == "F32LE"


@pytest.fixture
def publisher_process():
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("publish_samples.py"))])
    yield proc
    proc.terminate()
    proc.wait(timeout=10)


def test_every_message_type_survives_dds_between_processes(publisher_process):
    expected = samples()
    received: dict = {}
    rclpy.init()
    try:
        node = rclpy.create_node("duse_sample_listener")
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for topic, msg in expected.items():
            node.create_subscription(type(msg), topic, lambda m, t=topic: received.setdefault(t, m), qos)
        deadline = time.monotonic() + 25.0
        while len(received) < len(expected) and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.2)
            assert publisher_process.poll() is None, "publisher process died"
    finally:
        rclpy.shutdown()
    assert set(received) == set(expected), f"missing topics: {set(expected) - set(received)}"
    for topic, msg in expected.items():
        got = received[topic]
        for field in msg.get_fields_and_field_types():
            assert getattr(got, field) == getattr(msg, field), f"{topic}.{field} changed in transit"

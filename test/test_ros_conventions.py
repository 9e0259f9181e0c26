"""What a ROS 2 user expects of affect_node, through rclpy across processes: a failed configure is an
ERROR on /diagnostics with the reason, the compressed subscription follows image_transport's
`<base>/compressed` of the remapped base topic, and /diagnostics names the camera as hardware."""

from __future__ import annotations

import numpy as np
import pytest
import rclpy
from ros_harness import NS, NodeProcess, Peer, frame_msg, qos, stamps
from sensor_msgs.msg import CompressedImage

from duse_ros.affect import diagnostics as diag

NODE = "duse_ros.nodes.affect_node"
BASE = {
    "face_mode": "full_frame",
    "diagnostics_period_s": 0.2,
    "queue_depth": 8,
    "qos.reliability": "reliable",
    "qos.depth": 400,
    "model": "tiny-random-video",
}


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.shutdown()


def _affect_statuses(peer: Peer):
    return [s for arr in peer.diagnostics for s in arr.status if diag.is_affect_status(s.name)]


def test_a_failed_configure_is_an_error_on_diagnostics_with_the_reason(ros):
    node = NodeProcess(NODE, {**BASE, "model": "no-such-model"})
    try:
        peer = Peer("reliable")
        peer.spin_until(
            lambda: any(s.level == s.ERROR for s in _affect_statuses(peer)), 30, "an ERROR diagnostics status", node
        )
        error = next(s for s in _affect_statuses(peer) if s.level == s.ERROR)
        assert (
            error.message.startswith("configure failed: UnknownModelError: unknown model")
            and "no-such-model" in error.message
        )
        assert error.hardware_id == "/affect_node"
        assert {kv.key: kv.value for kv in error.values}["model"] == "no-such-model"
        assert node.alive()
    finally:
        assert node.stop() == 0, node.output()[-2000:]


def _jpeg(stamp_ns: int):
    import cv2

    raw = frame_msg(stamp_ns, value=120, width=64, height=48)
    ok, data = cv2.imencode(".jpg", np.frombuffer(bytes(raw.data), np.uint8).reshape(48, 64, 3))
    assert ok
    msg = CompressedImage(format="jpeg", data=data.tobytes())
    msg.header = raw.header
    return msg


def test_compressed_input_follows_the_remapped_base_topic_and_diagnostics_name_the_camera(ros):
    node = NodeProcess(
        NODE, {**BASE, "image_compressed": True}, extra_args=["-r", "image_raw:=/camera/color/image_raw"]
    )
    try:
        peer = Peer("reliable")
        pub = peer.node.create_publisher(CompressedImage, "/camera/color/image_raw/compressed", qos("reliable"))
        peer.spin_until(lambda: pub.get_subscription_count() > 0, 30, "a subscription on <base>/compressed", node)
        assert peer.node.count_subscribers("/image_raw/compressed") == 0
        peer.spin_until(
            lambda: (
                int(peer.latest_diagnostics().get(diag.input_publishers_key("/camera/color/image_raw/compressed"), 0))
                >= 1
            ),
            30,
            "the node to match us",
            node,
        )
        for stamp in stamps(3.0, 75):
            pub.publish(_jpeg(stamp))
            rclpy.spin_once(peer.node, timeout_sec=0.0)
        peer.spin_until(lambda: len(peer.states) >= 1, 60, "an EmotionState from compressed frames", node)
        peer.spin_until(
            lambda: any(s.hardware_id == "camera" for s in _affect_statuses(peer)),
            10,
            "diagnostics naming the camera frame",
            node,
        )
        status = next(s for s in reversed(_affect_statuses(peer)) if s.hardware_id == "camera")
        values = {kv.key: kv.value for kv in status.values}
        assert values["model"] == "tiny-random-video"
        # this process's EmotionState subscription is a matched reader of the node's output
        assert int(values[diag.output_subscribers_key("/emotion_state")]) >= 1
        assert peer.states[0].header.frame_id == "camera"
        assert peer.states[0].window_end.sec * NS + peer.states[0].window_end.nanosec >= 3 * NS
    finally:
        assert node.stop() == 0, node.output()[-2000:]

"""Three people in the picture, through affect_node in another process over real Fast DDS: the
trained default model, real (MTCNN) detection of the bundled portrait pasted three times. Every
window brings one EmotionState per face, with distinct ids that stay with the faces and boxes
where the faces are."""

from __future__ import annotations

import cv2
import numpy as np
import rclpy
from ros_harness import NS, NodeProcess, Peer, image_msg, stamps
from sensor_msgs.msg import Image

from duse_ros.io.samples import load_sample_face
from duse_ros.nodes.common import stamp_to_ns

# The top 300 rows of the 512x512 portrait, scaled to 320 wide, at three places. The face sits at
# x 174-272, y 64-162 of the photo: x 109-170, y 40-101 of a tile.
TILES = [(0, 0), (320, 0), (160, 240)]
FACE_CENTRES = [(x + 139, y + 70) for x, y in TILES]


def _canvas(dx: int) -> np.ndarray:
    tile = cv2.resize(load_sample_face()[:300], (320, 187))
    canvas = np.full((480, 640, 3), 90, np.uint8)
    for x, y in TILES:
        canvas[y : y + 187, x + dx : x + dx + 320 - 4] = tile[:, :316]
    return cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)


CANVASES = [_canvas(dx) for dx in range(4)]  # the faces drift by up to 3 px


def _frame(stamp_ns: int) -> Image:
    return image_msg(stamp_ns, CANVASES[(stamp_ns // (NS // 30)) % 4])


def test_three_faces_three_readings_per_window_with_stable_ids():
    rclpy.init()
    node = NodeProcess(
        "duse_ros.nodes.affect_node",
        {
            "max_faces": 3,
            "face_detect_hz": 5.0,
            "smoothing_window": 3,
            "diagnostics_period_s": 0.2,
            "queue_depth": 8,
            "qos.reliability": "reliable",
            "qos.depth": 400,
        },
    )  # the default (trained) model
    try:
        peer = Peer("reliable")
        peer.wait_matched(node, timeout=60)
        # At the camera's pace: the detector's keyframes (5 Hz of stream time) must span each window.
        peer.play(stamps(20.0, 120), make_frame=_frame, realtime=True)  # windows end at frames 56, 71, 86, 101, 116

        def windows():
            by_end: dict[int, list] = {}
            for s in peer.states:
                by_end.setdefault(stamp_to_ns(s.window_end), []).append(s)
            return by_end

        peer.spin_until(
            lambda: sum(len(v) == 3 for v in windows().values()) >= 3, 120, "three windows with three faces each", node
        )
        assert "ROS4HRI outputs off" in node.output()  # no hri_msgs here: one line says so
        face_of_id: dict[str, int] = {}
        for _end, states in windows().items():
            assert len(states) <= 3
            if len(states) < 3:
                continue
            assert len({s.face_id for s in states}) == 3 and all(s.face_id for s in states)
            for s in states:
                assert (s.image_width, s.image_height) == (640, 480) and s.face_found
                assert s.header.stamp == s.window_end
                roi = s.face_roi
                centre = (roi.x_offset + roi.width / 2, roi.y_offset + roi.height / 2)
                nearest = min(
                    range(3), key=lambda i: np.hypot(centre[0] - FACE_CENTRES[i][0], centre[1] - FACE_CENTRES[i][1])
                )
                assert np.hypot(centre[0] - FACE_CENTRES[nearest][0], centre[1] - FACE_CENTRES[nearest][1]) < 15, (
                    s.face_id,
                    roi,
                )
                assert 45 <= roi.width <= 80
                # The same face keeps its id, and no id moves to another face.
                assert face_of_id.setdefault(s.face_id, nearest) == nearest
                assert s.model_id == "fer2013-minixception" and s.label == "happiness", (s.label, list(s.probabilities))
            assert sorted(face_of_id[s.face_id] for s in states) == [0, 1, 2]
        peer.spin_until(
            lambda: peer.latest_diagnostics().get("face.tracks") == "3", 20, "diagnostics counting three tracks", node
        )
        diag = peer.latest_diagnostics()
        assert diag["face.track_births"] == "3" and diag["face.track_deaths"] == "0"
    finally:
        code = node.stop()
        rclpy.shutdown()
    assert code == 0, node.output()[-2000:]

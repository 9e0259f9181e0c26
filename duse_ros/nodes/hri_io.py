"""affect_node's ROS4HRI (REP-155) side: hri_msgs out, and faces from an hri_face_detect-style node in.

hri_msgs is optional (released for Jazzy as ros-jazzy-hri-msgs; not on PyPI). Field layouts used
(hri_msgs 2.x): Expression {std_msgs/Header header, string expression, float32 valence, float32
arousal, float32 confidence}; IdsList {std_msgs/Header header, string[] ids};
NormalizedRegionOfInterest2D {std_msgs/Header header, float32 xmin, ymin, xmax, ymax, c}. The
mapping of duse_ros classes to the expression vocabulary and to valence/arousal is duse_ros/affect/hri.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from sensor_msgs.msg import Image

from duse_ros.affect.hri import FACES_TRACKED, ExternalFaces, expression_of, face_topic
from duse_ros.affect.pipeline import Reading
from duse_ros.io.conversions import ConversionError
from duse_ros.io.images import to_rgb
from duse_ros.nodes.common import ns_to_stamp, sensor_qos, stamp_to_ns

HRI_PACKAGE_HINT = "the hri_msgs package (ros-$ROS_DISTRO-hri-msgs) is not installed"


def import_hri_msgs():
    """The hri_msgs.msg module, or None when hri_msgs is not installed."""
    try:
        import hri_msgs.msg
    except ImportError:
        return None
    return hri_msgs.msg


def fill_expression(msg, reading: Reading, frame_id: str):
    """An hri_msgs/Expression from one face's reading: the smoothed distribution when the node
    smooths (what the person shows over the last readings), else the window's own."""
    smoothed = reading.smoothing_count > 0 and reading.smoothed_probabilities.size
    probs = reading.smoothed_probabilities if smoothed else reading.probabilities
    msg.header.stamp = ns_to_stamp(reading.window_end_ns)
    msg.header.frame_id = frame_id
    msg.expression, msg.confidence, msg.valence, msg.arousal = expression_of(reading.class_names, probs)
    return msg


def fill_ids(msg, stamp_ns: int, frame_id: str, face_ids: list[str]):
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.header.frame_id = frame_id
    msg.ids = list(face_ids)
    return msg


class HriOutput:
    """/humans/faces/<id>/expression for each face read, and (own faces only: with face_source
    ros4hri the face detector owns it) /humans/faces/tracked. Publishers are made on a face's first
    reading, on the thread that publishes it, and dropped when the face is no longer tracked."""

    def __init__(self, node, messages, publish_tracked: bool, qos_depth: int = 10):
        self._node, self._msgs = node, messages
        self._depth = qos_depth
        self._lock = threading.Lock()
        self._expression: dict[str, object] = {}
        self._tracked_pub = (
            node.create_publisher(messages.IdsList, FACES_TRACKED, qos_depth) if publish_tracked else None
        )
        self.published = 0

    def on_reading(self, reading: Reading, frame_id: str) -> None:
        if not reading.face_id:
            return
        with self._lock:
            pub = self._expression.get(reading.face_id)
            if pub is None:
                pub = self._expression[reading.face_id] = self._node.create_publisher(
                    self._msgs.Expression, face_topic(reading.face_id, "expression"), self._depth
                )
        pub.publish(fill_expression(self._msgs.Expression(), reading, frame_id))
        self.published += 1

    def on_faces(self, stamp_ns: int, face_ids: list[str], frame_id: str) -> None:
        """The faces tracked now (after a keyframe): /humans/faces/tracked, and ended faces' publishers go."""
        if self._tracked_pub is not None:
            self._tracked_pub.publish(fill_ids(self._msgs.IdsList(), stamp_ns, frame_id, face_ids))
        self.forget_except(face_ids)

    def forget_except(self, face_ids: list[str]) -> None:
        with self._lock:
            gone = [f for f in self._expression if f not in face_ids]
            pubs = [self._expression.pop(f) for f in gone]
        for pub in pubs:
            self._node.destroy_publisher(pub)

    def close(self) -> None:
        self.forget_except([])
        if self._tracked_pub is not None:
            self._node.destroy_publisher(self._tracked_pub)
            self._tracked_pub = None


class HriFaceInput:
    """face_source ros4hri: /humans/faces/tracked says which faces exist; each one's
    /humans/faces/<id>/aligned crops (and /roi boxes, when published) go to `faces`. Subscriptions
    follow the tracked list. `on_bad(kind, error)` counts a malformed message."""

    def __init__(
        self,
        node,
        messages,
        faces: ExternalFaces,
        on_bad: Callable[[str, Exception], None],
        reliability: str = "best_effort",
        depth: int = 5,
    ):
        self._node, self._msgs, self.faces, self._on_bad = node, messages, faces, on_bad
        self._qos = sensor_qos(reliability, depth)
        self._subs: dict[str, list] = {}
        self._tracked_sub = node.create_subscription(messages.IdsList, FACES_TRACKED, self.on_tracked, self._qos)

    def on_tracked(self, msg) -> None:
        ids = [str(i) for i in msg.ids]
        self.faces.set_tracked(ids)
        for gone in [f for f in self._subs if f not in ids]:
            for sub in self._subs.pop(gone):
                self._node.destroy_subscription(sub)
        for face_id in ids:
            if face_id not in self._subs:
                subs = [
                    self._node.create_subscription(
                        Image, face_topic(face_id, "aligned"), lambda m, f=face_id: self.on_aligned(f, m), self._qos
                    )
                ]
                roi_type = getattr(self._msgs, "NormalizedRegionOfInterest2D", None)
                if roi_type is not None:
                    subs.append(
                        self._node.create_subscription(
                            roi_type, face_topic(face_id, "roi"), lambda m, f=face_id: self.on_roi(f, m), self._qos
                        )
                    )
                self._subs[face_id] = subs

    def on_aligned(self, face_id: str, msg) -> None:
        try:
            rgb = to_rgb(msg)
        except ConversionError as e:
            self._on_bad("aligned_face", e)
            return
        self.faces.add_crop(face_id, stamp_to_ns(msg.header.stamp), rgb)

    def on_roi(self, face_id: str, msg) -> None:
        self.faces.add_roi(face_id, stamp_to_ns(msg.header.stamp), msg.xmin, msg.ymin, msg.xmax, msg.ymax)

    def close(self) -> None:
        for subs in self._subs.values():
            for sub in subs:
                self._node.destroy_subscription(sub)
        self._subs.clear()
        self._node.destroy_subscription(self._tracked_sub)

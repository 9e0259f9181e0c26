"""ROS4HRI (REP-155) adapters: affect_node's hri_msgs out and faces from an hri_face_detect-style
node in; llm_bridge_node's hri_msgs/Expression in (any ROS4HRI expression provider).

hri_msgs is optional (released for Jazzy as ros-jazzy-hri-msgs; not on PyPI). Field layouts used
(hri_msgs 2.x): Expression {std_msgs/Header header, string expression, float32 valence, float32
arousal, float32 confidence}; IdsList {std_msgs/Header header, string[] ids};
NormalizedRegionOfInterest2D {std_msgs/Header header, float32 xmin, ymin, xmax, ymax, c};
FacialLandmarks {std_msgs/Header header, NormalizedPointOfInterest2D[70] landmarks, uint32 height,
width} with NormalizedPointOfInterest2D {float32 x, y, c}. The
mapping of duse_ros classes to the expression vocabulary and to valence/arousal is duse_ros/affect/hri.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sensor_msgs.msg import Image

from duse_ros.affect.boxes import crop, square_crop_box
from duse_ros.affect.hri import (
    ALIGNED_SIZE,
    FACES_TRACKED,
    ExternalFaces,
    FaceObservation,
    Keyframe,
    class_of_expression,
    expression_of,
    face_topic,
    facial_landmarks,
    normalized_roi,
)
from duse_ros.affect.pipeline import Reading
from duse_ros.bridge.people import Sighting, face_score
from duse_ros.bridge.stabiliser import EmotionSample
from duse_ros.io.conversions import ConversionError
from duse_ros.io.images import IMAGE, IMAGE_MESSAGES
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


def rgb_image(rgb: np.ndarray, stamp_ns: int, frame_id: str) -> Image:
    """A sensor_msgs/Image (rgb8) of an RGB uint8 array."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    msg = Image()
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding, msg.is_bigendian, msg.step = "rgb8", 0, int(rgb.shape[1]) * 3
    msg.data = rgb.tobytes()
    return msg


def fill_roi(msg, face: FaceObservation, keyframe: Keyframe, frame_id: str):
    msg.header.stamp = ns_to_stamp(keyframe.stamp_ns)
    msg.header.frame_id = frame_id
    msg.xmin, msg.ymin, msg.xmax, msg.ymax = normalized_roi(face.box, *keyframe.size)
    msg.c = float(face.score)
    return msg


def fill_landmarks(msg, point_type, face: FaceObservation, keyframe: Keyframe, frame_id: str):
    msg.header.stamp = ns_to_stamp(keyframe.stamp_ns)
    msg.header.frame_id = frame_id
    width, height = keyframe.size
    msg.width, msg.height = width, height
    msg.landmarks = [
        point_type(x=x, y=y, c=c) for x, y, c in facial_landmarks(face.landmarks, face.score, width, height)
    ]
    return msg


class HriOutput:
    """REP-155 outputs of the faces the node reads: /humans/faces/<id>/expression for each
    reading; after each keyframe of its own detection, /humans/faces/<id>/roi
    (NormalizedRegionOfInterest2D, c = the detector's score), cropped and aligned
    (sensor_msgs/Image: the face box, and the face turned upright by its eyes at ALIGNED_SIZE
    square; made only while someone subscribes), landmarks (FacialLandmarks: our five points,
    the other 65 with c = 0), all stamped with the keyframe's source stamp, and (with
    face_source ros4hri the face detector owns it) /humans/faces/tracked. Publishers are made on
    a face's first message, on the thread that publishes it, and dropped when the face is no
    longer tracked."""

    def __init__(self, node, messages, publish_tracked: bool, qos_depth: int = 10, margin: float = 0.25):
        self._node, self._msgs = node, messages
        self._depth = qos_depth
        self._margin = float(margin)
        self._lock = threading.Lock()
        self._pubs: dict[str, dict[str, object]] = {}  # face id -> topic leaf -> publisher
        self._tracked_pub = (
            node.create_publisher(messages.IdsList, FACES_TRACKED, qos_depth) if publish_tracked else None
        )
        self._landmarks_type = getattr(messages, "FacialLandmarks", None)
        self._point_type = getattr(messages, "NormalizedPointOfInterest2D", None)
        self.published = 0

    def _publisher(self, face_id: str, leaf: str, msg_type):
        with self._lock:
            per_face = self._pubs.setdefault(face_id, {})
            pub = per_face.get(leaf)
            if pub is None:
                pub = per_face[leaf] = self._node.create_publisher(msg_type, face_topic(face_id, leaf), self._depth)
        return pub

    def on_reading(self, reading: Reading, frame_id: str) -> None:
        if not reading.face_id:
            return
        pub = self._publisher(reading.face_id, "expression", self._msgs.Expression)
        pub.publish(fill_expression(self._msgs.Expression(), reading, frame_id))
        self.published += 1

    def on_faces(self, keyframe: Keyframe, frame_id: str) -> None:
        """After a keyframe: each face's roi, cropped, aligned and landmarks; /humans/faces/tracked;
        ended faces' publishers go."""
        for face in keyframe.faces:
            self._publisher(face.face_id, "roi", self._msgs.NormalizedRegionOfInterest2D).publish(
                fill_roi(self._msgs.NormalizedRegionOfInterest2D(), face, keyframe, frame_id)
            )
            if self._landmarks_type is not None and self._point_type is not None:
                self._publisher(face.face_id, "landmarks", self._landmarks_type).publish(
                    fill_landmarks(self._landmarks_type(), self._point_type, face, keyframe, frame_id)
                )
            cropped = self._publisher(face.face_id, "cropped", Image)
            if cropped.get_subscription_count() > 0:
                cropped.publish(rgb_image(crop(keyframe.frame, face.box), keyframe.stamp_ns, frame_id))
            aligned = self._publisher(face.face_id, "aligned", Image)
            if aligned.get_subscription_count() > 0:
                square = square_crop_box(face.box, keyframe.frame.shape, self._margin)
                upright = crop(keyframe.frame, (*square, face.roll_deg or 0.0), ALIGNED_SIZE)
                aligned.publish(rgb_image(upright, keyframe.stamp_ns, frame_id))
        if self._tracked_pub is not None:
            self._tracked_pub.publish(fill_ids(self._msgs.IdsList(), keyframe.stamp_ns, frame_id, keyframe.tracked))
        self.forget_except(keyframe.tracked)

    def forget_except(self, face_ids: list[str]) -> None:
        with self._lock:
            gone = [f for f in self._pubs if f not in face_ids]
            pubs = [p for f in gone for p in self._pubs.pop(f).values()]
        for pub in pubs:
            self._node.destroy_publisher(pub)

    def close(self) -> None:
        self.forget_except([])
        if self._tracked_pub is not None:
            self._node.destroy_publisher(self._tracked_pub)
            self._tracked_pub = None


def roi_subscriptions(node, msgs, face_id: str, on_roi, qos) -> list:
    """The face's `/roi` subscription (calling `on_roi(face_id, msg)`), or none where the installed
    hri_msgs has no NormalizedRegionOfInterest2D."""
    roi_type = getattr(msgs, "NormalizedRegionOfInterest2D", None)
    if roi_type is None:
        return []
    return [node.create_subscription(roi_type, face_topic(face_id, "roi"), lambda m: on_roi(face_id, m), qos)]


class TrackedFaceSubscriptions:
    """Per-face subscriptions that follow /humans/faces/tracked: a face's (`_subscribe`, plus its
    /roi when published) are made when it appears and dropped when it leaves the list (REP-155: the
    id then means nothing more). Subclasses read the list in `on_tracked` and call `_follow`."""

    def __init__(self, node, messages, qos):
        self._node, self._msgs, self._qos = node, messages, qos
        self._subs: dict[str, list] = {}
        self._tracked_sub = node.create_subscription(messages.IdsList, FACES_TRACKED, self.on_tracked, qos)

    def _follow(self, ids: list[str]) -> None:
        for gone in [f for f in self._subs if f not in ids]:
            for sub in self._subs.pop(gone):
                self._node.destroy_subscription(sub)
            self._forget(gone)
        for face_id in ids:
            if face_id not in self._subs:
                self._subs[face_id] = self._subscribe(face_id) + roi_subscriptions(
                    self._node, self._msgs, face_id, self.on_roi, self._qos
                )

    def _forget(self, face_id: str) -> None:
        """What a subclass keeps about a face that left the tracked list."""

    def close(self) -> None:
        for subs in self._subs.values():
            for sub in subs:
                self._node.destroy_subscription(sub)
        self._subs.clear()
        self._node.destroy_subscription(self._tracked_sub)


class HriFaceInput(TrackedFaceSubscriptions):
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
        self.faces, self._on_bad = faces, on_bad
        super().__init__(node, messages, sensor_qos(reliability, depth))

    def on_tracked(self, msg) -> None:
        ids = [str(i) for i in msg.ids]
        self.faces.set_tracked(ids)
        self._follow(ids)

    def _subscribe(self, face_id: str) -> list:
        return [
            self._node.create_subscription(
                Image, face_topic(face_id, "aligned"), lambda m: self.on_aligned(face_id, m), self._qos
            )
        ]

    def on_aligned(self, face_id: str, msg) -> None:
        try:
            rgb = IMAGE_MESSAGES[IMAGE].to_rgb(msg)
        except ConversionError as e:
            self._on_bad("aligned_face", e)
            return
        self.faces.add_crop(face_id, stamp_to_ns(msg.header.stamp), rgb)

    def on_roi(self, face_id: str, msg) -> None:
        self.faces.add_roi(face_id, stamp_to_ns(msg.header.stamp), msg.xmin, msg.ymin, msg.xmax, msg.ymax)


# ------------------------------------------------------------------ llm_bridge_node's ros4hri input
@dataclass(frozen=True)
class ExpressionReading:
    """One hri_msgs/Expression as the bridge reads it: the sample, whose face, and what was odd."""

    sample: EmotionSample
    sighting: Sighting
    unmapped: bool  # the expression names none of our classes: its own name is the label
    unstamped: bool  # header stamp 0: the arrival time stands in for it


def reading_from_expression(
    msg, face_id: str, roi: tuple[float, float, float, float] | None, rule: str, arrival_ns: int
) -> ExpressionReading:
    """ValueError when the message cannot be a reading (no expression, values out of range).

    The expression maps to our class through affect/hri.py's one table; a name with no class
    (bored, confused, ...) is kept as the label, so the prompt still says it. `roi`: the face's
    latest normalised box (xmin, ymin, xmax, ymax) for the person rule; None scores 0."""
    name = str(msg.expression).strip()
    if not name:
        raise ValueError("Expression without an expression name")
    ours = class_of_expression(name)
    stamp_ns = stamp_to_ns(msg.header.stamp)
    unstamped = stamp_ns == 0
    if unstamped:
        stamp_ns = arrival_ns
    sample = EmotionSample(
        stamp_ns=stamp_ns,
        label=ours or name.lower(),
        confidence=float(msg.confidence),
        has_reading=True,
        frame_id=msg.header.frame_id,
        valence=float(msg.valence),
        arousal=float(msg.arousal),
    )
    score = 0.0
    if roi is not None:
        xmin, ymin, xmax, ymax = roi
        score = face_score(rule or "largest", (xmin, ymin, xmax - xmin, ymax - ymin), (1.0, 1.0))
    return ExpressionReading(sample, Sighting(face_id, stamp_ns, score), ours is None, unstamped)


class HriExpressionInput(TrackedFaceSubscriptions):
    """llm_bridge_node with input ros4hri: follows /humans/faces/tracked and subscribes, per face,
    to /humans/faces/<id>/expression (and /roi, to score faces for the person rule). Each
    Expression goes to `on_expression(face_id, msg, roi)`; subscriptions of faces that left the
    tracked list are dropped (REP-155: the id means nothing more)."""

    def __init__(self, node, messages, on_expression: Callable, reliability: str = "reliable", depth: int = 10):
        self._on_expression = on_expression
        self._lock = threading.Lock()
        self._rois: dict[str, tuple[float, float, float, float]] = {}
        self.tracked: list[str] = []
        super().__init__(node, messages, sensor_qos(reliability, depth))

    def on_tracked(self, msg) -> None:
        ids = list(dict.fromkeys(str(i) for i in msg.ids))
        self.tracked = ids
        self._follow(ids)

    def _subscribe(self, face_id: str) -> list:
        return [
            self._node.create_subscription(
                self._msgs.Expression,
                face_topic(face_id, "expression"),
                lambda m: self.on_expression(face_id, m),
                self._qos,
            )
        ]

    def _forget(self, face_id: str) -> None:
        with self._lock:
            self._rois.pop(face_id, None)

    def on_roi(self, face_id: str, msg) -> None:
        with self._lock:
            self._rois[face_id] = (float(msg.xmin), float(msg.ymin), float(msg.xmax), float(msg.ymax))

    def on_expression(self, face_id: str, msg) -> None:
        with self._lock:
            roi = self._rois.get(face_id)
        self._on_expression(face_id, msg, roi)

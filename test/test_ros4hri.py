"""ROS4HRI (REP-155) with stand-in hri_msgs classes that have exactly the upstream fields (hri_msgs
2.x: Expression, IdsList, NormalizedRegionOfInterest2D, FacialLandmarks,
NormalizedPointOfInterest2D): expression mapping, valence/arousal, the per-face publishers (roi,
cropped, aligned, landmarks, expression) and the tracked list, faces and aligned crops taken from
another node, and what the node does without hri_msgs."""

from __future__ import annotations

import numpy as np
import pytest
import rclpy
from hri_fakes import HRI, Expression, FacialLandmarks, FakeNode, IdsList, NormalizedRegionOfInterest2D
from sensor_msgs.msg import Image

from duse_ros.affect.hri import EXPRESSIONS, ExternalFaces, FaceObservation, Keyframe, expression_of, unmapped
from duse_ros.affect.live_view import LiveView
from duse_ros.affect.pipeline import Reading
from duse_ros.affect.preprocess import FramePreprocessor
from duse_ros.affect.windowing import Window
from duse_ros.classes import CLASS_SETS
from duse_ros.models import build_model
from duse_ros.nodes.hri_io import HriFaceInput, HriOutput, import_hri_msgs
from duse_ros.timebase import NS

# hri_msgs/Expression's string constants (upstream msg/Expression.msg).
HRI_VOCABULARY = {
    "neutral",
    "angry",
    "sad",
    "happy",
    "surprised",
    "disgusted",
    "scared",
    "pleading",
    "vulnerable",
    "despaired",
    "guilty",
    "disappointed",
    "embarrassed",
    "horrified",
    "skeptical",
    "annoyed",
    "furious",
    "suspicious",
    "rejected",
    "bored",
    "tired",
    "asleep",
    "confused",
    "amazed",
    "excited",
}


def reading(face_id: str, probs, smoothed=None, end_ns: int = 5 * NS) -> Reading:
    names = list(CLASS_SETS["dfew"].classes)
    probs = np.asarray(probs, np.float32)
    smoothed = np.zeros(0, np.float32) if smoothed is None else np.asarray(smoothed, np.float32)
    return Reading(
        window_index=3,
        window_start_ns=end_ns - NS,
        window_end_ns=end_ns,
        modality=1,
        class_names=names,
        probabilities=probs,
        label=names[int(np.argmax(probs))],
        confidence=float(probs.max()),
        smoothed_probabilities=smoothed,
        smoothed_label="",
        smoothed_confidence=0.0,
        smoothing_count=int(smoothed.size > 0),
        face_found=True,
        frames_used=16,
        audio_samples_used=0,
        audio_rate=16000,
        latency_s=0.01,
        face_id=face_id,
        face_box=(10, 20, 30, 30),
        image_size=(640, 480),
    )


def one_hot(label: str, weight: float = 1.0):
    names = list(CLASS_SETS["dfew"].classes)
    p = np.full(len(names), (1 - weight) / (len(names) - 1))
    p[names.index(label)] = weight
    return p


# ------------------------------------------------------------------------ the mapping
def test_every_class_maps_into_the_hri_vocabulary():
    for class_set in CLASS_SETS.values():
        assert unmapped(class_set.classes) == []
    assert set(EXPRESSIONS.values()) <= HRI_VOCABULARY
    assert unmapped(["happiness", "boredom"]) == ["boredom"]


def test_valence_and_arousal_follow_the_class_distribution():
    names = list(CLASS_SETS["dfew"].classes)
    expression, confidence, valence, arousal = expression_of(names, one_hot("happiness", 0.94))
    assert expression == "happy" and confidence == pytest.approx(0.94)
    assert valence > 0.6 and arousal > 0.3
    _, _, valence, arousal = expression_of(names, one_hot("sadness"))
    assert valence < -0.5 and arousal < -0.2
    _, _, valence, arousal = expression_of(names, one_hot("anger"))
    assert valence < -0.5 and arousal > 0.5
    # Half happy, half sad: between the two, not at either end.
    half = (one_hot("happiness") + one_hot("sadness")) / 2
    assert expression_of(names, half)[2] == pytest.approx((0.8 - 0.7) / 2)
    with pytest.raises(ValueError, match="probabilities"):
        expression_of(names, [1.0])


# ------------------------------------------------------------------------ outputs
def test_each_face_gets_its_expression_topic_and_the_tracked_list_follows_the_faces():
    node = FakeNode()
    out = HriOutput(node, HRI, publish_tracked=True)
    out.on_reading(reading("f3", one_hot("happiness", 0.9)), "camera")
    out.on_reading(reading("f7", one_hot("neutral", 0.5), smoothed=one_hot("sadness", 0.6)), "camera")
    out.on_reading(reading("", one_hot("anger")), "camera")  # about no face: not a ROS4HRI face
    sent = node.publishers["/humans/faces/f3/expression"].sent
    assert len(sent) == 1 and isinstance(sent[0], Expression)
    msg = sent[0]
    assert (msg.expression, msg.header.frame_id) == ("happy", "camera")
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (5, 0) and msg.confidence == pytest.approx(0.9)
    smoothed = node.publishers["/humans/faces/f7/expression"].sent[0]
    assert smoothed.expression == "sad" and smoothed.confidence == pytest.approx(0.6), "the smoothed vote speaks"
    assert set(node.publishers) == {
        "/humans/faces/tracked",
        "/humans/faces/f3/expression",
        "/humans/faces/f7/expression",
    }
    out.on_faces(Keyframe(6 * NS, np.zeros((48, 64, 3), np.uint8), ["f7"]), "camera")
    ids = node.publishers["/humans/faces/tracked"].sent[-1]
    assert isinstance(ids, IdsList) and ids.ids == ["f7"] and ids.header.stamp.sec == 6
    assert "/humans/faces/f3/expression" in node.destroyed, "a face no longer tracked loses its topic"
    out.close()
    assert node.publishers == {}


def test_with_faces_from_ros4hri_the_tracked_list_is_left_to_the_detector():
    node = FakeNode()
    out = HriOutput(node, HRI, publish_tracked=False)
    out.on_faces(Keyframe(NS, np.zeros((48, 64, 3), np.uint8), ["abc"]), "camera")
    out.on_reading(reading("abc", one_hot("surprise")), "camera")
    assert set(node.publishers) == {"/humans/faces/abc/expression"}


def test_faces_read_on_a_keyframe_get_roi_cropped_aligned_and_landmarks_stamped_with_the_frame():
    """A face turned 30 degrees: roi normalised with the detector's score as c, cropped = the box,
    aligned = upright 128x128, landmarks: our five points at hri_msgs' indices, the other 65 absent
    (c = 0); all stamped with the keyframe's source stamp; images only while someone subscribes."""
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[100:200, 200:300] = 200
    marks = np.array([[230, 140], [270, 117], [250, 150], [238, 175], [272, 157]], np.float32)
    face = FaceObservation("f2", (200, 100, 100, 100), 0.97, marks, 30.0)
    stamp = 7 * NS + 250_000_000
    node = FakeNode()
    out = HriOutput(node, HRI, publish_tracked=True)
    out.on_faces(Keyframe(stamp, frame, ["f2"], [face]), "camera")
    topics = {t.rsplit("/", 1)[-1]: p.sent for t, p in node.publishers.items() if t.startswith("/humans/faces/f2/")}
    assert set(topics) == {"roi", "cropped", "aligned", "landmarks"}
    for sent in topics.values():
        assert len(sent) == 1 and (sent[0].header.stamp.sec, sent[0].header.stamp.nanosec) == (7, 250_000_000)
        assert sent[0].header.frame_id == "camera"
    roi = topics["roi"][0]
    assert isinstance(roi, NormalizedRegionOfInterest2D)
    assert (roi.xmin, roi.ymin, roi.xmax, roi.ymax) == pytest.approx((200 / 640, 100 / 480, 300 / 640, 200 / 480))
    assert roi.c == pytest.approx(0.97)
    cropped, aligned_img = topics["cropped"][0], topics["aligned"][0]
    assert (cropped.width, cropped.height, cropped.encoding) == (100, 100, "rgb8")
    assert np.frombuffer(bytes(cropped.data), np.uint8).min() == 200
    assert (aligned_img.width, aligned_img.height, aligned_img.step) == (128, 128, 384)
    landmarks = topics["landmarks"][0]
    assert isinstance(landmarks, FacialLandmarks) and (landmarks.width, landmarks.height) == (640, 480)
    assert len(landmarks.landmarks) == 70
    present = {i: p for i, p in enumerate(landmarks.landmarks) if p.c > 0}
    assert sorted(present) == [30, 48, 54, 68, 69]  # NOSE, MOUTH_OUTER_RIGHT/LEFT, RIGHT/LEFT_PUPIL
    assert (present[68].x, present[68].y) == pytest.approx((230 / 640, 140 / 480)) and present[68].c == pytest.approx(
        0.97
    )
    assert (present[69].x, present[69].y) == pytest.approx((270 / 640, 117 / 480))
    assert all((p.x, p.y, p.c) == (0.0, 0.0, 0.0) for i, p in enumerate(landmarks.landmarks) if i not in present)
    # Nobody subscribed to the images: they are not made.
    quiet = FakeNode(subscribers=0)
    HriOutput(quiet, HRI, publish_tracked=True).on_faces(Keyframe(stamp, frame, ["f2"], [face]), "camera")
    assert quiet.publishers["/humans/faces/f2/cropped"].sent == [] and quiet.publishers["/humans/faces/f2/roi"].sent
    # The face ends: all its topics go.
    out.on_faces(Keyframe(stamp + NS, frame, [], []), "camera")
    assert not [t for t in node.publishers if t.startswith("/humans/faces/f2/")]


def test_live_view_draws_each_face_its_landmarks_and_its_latest_reading():
    frame = np.full((480, 640, 3), 90, np.uint8)
    marks = np.array([[230, 130], [270, 130], [250, 150], [235, 175], [265, 175]], np.float32)
    face = FaceObservation("f2", (200, 100, 100, 100), 0.97, marks, 0.0)
    view = LiveView()
    bare = view.draw(Keyframe(6 * NS, frame, ["f2"], [face]))
    assert not np.shares_memory(bare, frame) and (frame == 90).all(), "the frame itself is never drawn on"
    colour = bare[100, 250]  # the box's top edge
    assert (colour != 90).any() and (bare[130, 230] == colour).all(), "landmarks in the face's colour"
    view.on_reading(reading("f2", one_hot("happiness", 0.9), end_ns=5 * NS))
    with_reading = view.draw(Keyframe(6 * NS, frame, ["f2"], [face]))
    panel = (np.abs(with_reading.astype(int) - bare).sum(axis=2) > 0)[200:, 190:]
    assert panel.sum() > 500, "label, age and one bar per class below the box"
    # Below the label line, one bar per class in the box's colour, 60 px for p = 1: happiness's
    # 0.9 is the longest, the other six get 0.1 / 6 each.
    bars = np.all(with_reading[214:300, 200:260] == colour, axis=2).sum(axis=1)
    assert sorted(set(bars.tolist()) - {0}) == [1 + 1, 54 + 1]  # cv2 fills both end columns
    # A face no longer tracked: its reading is forgotten.
    view.draw(Keyframe(7 * NS, frame, [], []))
    assert np.array_equal(view.draw(Keyframe(8 * NS, frame, ["f2"], [face])), bare)


# ------------------------------------------------------------------------ inputs
def aligned(stamp_ns: int, value: int, size: int = 128, bad: bool = False) -> Image:
    msg = Image(
        height=size,
        width=size,
        encoding="rgb8",
        step=size * 3,
        data=np.full(size * size * 3 // (2 if bad else 1), value, np.uint8).tobytes(),
    )
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp_ns // NS, stamp_ns % NS
    return msg


def test_faces_ids_and_aligned_crops_from_another_node_make_the_windows_clips():
    spec = build_model("tiny-random-video").input_spec
    preprocess = FramePreprocessor(spec)
    faces = ExternalFaces(preprocess, keep_ns=3 * NS, max_faces=4)
    node, bad = FakeNode(), []
    hri_in = HriFaceInput(node, HRI, faces, lambda kind, e: bad.append(kind))
    hri_in.on_tracked(IdsList(ids=["abc", "xyz"]))
    assert {
        "/humans/faces/abc/aligned",
        "/humans/faces/abc/roi",
        "/humans/faces/xyz/aligned",
        "/humans/faces/xyz/roi",
    } <= set(node.subscriptions)
    stamps = [int(k * NS / 30) for k in range(60)]
    for k, t in enumerate(stamps):
        node.subscriptions["/humans/faces/abc/aligned"].callback(aligned(t, 200))
        if k >= 20:  # xyz appears 0.67 s in: too late for a window starting at 0
            node.subscriptions["/humans/faces/xyz/aligned"].callback(aligned(t, 50))
    roi = NormalizedRegionOfInterest2D(xmin=0.25, ymin=0.5, xmax=0.5, ymax=1.0)
    roi.header.stamp.sec, roi.header.stamp.nanosec = 1, 900_000_000
    node.subscriptions["/humans/faces/abc/roi"].callback(roi)
    node.subscriptions["/humans/faces/abc/aligned"].callback(aligned(stamps[-1] + NS // 30, 1, bad=True))
    assert bad == ["aligned_face"]
    picked = stamps[0:60:4][:15] + [stamps[59]]
    frame = np.zeros((480, 640, 3), np.uint8)
    window = Window(index=0, stamps_ns=picked, frames=[frame] * 16, start_ns=picked[0], end_ns=picked[-1])
    clips = faces.faces_for_window(window, min_face_fraction=0.5)
    assert [face_id for face_id, _, _ in clips] == ["abc"]
    face_id, box, clip = clips[0]
    assert box == (160, 240, 160, 240), "the normalised ROI in the window's image pixels"
    expected = preprocess([np.full((128, 128, 3), 200, np.uint8)]).numpy()[0]
    assert clip.shape == (16, 3, spec.image_size, spec.image_size)
    assert np.allclose(clip.numpy(), expected)
    later = [t + stamps[25] for t in picked]
    for k in range(60, 120):  # both faces go on
        t = int(k * NS / 30)
        node.subscriptions["/humans/faces/abc/aligned"].callback(aligned(t, 200))
        node.subscriptions["/humans/faces/xyz/aligned"].callback(aligned(t, 50))
    window = Window(index=1, stamps_ns=later, frames=[frame] * 16, start_ns=later[0], end_ns=later[-1])
    assert sorted(f for f, _, _ in faces.faces_for_window(window, 0.5)) == ["abc", "xyz"]
    # abc leaves the tracked list: its subscriptions go, and it takes no further part.
    hri_in.on_tracked(IdsList(ids=["xyz"]))
    assert "/humans/faces/abc/aligned" not in node.subscriptions
    assert [f for f, _, _ in faces.faces_for_window(window, 0.5)] == ["xyz"]
    hri_in.close()
    assert node.subscriptions == {}


# ------------------------------------------------------------------------ the node without hri_msgs
@pytest.mark.skipif(import_hri_msgs() is not None, reason="hri_msgs is installed here: the fallback is not reachable")
def test_without_hri_msgs_outputs_are_off_with_one_line_and_ros4hri_faces_fail_configure(capfd):
    from rclpy.parameter import Parameter

    from duse_ros.nodes.affect_node import AffectNode

    rclpy.init()
    try:
        node = AffectNode(parameter_overrides=[Parameter("model", value="tiny-random-video")])
        try:
            assert node._pipeline is not None and node._hri_out is None
        finally:
            node.close()
            node.destroy_node()
        err = capfd.readouterr().err
        assert err.count("ROS4HRI outputs off") == 1 and "hri_msgs" in err
        node = AffectNode(
            parameter_overrides=[
                Parameter("model", value="tiny-random-video"),
                Parameter("face_source", value="ros4hri"),
            ]
        )
        try:
            assert node._pipeline is None and not node._configured
        finally:
            node.close()
            node.destroy_node()
        err = capfd.readouterr().err
        assert "configure failed" in err and "face_source 'ros4hri' needs hri_msgs" in err
    finally:
        rclpy.shutdown()

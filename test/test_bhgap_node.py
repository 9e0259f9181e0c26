"""BHGap in affect_node across processes over real Fast DDS: a face (the bundled portrait, found
by the real Haar detector) with a voice gives audio-visual readings; once the face leaves the
picture the node keeps publishing from the audio alone. Random weights: plumbing, not accuracy."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import rclpy
from ros_harness import NS, NodeProcess, Peer, image_msg, stamps
from sensor_msgs.msg import Image

from duse_ros.io.samples import load_sample_face
from duse_ros.msg import EmotionState
from duse_ros.nodes.common import stamp_to_ns

FPS = 15.0
START_S = 30.0
FACE_GONE_S = 4.0  # stream time when the face leaves the picture for good


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.shutdown()


def _frames() -> tuple[np.ndarray, np.ndarray]:
    """320x240 RGB: the portrait in the middle (the Haar detector finds it in every frame, so
    the test does not hinge on a moving face), and the same room empty."""
    empty = np.full((240, 320, 3), (96, 104, 112), np.uint8)
    with_face = empty.copy()
    with_face[20:220, 60:260] = cv2.resize(load_sample_face()[:400, 56:456], (200, 200), interpolation=cv2.INTER_AREA)
    return with_face, empty


def _frame(stamp_ns: int, frames: tuple[np.ndarray, np.ndarray]) -> Image:
    return image_msg(stamp_ns, frames[0] if stamp_ns / NS - START_S < FACE_GONE_S else frames[1], "rgb8")


def test_bhgap_node_publishes_audio_visual_then_audio_only_when_the_face_leaves(ros):
    node = NodeProcess(
        "duse_ros.nodes.affect_node",
        {
            "model": "bhgap-tiny",
            "face_mode": "detect",
            # The stream is played far faster than real time: keyframe detection keeps step with
            # it, or a busy machine's detector may not have found the face before it leaves.
            "face_detect_sync": True,
            "smoothing_window": 0,
            "diagnostics_period_s": 0.2,
            "queue_depth": 16,
            "qos.reliability": "reliable",
            "qos.depth": 400,
        },
    )
    try:
        peer = Peer("reliable")
        peer.wait_matched(node, audio=True, timeout=60)
        frames = _frames()
        played = stamps(START_S, int(8.5 * FPS), fps=FPS)
        peer.play(played, make_frame=lambda stamp: _frame(stamp, frames), audio_rate=16000)

        face_gone_ns = int((START_S + FACE_GONE_S) * NS)

        def audio_only_after_face_left() -> bool:
            return any(
                s.modality == EmotionState.MODALITY_AUDIO and stamp_to_ns(s.window_start) >= face_gone_ns
                for s in peer.states
            )

        peer.spin_until(
            lambda: (
                any(s.modality == EmotionState.MODALITY_AUDIO_VISUAL for s in peer.states)
                and audio_only_after_face_left()
            ),
            60,
            "audio-visual states, then audio-only ones once the face has gone",
            node,
        )
        for state in peer.states:
            assert state.model_id == "bhgap-tiny+random-encoders" and state.untrained
            if state.modality == EmotionState.MODALITY_NONE:
                # A window cut as the face leaves (too few face frames) while its audio is still on
                # the way: nothing to read, and the state says so rather than guessing.
                assert state.label == "no_face" and not state.face_found and not state.probabilities
                assert state.audio_samples_used == 0
                continue
            assert len(state.class_names) == 7 and abs(sum(state.probabilities) - 1.0) < 1e-4
            if state.modality == EmotionState.MODALITY_VIDEO:
                # The stream is played far faster than real time, so a window's audio, on a topic
                # of its own, can still be on its way when the window is cut: then the face alone
                # is read (the other fallback), and it says so.
                assert state.face_found and state.frames_used == 16 and state.audio_samples_used == 0
                assert state.audio_sample_rate == 0
                continue
            assert state.audio_sample_rate == 16000 and state.audio_samples_used > 0
            if state.modality == EmotionState.MODALITY_AUDIO_VISUAL:
                assert state.face_found and state.frames_used == 16
                assert stamp_to_ns(state.window_start) < face_gone_ns, "a face where there was none"
            else:
                # Without a face, audio only (also while the detector first finds the face).
                assert state.modality == EmotionState.MODALITY_AUDIO
                assert not state.face_found and state.frames_used == 0
    finally:
        assert node.stop() == 0, f"node did not exit cleanly:\n{node.output()[-2000:]}"


def test_encoder_weight_parameters_reach_the_model(ros, tmp_path):
    missing = tmp_path / "no_such_mae_face.pth"
    node = NodeProcess("duse_ros.nodes.affect_node", {"model": "bhgap-tiny", "visual_weights": str(missing)})
    try:
        peer = Peer("reliable")
        peer.spin_until(lambda: "configure failed" in node.output(), 60, "the configure error", node)
        assert f"visual_weights '{missing}' does not exist" in node.output()
        assert node.alive(), "a failed configure leaves the node up (unconfigured)"
    finally:
        assert node.stop() == 0

"""Test harness: a node under test in its own process, and an in-process rclpy peer that plays
frames/audio with known stamps and collects what the node publishes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from duse_ros.affect import diagnostics as diag
from duse_ros.msg import AudioChunk, EmotionState
from duse_ros.timebase import NS
from duse_ros.tools.processes import NodeProcess as _NodeProcess
from duse_ros.tools.processes import spin_until

ROOT = Path(__file__).resolve().parents[1]


class NodeProcess(_NodeProcess):
    """A node under test in its own process, run from the repository root, its log kept for failures."""

    def __init__(self, target: str, params: dict[str, object], extra_args: list[str] | None = None):
        super().__init__(target, params, extra_args or [], cwd=ROOT)


def qos(reliability: str, depth: int = 400) -> QoSProfile:
    return QoSProfile(
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT,
    )


def image_msg(stamp_ns: int, pixels: np.ndarray, encoding: str = "bgr8", frame_id: str = "camera") -> Image:
    """A sensor_msgs/Image of (H, W, 3) uint8 pixels, stamped `stamp_ns`."""
    height, width = pixels.shape[:2]
    msg = Image(height=height, width=width, encoding=encoding, step=width * 3, data=pixels.tobytes())
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp_ns // NS, stamp_ns % NS
    msg.header.frame_id = frame_id
    return msg


def frame_msg(stamp_ns: int, value: int = 100, width: int = 64, height: int = 48, frame_id: str = "camera") -> Image:
    return image_msg(stamp_ns, np.full((height, width, 3), value % 256, np.uint8), frame_id=frame_id)


def audio_msg(stamp_ns: int, samples: np.ndarray, rate: int) -> AudioChunk:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    msg = AudioChunk(sample_rate=rate, channels=1, sample_format=AudioChunk.FORMAT_S16LE, data=pcm.tobytes())
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp_ns // NS, stamp_ns % NS
    return msg


class Peer:
    """The test's side of the wire."""

    def __init__(self, reliability: str = "reliable", compressed: bool = False):
        self.node = rclpy.create_node(f"test_peer_{os.getpid()}_{time.monotonic_ns()}")
        self.image_pub = self.node.create_publisher(Image, "image_raw", qos(reliability))
        self.audio_pub = self.node.create_publisher(AudioChunk, "audio", qos(reliability))
        self.states: list[EmotionState] = []
        self.diagnostics: list[DiagnosticArray] = []
        self.node.create_subscription(EmotionState, "emotion_state", self.states.append, qos("reliable", 100))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)

    def spin_until(
        self, condition: Callable[[], bool], timeout: float, what: str, node_proc: NodeProcess | None = None
    ) -> None:
        spin_until(condition, lambda: rclpy.spin_once(self.node, timeout_sec=0.05), timeout, what, node_proc)

    def wait_matched(self, node_proc: NodeProcess, audio: bool = False, timeout: float = 60.0) -> None:
        self.spin_until(
            lambda: (
                self.image_pub.get_subscription_count() > 0
                and (not audio or self.audio_pub.get_subscription_count() > 0)
                and self.node.count_publishers("emotion_state") > 0
            ),
            timeout,
            "the affect node to subscribe",
            node_proc,
        )
        # Our writer seeing the node's reader is half of the match; frames sent before the node's
        # reader has matched our writer are lost. The node's diagnostics report its side.
        topics = ["image_raw"] + (["audio"] if audio else [])
        self.spin_until(
            lambda: all(int(self.latest_diagnostics().get(diag.input_publishers_key(t), 0)) >= 1 for t in topics),
            timeout,
            "the affect node to match this publisher",
            node_proc,
        )

    def play(
        self,
        stamps_ns: list[int],
        make_frame: Callable[[int], Image] | None = None,
        audio_rate: int = 0,
        audio_chunk_s: float = 0.1,
        realtime: bool = False,
    ) -> None:
        """Publish frames (and audio chunks covering the same time) in stamp order. Between
        messages the executor is spun once without waiting, so nothing queues up unserviced.
        `realtime`: at the stamps' own pace (a camera), not as fast as DDS takes them (a replay):
        for tests where the face detector's keyframes must keep step with the stream."""
        make_frame = make_frame or frame_msg
        next_audio = stamps_ns[0] if audio_rate else None
        chunk = int(audio_rate * audio_chunk_s)
        start = time.monotonic()
        for stamp in stamps_ns:
            while next_audio is not None and next_audio <= stamp:
                t = (next_audio + np.arange(chunk) * NS // audio_rate) / NS
                self.audio_pub.publish(audio_msg(next_audio, 0.3 * np.sin(2 * np.pi * 220 * t), audio_rate))
                next_audio += chunk * NS // audio_rate
            if realtime:
                while time.monotonic() < start + (stamp - stamps_ns[0]) / NS:
                    rclpy.spin_once(self.node, timeout_sec=0.005)
            self.image_pub.publish(make_frame(stamp))
            rclpy.spin_once(self.node, timeout_sec=0.0)
            time.sleep(0.002)  # pace ~500 msg/s so a 2-core machine's DDS queues never overflow

    def latest_diagnostics(self) -> dict[str, str]:
        for arr in reversed(self.diagnostics):
            for status in arr.status:
                if diag.is_affect_status(status.name):
                    return {kv.key: kv.value for kv in status.values} | {
                        "__message": status.message,
                        "__level": status.level,
                    }
        return {}


def stamps(start_s: float, count: int, fps: float = 30.0) -> list[int]:
    return [int(round((start_s + i / fps) * NS)) for i in range(count)]

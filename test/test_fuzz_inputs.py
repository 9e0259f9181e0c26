"""affect_node under hostile input, across processes over DDS: every malformed kind of Image,
CompressedImage and AudioChunk we know of, plus extreme values of every numeric field. After each
kind the node must be alive, still publish for a valid stream, and its RSS must stay bounded."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
import rclpy
from ros_harness import NS, NodeProcess, Peer, audio_msg, frame_msg, qos
from sensor_msgs.msg import CompressedImage, Image

from duse_ros.affect import diagnostics as diag
from duse_ros.msg import AudioChunk

NODE = "duse_ros.nodes.affect_node"
PARAMS = {
    "model": "tiny-random-av",
    "face_mode": "full_frame",
    "span_s": 0.5,
    "stride_s": 0.5,
    "diagnostics_period_s": 0.2,
    "qos.reliability": "reliable",
    "qos.depth": 100,
    "queue_depth": 4,
    "max_image_pixels": 1_000_000,
}
RSS_GROWTH_MB = 150  # over the node's RSS once it has streamed valid input
U32, U16, I32 = 2**32 - 1, 2**16 - 1, 2**31 - 1


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _stamped(msg, stamp_ns: int):
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp_ns // NS, stamp_ns % NS
    return msg


def with_stamp(msg, sec: int, nanosec: int):
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
    return msg


def image(stamp_ns: int, **fields) -> Image:
    msg = frame_msg(stamp_ns)
    for k, v in fields.items():
        setattr(msg, k, v)
    return msg


def jpeg(stamp_ns: int, data: bytes | None = None, fmt: str = "jpeg") -> CompressedImage:
    if data is None:
        data = cv2.imencode(".jpg", np.full((48, 64, 3), 120, np.uint8))[1].tobytes()
    return _stamped(CompressedImage(format=fmt, data=data), stamp_ns)


def png_claiming(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\0\0\0\0"


def chunk(stamp_ns: int, **fields) -> AudioChunk:
    msg = audio_msg(stamp_ns, np.zeros(1600, np.float32), 16000)
    for k, v in fields.items():
        setattr(msg, k, v)
    return msg


class Stream:
    """The valid stream: frames (raw or JPEG) and 16 kHz audio with increasing stamps, played in
    bursts; each burst must bring a new EmotionState."""

    def __init__(self, peer: Peer, node: NodeProcess, compressed: bool):
        self.peer, self.node, self.compressed = peer, node, compressed
        self.t_ns = 1000 * NS
        self.jpeg_pub = peer.node.create_publisher(CompressedImage, "image_raw/compressed", qos("reliable"))

    def frame(self, stamp_ns: int):
        return jpeg(stamp_ns) if self.compressed else frame_msg(stamp_ns)

    def publish_frame(self, msg) -> None:
        (self.jpeg_pub if self.compressed else self.peer.image_pub).publish(msg)
        rclpy.spin_once(self.peer.node, timeout_sec=0.0)

    def burst_brings_a_reading(self, what: str) -> None:
        before = len(self.peer.states)
        self.t_ns += 10 * NS  # after a gap: whatever the bad input did to the timeline, a fresh start
        for i in range(24):
            stamp = self.t_ns + i * NS // 30
            if i % 3 == 0:
                self.peer.audio_pub.publish(audio_msg(stamp, np.zeros(1600, np.float32), 16000))
            self.publish_frame(self.frame(stamp))
        self.t_ns += 24 * NS // 30
        self.peer.spin_until(lambda: len(self.peer.states) > before, 30, f"a reading after {what}", self.node)


# (kind, messages to send); "frame" messages go on the image topic in use, "audio" on audio.
def raw_kinds(t: int) -> list[tuple[str, list[tuple[str, object]]]]:
    f_data = bytes(frame_msg(t).data)
    return [
        ("unknown encoding", [("frame", image(t, encoding="bogus"))]),
        ("depth encoding", [("frame", image(t, encoding="16UC1"))]),
        ("truncated data", [("frame", image(t, data=f_data[:100]))]),
        ("data longer than header", [("frame", image(t, data=f_data + b"\0" * 999))]),
        ("zero width", [("frame", image(t, width=0))]),
        ("zero height", [("frame", image(t, height=0))]),
        ("uint32 max width and height", [("frame", image(t, width=U32, height=U32))]),
        ("uint32 max width", [("frame", image(t, width=U32))]),
        ("uint32 max step", [("frame", image(t, step=U32))]),
        ("step smaller than a row", [("frame", image(t, step=3))]),
        ("big-endian 8-bit", [("frame", image(t, is_bigendian=255))]),
        ("odd-width yuv422", [("frame", image(t, encoding="yuv422", width=63, step=126, data=bytes(126 * 48)))]),
        (
            "oversized frame (refused)",
            [("frame", image(t, width=1500, height=1000, step=4500, data=bytes(4500 * 1000)))],
        ),
        ("stamp zero", [("frame", frame_msg(0))]),
        ("stamp int32 max", [("frame", _stamped(frame_msg(0), I32 * NS))]),
        ("stamp int32 min", [("frame", with_stamp(frame_msg(0), -(2**31), 0))]),
        ("nanosec uint32 max", [("frame", with_stamp(frame_msg(0), 5, U32))]),
        ("frame_id change", [("frame", frame_msg(t, frame_id="other_camera"))]),
    ]


def compressed_kinds(t: int) -> list[tuple[str, list[tuple[str, object]]]]:
    good = jpeg(t).data
    return [
        ("empty data", [("frame", jpeg(t, b""))]),
        ("garbage", [("frame", jpeg(t, bytes(range(256)) * 4))]),
        ("truncated jpeg", [("frame", jpeg(t, bytes(good[: len(good) // 2])))]),
        ("video codec format", [("frame", jpeg(t, fmt="h264"))]),
        ("compressedDepth format", [("frame", jpeg(t, fmt="16UC1; compressedDepth png"))]),
        ("png claiming 100000 x 100000", [("frame", jpeg(t, png_claiming(100000, 100000), fmt="png"))]),
        ("png claiming uint32 max size", [("frame", jpeg(t, png_claiming(U32, U32), fmt="png"))]),
        (
            "jpeg of 1500 x 1000 (refused)",
            [("frame", jpeg(t, cv2.imencode(".jpg", np.zeros((1000, 1500, 3), np.uint8))[1].tobytes()))],
        ),
        ("stamp int32 max", [("frame", jpeg(I32 * NS))]),
    ]


def audio_kinds(t: int) -> list[tuple[str, list[tuple[str, object]]]]:
    return [
        ("sample_rate uint32 max", [("audio", chunk(t, sample_rate=U32))]),
        ("sample_rate 1000003", [("audio", chunk(t + i * NS // 10, sample_rate=1000003)) for i in range(5)]),
        ("sample_rate 1", [("audio", chunk(t + i * NS // 10, sample_rate=1)) for i in range(5)]),
        ("sample_rate 0", [("audio", chunk(t, sample_rate=0))]),
        ("sample_rate 44101 (accepted, approximated)", [("audio", chunk(t, sample_rate=44101))]),
        ("channels 0", [("audio", chunk(t, channels=0))]),
        ("channels uint16 max", [("audio", chunk(t, channels=U16))]),
        ("unknown sample format", [("audio", chunk(t, sample_format="S24BE"))]),
        ("odd byte count", [("audio", chunk(t, data=bytes(3201)))]),
        ("empty data", [("audio", chunk(t, data=b""))]),
        (
            "NaN float samples",
            [("audio", chunk(t, sample_format="F32LE", data=np.full(1600, np.nan, "<f4").tobytes()))],
        ),
        ("10 s chunk (refused)", [("audio", chunk(t, data=bytes(2 * 160000)))]),
        ("stamp int32 max", [("audio", _stamped(chunk(0), I32 * NS))]),
    ]


def _send(stream: Stream, messages) -> None:
    for kind, msg in messages:
        if kind == "audio":
            stream.peer.audio_pub.publish(msg)
        else:
            stream.publish_frame(msg)


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.shutdown()


def _fuzz(compressed: bool, kinds) -> None:
    node = NodeProcess(NODE, {**PARAMS, "image_compressed": compressed})
    try:
        peer = Peer("reliable")
        stream = Stream(peer, node, compressed)
        peer.spin_until(
            lambda: (
                (stream.jpeg_pub if compressed else peer.image_pub).get_subscription_count() > 0
                and peer.audio_pub.get_subscription_count() > 0
            ),
            30,
            "the node to subscribe",
            node,
        )
        topic = "image_raw/compressed" if compressed else "image_raw"
        peer.spin_until(
            lambda: (
                int(peer.latest_diagnostics().get(diag.input_publishers_key(topic), 0)) >= 1
                and int(peer.latest_diagnostics().get(diag.input_publishers_key("audio"), 0)) >= 1
            ),
            30,
            "the node to match this peer",
            node,
        )
        stream.burst_brings_a_reading("start-up")
        stream.burst_brings_a_reading("start-up")
        baseline = rss_mb(node.proc.pid)
        for what, messages in kinds(stream.t_ns + NS):
            _send(stream, messages)
            stream.burst_brings_a_reading(what)
            assert node.alive(), f"node died after {what}:\n{node.output()[-3000:]}"
            rss = rss_mb(node.proc.pid)
            assert rss < baseline + RSS_GROWTH_MB, f"RSS {rss:.0f} MB after {what} (baseline {baseline:.0f} MB)"
        seen = len(peer.diagnostics)  # a status sent after the last input has been handled
        peer.spin_until(lambda: len(peer.diagnostics) >= seen + 2, 10, "fresh diagnostics", node)
        values = peer.latest_diagnostics()
        assert "Traceback" not in node.output()
        return values
    finally:
        assert node.stop() == 0, f"node did not exit cleanly:\n{node.output()[-3000:]}"


def test_raw_images_and_audio_of_every_malformed_kind(ros):
    values = _fuzz(False, lambda t: raw_kinds(t) + audio_kinds(t))
    assert int(values["refused.image_too_large"]) >= 3  # 1500 x 1000, uint32 max sizes
    assert int(values["refused.audio_sample_rate"]) >= 11  # uint32 max, 5 x 1000003, 5 x 1
    assert int(values["refused.audio_chunk_too_long"]) >= 1
    assert int(values["malformed.image"]) >= 9 and int(values["malformed.audio"]) >= 6


def test_compressed_images_of_every_malformed_kind(ros):
    values = _fuzz(True, compressed_kinds)
    assert int(values["refused.image_too_large"]) >= 3  # two PNG headers, one real JPEG
    assert int(values["malformed.image"]) >= 5

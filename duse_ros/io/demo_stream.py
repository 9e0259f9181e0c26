"""rosbag2 files without a ROS install (rosbags), and the demo's synthetic camera + microphone.

- `write_demo_bag(path)`: a short recorded stream built from the bundled portrait: the face moves
  a little, leaves the picture for a while (so audio-visual models fall back on audio), and comes
  back; a voice-like tone plays throughout. JPEG CompressedImage + duse_ros/AudioChunk, MCAP.
- `read_bag(path)`: (topic, msgtype, stamp_ns, raw CDR) in time order, ready to publish as-is.

Reading and writing any bag (and the typestore) live in `duse_ros.io.rosbag`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from rosbags.rosbag2 import Reader, StoragePlugin, Writer

from duse_ros.io.audio import AUDIO_CHUNK, AUDIO_MESSAGES
from duse_ros.io.images import COMPRESSED_IMAGE, IMAGE_MESSAGES
from duse_ros.io.rosbag import typestore
from duse_ros.io.samples import load_sample_face
from duse_ros.timebase import NS

CAMERA = IMAGE_MESSAGES[COMPRESSED_IMAGE]  # the demo's camera: JPEG, as image_transport's compressed stream
MICROPHONE = AUDIO_MESSAGES[AUDIO_CHUNK]  # S16LE mono
IMAGE_TOPIC, AUDIO_TOPIC = CAMERA.topic("/image_raw"), "/audio"
JPEG_QUALITY = 85


@dataclass(frozen=True)
class DemoScript:
    """When the face is in view: seconds of stream from the start."""

    duration_s: float = 12.0
    fps: float = 15.0
    face_absent: tuple[float, float] = (6.0, 9.0)
    size: tuple[int, int] = (320, 240)  # width, height
    audio_rate: int = 16000
    audio_chunk_s: float = 0.1


def demo_frame(t: float, script: DemoScript, face: np.ndarray) -> np.ndarray:
    """RGB frame at time t: the portrait drifting and breathing in scale, or an empty room."""
    w, h = script.size
    frame = np.full((h, w, 3), (96, 104, 112), np.uint8)
    cv2.rectangle(frame, (0, int(h * 0.7)), (w, h), (70, 60, 50), -1)  # a table edge
    if script.face_absent[0] <= t < script.face_absent[1]:
        return frame
    side = int(h * (0.8 + 0.05 * np.sin(2 * np.pi * 0.3 * t)))
    portrait = cv2.resize(face[:400, 56:456], (side, side), interpolation=cv2.INTER_AREA)
    x = int((w - side) / 2 + 20 * np.sin(2 * np.pi * 0.2 * t))
    y = (h - side) // 2
    frame[y : y + side, x : x + side] = portrait
    return frame


def demo_audio(t0: float, n: int, rate: int) -> np.ndarray:
    """A voice-like signal: a gliding 140-260 Hz fundamental with harmonics, syllable envelope."""
    t = t0 + np.arange(n) / rate
    f0 = 200 + 60 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
    return (0.2 * voice * envelope).astype(np.float32)


def write_demo_bag(
    path: str | Path,
    script: DemoScript = DemoScript(),
    start_ns: int = 1_700_000_000 * NS,
    frame_id: str = "camera_optical_frame",
) -> Path:
    """Write the demo stream to `path` (a new rosbag2 directory, MCAP storage)."""
    path = Path(path)
    store = typestore()
    Header, Time = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    face = load_sample_face()

    def header(ns: int, fid: str):
        return Header(stamp=Time(sec=ns // NS, nanosec=ns % NS), frame_id=fid)

    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        cam = writer.add_connection(IMAGE_TOPIC, CAMERA.type_name, typestore=store)
        mic = writer.add_connection(AUDIO_TOPIC, MICROPHONE.type_name, typestore=store)
        events = [(i / script.fps, "frame") for i in range(int(script.duration_s * script.fps))]
        chunk = int(script.audio_rate * script.audio_chunk_s)
        events += [(k * script.audio_chunk_s, "audio") for k in range(int(script.duration_s / script.audio_chunk_s))]
        for t, kind in sorted(events):
            ns = start_ns + int(round(t * NS))
            if kind == "frame":
                msg = CAMERA.build(store.types, header(ns, frame_id), demo_frame(t, script, face), JPEG_QUALITY)
                writer.write(cam, ns, store.serialize_cdr(msg, msg.__msgtype__))
            else:
                pcm = (demo_audio(t, chunk, script.audio_rate) * 32767).astype("<i2")
                msg = MICROPHONE.build(store.types, header(ns, "microphone"), pcm.reshape(-1, 1), script.audio_rate)
                writer.write(mic, ns, store.serialize_cdr(msg, msg.__msgtype__))
    return path


def read_bag(path: str | Path) -> Iterator[tuple[str, str, int, bytes]]:
    """(topic, msgtype, log time ns, raw CDR) for every message, in time order."""
    with Reader(Path(path)) as reader:
        for conn, stamp, raw in reader.messages():
            yield conn.topic, conn.msgtype, stamp, bytes(raw)

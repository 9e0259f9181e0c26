"""Test inputs for the bag tools: a real video file with sound (PyAV, the bundled portrait and a
tone), and bags written the way `ros2 bag record` writes them (rosbags, any storage)."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np

from duse_ros.io.audio import AUDIO_DATA_STAMPED, AUDIO_MESSAGES, AUDIO_STAMPED
from duse_ros.io.rosbag import BagWriter, typestore
from duse_ros.io.samples import load_sample_face
from duse_ros.timebase import NS


def write_video(
    path: Path,
    seconds: float = 2.0,
    fps: int = 15,
    rate: int = 16000,
    channels: int = 2,
    size: tuple[int, int] = (160, 120),
) -> np.ndarray:
    """An MPEG-4 .mov of the portrait drifting sideways, with a 16-bit PCM tone track (lossless,
    so every sample can be checked). Returns the PCM written, (samples, channels) int16."""
    face = cv2.resize(load_sample_face(), size)
    out = av.open(str(path), "w")
    video = out.add_stream("mpeg4", rate=fps)
    video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
    audio = out.add_stream("pcm_s16le", rate=rate)
    audio.layout = "stereo" if channels == 2 else "mono"
    for i in range(int(round(seconds * fps))):
        frame = av.VideoFrame.from_ndarray(np.roll(face, 2 * i, axis=1), format="rgb24")
        frame.pts = i
        for packet in video.encode(frame):
            out.mux(packet)
    for packet in video.encode():
        out.mux(packet)
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    pcm = np.stack([tone, (tone // 2)], 1) if channels == 2 else tone[:, None]
    for k in range(0, len(pcm), 1000):  # 1000-sample frames: not a divisor of the bag's chunks
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(pcm[k : k + 1000].reshape(1, -1)), format="s16", layout=audio.layout.name
        )
        frame.sample_rate, frame.pts = rate, k
        for packet in audio.encode(frame):
            out.mux(packet)
    for packet in audio.encode():
        out.mux(packet)
    out.close()
    return pcm


def header(store, ns: int, frame_id: str = "camera"):
    t = store.types
    return t["std_msgs/msg/Header"](
        stamp=t["builtin_interfaces/msg/Time"](sec=ns // NS, nanosec=ns % NS), frame_id=frame_id
    )


def image_msg(store, ns: int, rgb: np.ndarray, encoding: str):
    """sensor_msgs/Image in a camera driver's encoding (rgb8, bgr8, mono8, yuv422_yuy2)."""
    h, w = rgb.shape[:2]
    if encoding == "rgb8":
        data, step = rgb, w * 3
    elif encoding == "bgr8":
        data, step = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), w * 3
    elif encoding == "mono8":
        data, step = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), w
    elif encoding == "yuv422_yuy2":
        yuv = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), cv2.COLOR_BGR2YUV)
        packed = np.empty((h, w * 2), np.uint8)
        packed[:, 0::2] = yuv[:, :, 0]
        packed[:, 1::4] = yuv[:, 0::2, 1]
        packed[:, 3::4] = yuv[:, 0::2, 2]
        data, step = packed, w * 2
    else:
        raise ValueError(encoding)
    return store.types["sensor_msgs/msg/Image"](
        header=header(store, ns),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=step,
        data=np.ascontiguousarray(data).reshape(-1),
    )


def write_robot_bag(
    path: Path,
    storage: str,
    image: str = "bgr8",
    audio: str | None = "audio_stamped",
    seconds: float = 3.0,
    fps: float = 15.0,
    rate: int = 16000,
    extra_topics: bool = True,
    start_ns: int = 1_750_000_000 * NS,
) -> dict:
    """A bag as `ros2 bag record` leaves it on a robot: camera (raw `image` encoding or
    "compressed"), an audio_common microphone (`audio_stamped` = mgonzs13 layout,
    `audio_data_stamped` = ros-drivers layout with AudioInfo), and topics duse_ros does not know
    (tf, odometry). Log times trail the header stamps by a few ms, as a recorder's do."""
    layout = {"audio_stamped": "mgonzs13", "audio_data_stamped": "ros-drivers"}.get(audio)
    store = typestore(layout)
    t = store.types
    face = cv2.resize(load_sample_face(), (160, 120))
    frames = int(seconds * fps)
    chunk = rate // 10
    with BagWriter(path, storage, store) as bag:
        if extra_topics:
            tf = t["tf2_msgs/msg/TFMessage"](transforms=[])
            bag.write("/tf", start_ns, tf)
            odom = t["nav_msgs/msg/Odometry"](
                header=header(store, start_ns, "odom"),
                child_frame_id="base_link",
                pose=t["geometry_msgs/msg/PoseWithCovariance"](
                    pose=t["geometry_msgs/msg/Pose"](
                        position=t["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
                        orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
                    ),
                    covariance=np.zeros(36),
                ),
                twist=t["geometry_msgs/msg/TwistWithCovariance"](
                    twist=t["geometry_msgs/msg/Twist"](
                        linear=t["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
                        angular=t["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
                    ),
                    covariance=np.zeros(36),
                ),
            )
            bag.write("/odom", start_ns, odom)
        if audio == "audio_data_stamped":
            info = t["audio_common_msgs/msg/AudioInfo"](
                channels=1, sample_rate=rate, sample_format="S16LE", bitrate=16 * rate, coding_format="wave"
            )
            bag.write("/audio/audio_info", start_ns, info)
        events = [(start_ns + int(round(i * NS / fps)), "frame", i) for i in range(frames)]
        events += [(start_ns + k * chunk * NS // rate, "audio", k) for k in range(int(seconds * 10))] if audio else []
        for ns, kind, i in sorted(events, key=lambda e: e[0]):
            log_ns = ns + 3_000_000  # recorded a little after capture
            if kind == "frame":
                rgb = np.roll(face, 3 * i, axis=1)
                if image == "compressed":
                    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                    msg = t["sensor_msgs/msg/CompressedImage"](
                        header=header(store, ns), format="jpeg", data=jpeg.reshape(-1)
                    )
                    bag.write("/camera/color/image_raw/compressed", log_ns, msg)
                else:
                    bag.write("/camera/color/image_raw", log_ns, image_msg(store, ns, rgb, image))
            else:
                samples = (0.2 * np.sin(2 * np.pi * 300 * (i * chunk + np.arange(chunk)) / rate) * 32767).astype(
                    np.int16
                )
                kind = AUDIO_STAMPED if audio == "audio_stamped" else AUDIO_DATA_STAMPED
                msg = AUDIO_MESSAGES[kind].build(t, header(store, ns, "mic"), samples.reshape(-1, 1), rate)
                bag.write("/audio/audio", log_ns, msg)
    return {"frames": frames, "audio_messages": int(seconds * 10) if audio else 0, "start_ns": start_ns}

"""rosbag2 files without a ROS install (rosbags): open any bag `ros2 bag record` writes, pick its
camera, microphone and label topics, and write new bags the same way `ros2 bag record` does.

- `typestore()`: Kilted's standard types, duse_ros's own messages and, on request, one of the two
  audio_common layouts (they share the name `audio_common_msgs/msg/AudioData`, so a typestore
  holds one of them; a bag's own stored definitions decide which one it uses).
- `BagFile`: a bag opened for reading. Every failure (no metadata.yaml, a truncated or corrupt
  storage file, an undecodable message) is a `BagError` whose message names the bag.
- `BagWriter`: a new bag (MCAP or sqlite3, rosbag2 format 9) with `metadata.yaml`, the offered
  QoS profile of every topic and the message definitions stored, as `ros2 bag record` writes it.
- `select_streams()`: the image, audio and label topics of a bag, or an error that lists the
  topics it has.

Label spans live in a bag as `std_msgs/msg/String` on `LABEL_TOPIC`: a message at the start of
each span carries the class name, and an empty string ends a span that is not followed directly
by the next one. The log time of the message is the span boundary.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from duse_ros.io.audio import (  # the type names: the bag tools take them from here too
    AUDIO_CHUNK,  # noqa: F401
    AUDIO_DATA_STAMPED,
    AUDIO_MESSAGES,
    AUDIO_STAMPED,
    AUDIO_TYPES,
)
from duse_ros.io.images import IMAGE_TYPES
from duse_ros.share import share_dirs, share_path

AUDIO_INFO = "audio_common_msgs/msg/AudioInfo"
LABEL_TYPE = "std_msgs/msg/String"
LABEL_TOPIC = "/emotion_label"
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
# metadata.yaml custom_data key: the bag time (ns) that label CSV times are counted from.
ORIGIN_KEY = "duse_ros.time_origin_ns"

# The two audio_common message layouts, from their packages' .msg files.
AUDIO_COMMON_LAYOUTS: dict[str, dict[str, str]] = {
    "ros-drivers": {  # ros-drivers/audio_common (ROS 2 branch); the format lives on AudioInfo
        "audio_common_msgs/msg/AudioData": "uint8[] data\n",
        AUDIO_DATA_STAMPED: "std_msgs/Header header\naudio_common_msgs/AudioData audio\n",
        AUDIO_INFO: (
            "uint8 channels\nuint32 sample_rate\nstring sample_format\nuint32 bitrate\nstring coding_format\n"
        ),
    },
    "mgonzs13": {  # mgonzs13/audio_common; the format travels in every message
        "audio_common_msgs/msg/AudioData": (
            "float32[] float32_data\nint32[] int32_data\nint16[] int16_data\nint8[] int8_data\nuint8[] uint8_data\n"
        ),
        AUDIO_INFO: "int32 format\nint32 channels\nint32 rate\nint32 chunk\n",
        "audio_common_msgs/msg/Audio": "audio_common_msgs/AudioData audio_data\naudio_common_msgs/AudioInfo info\n",
        AUDIO_STAMPED: "std_msgs/Header header\naudio_common_msgs/Audio audio\n",
    },
}
# The layout a bag without stored message definitions most likely uses for each type.
DEFAULT_LAYOUT = {t: m.layout for t, m in AUDIO_MESSAGES.items() if m.layout} | {AUDIO_INFO: "ros-drivers"}


class BagError(ValueError):
    """A bag that cannot be used; the message names the bag."""


def typestore(audio_common: str | None = None):
    """Kilted's standard types plus duse_ros's own (and one audio_common layout, when named)."""
    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    msg_dir = share_path("msg")
    if msg_dir is None:
        raise BagError(f"duse_ros message definitions (msg/*.msg) not found in {[str(d) for d in share_dirs()]}")
    for path in sorted(msg_dir.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"duse_ros/msg/{path.stem}"))
    if audio_common is not None:
        if audio_common not in AUDIO_COMMON_LAYOUTS:
            raise ValueError(f"audio_common layout must be one of {sorted(AUDIO_COMMON_LAYOUTS)}, got {audio_common!r}")
        for name, text in AUDIO_COMMON_LAYOUTS[audio_common].items():
            types.update(get_types_from_msg(text, name))
    store.register(types)
    return store


def _qos_time(sec: int, nsec: int) -> QosTime:
    return QosTime(sec=sec, nsec=nsec)


_INFINITE = _qos_time(2147483647, 4294967295)  # what rosbag2 writes for an unset duration


def offered_qos(reliable: bool = False, depth: int = 10) -> Qos:
    """A publisher's offered QoS as `ros2 bag record` stores it (sensor data: best effort)."""
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=depth,
        reliability=QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
        durability=QosDurability.VOLATILE,
        deadline=_INFINITE,
        lifespan=_INFINITE,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=_INFINITE,
        avoid_ros_namespace_conventions=False,
    )


class BagWriter:
    """A new rosbag2 directory. `write` takes a message object or its raw CDR bytes."""

    def __init__(self, path: str | Path, storage: str = "mcap", store=None, custom_data: dict[str, str] | None = None):
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {sorted(STORAGES)}, got {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"{self.path} already exists; rosbag2 writes a new directory")
        self.store = store or typestore()
        self._writer = Writer(self.path, version=9, storage_plugin=STORAGES[storage])
        for key, value in (custom_data or {}).items():
            self._writer.set_custom_data(key, str(value))
        self._writer.open()
        self._connections: dict[str, object] = {}

    def add_topic(self, topic: str, msgtype: str, reliable: bool = False, qos: tuple[Qos, ...] = ()) -> None:
        """Declare a topic; `qos` (the profiles a recorded publisher offered) defaults to sensor data's."""
        if topic not in self._connections:
            self._connections[topic] = self._writer.add_connection(
                topic, msgtype, typestore=self.store, offered_qos_profiles=list(qos) or [offered_qos(reliable)]
            )

    def write(self, topic: str, log_ns: int, msg, msgtype: str | None = None) -> None:
        msgtype = msgtype or msg.__msgtype__
        self.add_topic(topic, msgtype)
        raw = msg if isinstance(msg, (bytes, bytearray, memoryview)) else self.store.serialize_cdr(msg, msgtype)
        self._writer.write(self._connections[topic], int(log_ns), bytes(raw))

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class TopicInfo:
    name: str
    msgtype: str
    count: int
    qos: tuple[Qos, ...] = ()


def _describe(topics: dict[str, TopicInfo]) -> str:
    if not topics:
        return "no topics at all"
    return ", ".join(
        f"{t.name} ({t.msgtype}, {t.count} messages)" for t in sorted(topics.values(), key=lambda t: t.name)
    )


class BagFile:
    """A rosbag2 directory opened for reading (sqlite3 or MCAP)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"{self.path}: no such bag")
        if not self.path.is_dir() or not (self.path / "metadata.yaml").is_file():
            raise BagError(f"{self.path}: not a rosbag2 directory (it needs a metadata.yaml beside the storage file)")
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except Exception as e:  # rosbags raises several types for damaged files
            raise BagError(
                f"{self.path}: cannot open the bag ({type(e).__name__}: {e}); is it truncated, or still being recorded?"
            ) from None
        self.topics = {
            c.topic: TopicInfo(c.topic, c.msgtype, c.msgcount, tuple(getattr(c.ext, "offered_qos_profiles", ()) or ()))
            for c in self._reader.connections
        }
        self.start_ns, self.end_ns = int(self._reader.start_time), int(self._reader.end_time)
        self.custom_data = self._custom_data()
        self.store = self._typestore()

    def _custom_data(self) -> dict[str, str]:
        try:
            meta = yaml.safe_load((self.path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        except Exception:  # noqa: BLE001 - rosbags already parsed it; custom_data is optional
            return {}
        return {str(k): str(v) for k, v in (meta.get("custom_data") or {}).items()}

    def _typestore(self):
        """Known types, plus the definitions the bag stores for the others (audio_common...).
        A bag without stored definitions gets the usual audio_common layout for its types."""
        store = typestore()
        stored = {}
        for c in self._reader.connections:
            definition = getattr(c, "msgdef", None)
            text = getattr(definition, "data", "") or ""
            if c.msgtype in store.types or not text or getattr(definition.format, "name", "MSG") != "MSG":
                continue
            try:
                stored.update(get_types_from_msg(text, c.msgtype))
            except Exception:  # noqa: BLE001 - an unreadable definition matters only if its topic is used
                continue
        missing = {c.msgtype for c in self._reader.connections} - set(store.types) - set(stored)
        layouts = {DEFAULT_LAYOUT[t] for t in missing if t in DEFAULT_LAYOUT}
        if len(layouts) == 1 and not any(t.startswith("audio_common_msgs/") for t in stored):
            for name, text in AUDIO_COMMON_LAYOUTS[layouts.pop()].items():
                stored.update(get_types_from_msg(text, name))
        try:
            store.register(stored)
        except Exception as e:  # noqa: BLE001 - e.g. a stored definition contradicting a standard type
            raise BagError(
                f"{self.path}: its stored message definitions conflict with the standard ones ({e})"
            ) from None
        return store

    def describe_topics(self) -> str:
        return _describe(self.topics)

    def messages(self, topics: list[str] | None = None) -> Iterator[tuple[str, str, int, bytes]]:
        """(topic, msgtype, log time ns, raw CDR), in log-time order."""
        wanted = [c for c in self._reader.connections if topics is None or c.topic in topics]
        if not wanted and topics is not None:  # rosbags reads every connection when given none
            return
        try:
            for conn, log_ns, raw in self._reader.messages(connections=wanted):
                yield conn.topic, conn.msgtype, int(log_ns), bytes(raw)
        except Exception as e:  # a file cut short or damaged mid-way
            raise BagError(
                f"{self.path}: reading stopped on a damaged record ({type(e).__name__}: {e}); "
                "the bag is truncated or corrupt"
            ) from None

    def deserialize(self, raw: bytes, msgtype: str):
        try:
            return self.store.deserialize_cdr(raw, msgtype)
        except Exception as e:  # noqa: BLE001
            raise BagError(f"{self.path}: a {msgtype} message cannot be decoded ({type(e).__name__}: {e})") from None

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> BagFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class Streams:
    image: TopicInfo
    audio: TopicInfo | None
    audio_info: TopicInfo | None  # AudioInfo beside an AudioDataStamped stream
    labels: TopicInfo | None


def _pick(bag: BagFile, kinds: tuple[str, ...], wanted: str | None, what: str, flag: str) -> TopicInfo | None:
    if wanted:
        topic = bag.topics.get(wanted) or bag.topics.get("/" + wanted.lstrip("/"))
        if topic is None:
            raise BagError(f"{bag.path}: {flag} {wanted} is not in the bag; its topics: {bag.describe_topics()}")
        if topic.msgtype not in kinds:
            raise BagError(f"{bag.path}: {flag} {wanted} carries {topic.msgtype}, not {' or '.join(kinds)}")
        return topic
    found = [t for t in bag.topics.values() if t.msgtype in kinds and t.count > 0]
    if len(found) > 1:
        raise BagError(
            f"{bag.path}: several {what} topics ({', '.join(sorted(t.name for t in found))}); choose one with {flag}"
        )
    return found[0] if found else None


def select_streams(
    bag: BagFile, image_topic: str | None = None, audio_topic: str | None = None, label_topic: str = LABEL_TOPIC
) -> Streams:
    image = _pick(bag, IMAGE_TYPES, image_topic, "image", "--image-topic")
    if image is None:
        raise BagError(
            f"{bag.path}: no sensor_msgs/msg/Image or CompressedImage topic with messages; "
            f"its topics: {bag.describe_topics()}"
        )
    audio = _pick(bag, AUDIO_TYPES, audio_topic, "audio", "--audio-topic")
    info = None
    if audio is not None and audio.msgtype == AUDIO_DATA_STAMPED:
        infos = [t for t in bag.topics.values() if t.msgtype == AUDIO_INFO and t.count > 0]
        info = infos[0] if len(infos) == 1 else None
    labels = bag.topics.get(label_topic)
    if labels is not None and labels.msgtype != LABEL_TYPE:
        labels = None
    return Streams(image=image, audio=audio, audio_info=info, labels=labels)

"""The image message family's one table (duse_ros/io/images.py, IMAGE_MESSAGES): every entry builds a
message from RGB pixels that its own size check and conversion read back, with rosbags' classes and
with rclpy's, through serialisation; rosbag's stream picker takes exactly the table's types; and no
module outside the family's owners names a family type or the compressed topic by hand."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from duse_ros.io.audio import AUDIO_MESSAGES
from duse_ros.io.images import COMPRESSED_IMAGE, IMAGE, IMAGE_MESSAGES, IMAGE_TYPES, image_message

ROOT = Path(__file__).resolve().parents[1]
H, W = 48, 64


def _pixels() -> np.ndarray:
    """Smooth gradients with one sharp edge: raw bgr8 must give them back exactly, JPEG closely."""
    y, x = np.mgrid[0:H, 0:W]
    rgb = np.stack([x * 255 // (W - 1), y * 255 // (H - 1), (x + y) * 255 // (W + H - 2)], axis=-1)
    rgb[H // 2 :, : W // 2, 2] = 30
    return rgb.astype(np.uint8)


def _rosbags(type_name: str, header_stamp: tuple[int, int]):
    """(types, header, serialise-and-read-back) with a rosbags typestore, as the bag tools use it."""
    from duse_ros.io.rosbag import typestore

    store = typestore()
    t = store.types
    sec, nanosec = header_stamp
    header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id="cam")
    return t, header, lambda msg: store.deserialize_cdr(store.serialize_cdr(msg, type_name), type_name)


def _rclpy(type_name: str, header_stamp: tuple[int, int]):
    """(types, header, serialise-and-read-back) with rclpy's classes, as the nodes and tools use them."""
    from rclpy.serialization import deserialize_message, serialize_message
    from std_msgs.msg import Header

    from duse_ros.nodes.common import message_class

    cls = message_class(type_name)
    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = header_stamp
    return {type_name: cls}, header, lambda msg: deserialize_message(serialize_message(msg), cls)


@pytest.mark.parametrize("classes", [_rosbags, _rclpy], ids=["rosbags", "rclpy"])
@pytest.mark.parametrize("type_name", list(IMAGE_MESSAGES))
def test_each_entry_builds_a_message_that_its_size_check_and_conversion_read_back(type_name, classes):
    entry = IMAGE_MESSAGES[type_name]
    types, header, round_trip = classes(type_name, (7, 11))
    rgb = _pixels()
    msg = round_trip(entry.build(types, header, rgb, 95))
    assert type(msg) is types[type_name]
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (7, 11, "cam")
    assert entry.pixels(msg) == H * W  # from the header alone (for JPEG its SOF marker)
    out = entry.to_rgb(msg)
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    if entry.compressed:
        error = np.abs(out.astype(int) - rgb.astype(int))
        assert error.mean() < 2.0 and np.percentile(error, 99) < 16, (error.mean(), error.max())
        assert not np.array_equal(out, rgb[..., ::-1])  # channels in RGB order, not BGR
    else:
        np.testing.assert_array_equal(out, rgb)
        assert msg.encoding == "bgr8"


def test_jpeg_quality_reaches_the_encoder():
    types, header, _ = _rosbags(COMPRESSED_IMAGE, (0, 0))
    entry = IMAGE_MESSAGES[COMPRESSED_IMAGE]
    noisy = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    sizes = [len(entry.build(types, header, noisy, q).data) for q in (20, 95)]
    assert sizes[0] < sizes[1] / 2


def test_the_compressed_size_check_reads_png_and_refuses_to_guess():
    import cv2

    entry = IMAGE_MESSAGES[COMPRESSED_IMAGE]

    class Msg:  # a CompressedImage's payload fields
        def __init__(self, data: bytes):
            self.format, self.data = "png", data

    png = cv2.imencode(".png", np.zeros((30, 50, 3), np.uint8))[1].tobytes()
    assert entry.pixels(Msg(png)) == 30 * 50
    assert entry.pixels(Msg(b"\x00\x01 not an image")) == 0  # unknown codec: the decoded size is checked
    assert entry.pixels(Msg(b"")) == 0


def test_topics_follow_image_transport_and_the_parameter_picks_the_entry():
    assert IMAGE_TYPES == (IMAGE, COMPRESSED_IMAGE) == tuple(IMAGE_MESSAGES)
    assert image_message(False) is IMAGE_MESSAGES[IMAGE] and image_message(True) is IMAGE_MESSAGES[COMPRESSED_IMAGE]
    assert [image_message(c).compressed for c in (False, True)] == [False, True]
    assert image_message(False).topic("/camera/color/image_raw") == "/camera/color/image_raw"
    assert image_message(True).topic("/camera/color/image_raw") == "/camera/color/image_raw/compressed"
    assert image_message(True).topic("image_raw") == "image_raw/compressed"


def test_every_reader_of_image_types_reads_the_one_table(tmp_path):
    """rosbag's stream picker takes each table type (and only those), and the tools' topic names
    come from the entries."""
    from argparse import Namespace

    from duse_ros.io import demo_stream, rosbag
    from duse_ros.io.rosbag import BagError, BagFile, BagWriter, select_streams
    from duse_ros.tools import providers

    assert rosbag.IMAGE_TYPES == tuple(IMAGE_MESSAGES)
    store = rosbag.typestore()
    t = store.types
    header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="cam")
    for type_name, entry in IMAGE_MESSAGES.items():
        path = tmp_path / type_name.rsplit("/", 1)[1]
        topic = entry.topic("/cam/image_raw")
        with BagWriter(path, "mcap", store) as bag:
            bag.write(topic, 1_000_000_000, entry.build(t, header, _pixels()))
            bag.write("/chatter", 1_000_000_000, t["std_msgs/msg/String"](data="not a camera"))
        with BagFile(path) as bag:
            streams = select_streams(bag)
            assert (streams.image.name, streams.image.msgtype) == (topic, type_name)
            with pytest.raises(BagError, match=" or ".join(map(re.escape, IMAGE_TYPES))):
                select_streams(bag, image_topic="/chatter")
    assert demo_stream.IMAGE_TOPIC == demo_stream.CAMERA.topic("/image_raw")
    args = Namespace(provider_topic="")
    for entry in IMAGE_MESSAGES.values():
        assert providers.topics(args, "/ns", entry)["image_topic"] == entry.topic("/ns/image_raw")


# ---- one owner -------------------------------------------------------------------------------

OWNERS = {"duse_ros/io/images.py", "duse_ros/io/audio.py"}  # the message families' tables
# Files that may name a family type by hand, and why.
ALLOWED = {
    "benchmarks/bench_preprocess.py": "times the conversions themselves on hand-built messages",
}
FAMILY_TYPES = set(IMAGE_MESSAGES) | set(AUDIO_MESSAGES)
TRANSPORT_TOPIC = re.compile(r"\S*/compressed")  # image_transport's topic of a transport, by hand


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def hand_copies(path: Path, root: Path = ROOT) -> list[str]:
    """Code (not prose) naming a family type, the compressed transport's topic or the
    CompressedImage class by hand: string constants that are exactly one of those names."""
    tree = ast.parse(path.read_text())
    prose = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            if node.value in FAMILY_TYPES or TRANSPORT_TOPIC.fullmatch(node.value):
                found.append(f"{path.relative_to(root)}:{node.lineno}: {node.value!r}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").endswith("_msgs.msg"):
            for alias in node.names:
                # Image itself is also what the nodes publish (debug view, ROS4HRI crops)
                if any(t.endswith(f"/{alias.name}") for t in FAMILY_TYPES) and alias.name != "Image":
                    found.append(f"{path.relative_to(root)}:{node.lineno}: imports {alias.name}")
    return found


def test_no_module_names_a_message_family_by_hand():
    files = [p for tree in ("duse_ros", "benchmarks", "scripts", "training") for p in (ROOT / tree).rglob("*.py")]
    found = [line for p in files if str(p.relative_to(ROOT)) not in OWNERS | set(ALLOWED) for line in hand_copies(p)]
    assert not found, "name the type through its table (io/images.py, io/audio.py):\n" + "\n".join(found)


def test_the_hand_copy_check_finds_planted_copies(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text(
        '"""Docs may say sensor_msgs/msg/CompressedImage and image_raw/compressed."""\n'
        "from sensor_msgs.msg import CompressedImage, Image\n"
        'A = "sensor_msgs/msg/CompressedImage"\n'
        'B = f"{base}/compressed"\n'
        'C = "/image_raw/compressed"\n'
        'D = "audio_common_msgs/msg/AudioStamped"\n'
        'E = "subscribe to image_raw/compressed (sensor_msgs/CompressedImage)"\n'
    )
    found = [line.split(": ", 1)[1] for line in hand_copies(planted, tmp_path)]
    assert sorted(found) == sorted(
        [
            "imports CompressedImage",
            "'sensor_msgs/msg/CompressedImage'",
            "'/compressed'",
            "'/image_raw/compressed'",
            "'audio_common_msgs/msg/AudioStamped'",
        ]
    )

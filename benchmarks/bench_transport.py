"""Frames per second that reach affect_node, raw and compressed, with and without the launch
files' Fast DDS profile (config/fastdds_large_shm.xml, an 8 MB shared-memory segment).

For each profile (Fast DDS's default, then the large segment), each transport (sensor_msgs/Image
bgr8, sensor_msgs/CompressedImage JPEG), each size (640x480, 1280x720) and each rate (15, 30 fps):
a publisher process streams frames of the bundled portrait at that rate for `--seconds` with the
node's default QoS (best effort, depth 5) into the real affect_node (its own process, the default
model), both started with the profile under test. The delivered rate is the node's own count:
its /diagnostics `input.image_fps` (a 5 s rate meter), the median of the readings after the
first `--warmup` seconds. Printed: offered fps, delivered fps, and their ratio.

Usage: python benchmarks/bench_transport.py [--seconds 12] [--warmup 6] [--sizes 640x480 1280x720]
                                            [--rates 15 30] [--kinds raw compressed]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from duse_ros.affect import diagnostics as diag  # noqa: E402
from duse_ros.io.images import image_message  # noqa: E402
from duse_ros.timebase import NS  # noqa: E402

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", "64")
PROFILE = ROOT / "config" / "fastdds_large_shm.xml"


def publish(kind: str, width: int, height: int, fps: float, seconds: float) -> None:
    """--publish: stream frames once the node subscribes (runs in its own process)."""
    import cv2
    import numpy as np
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from std_msgs.msg import Header

    from duse_ros.nodes.common import message_class

    face = cv2.imread(str(ROOT / "duse_ros" / "data" / "astronaut.jpg"))
    canvas = np.full((height, width, 3), 90, np.uint8)
    side = min(height, width) * 3 // 4
    canvas[:side, :side] = cv2.resize(face, (side, side))
    rclpy.init()
    node = rclpy.create_node("bench_transport_camera")
    image = image_message(kind == "compressed")  # what the node subscribes to with image_compressed
    cls = message_class(image.type_name)
    pub = node.create_publisher(cls, image.topic("image_raw"), qos_profile_sensor_data)
    msg = image.build({image.type_name: cls}, Header(frame_id="camera"), canvas[..., ::-1], 95)
    deadline = time.monotonic() + 60
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    start = time.monotonic()
    for i in range(int(seconds * fps)):
        due = start + i / fps
        while (wait := due - time.monotonic()) > 0:
            time.sleep(wait)
        t = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = t // NS, t % NS
        pub.publish(msg)
    node.destroy_node()
    rclpy.shutdown()


def measure(kind: str, width: int, height: int, fps: float, seconds: float, warmup: float, profile: bool) -> float:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray

    env = dict(os.environ)
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    if profile:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(PROFILE)
    image = image_message(kind == "compressed")
    params = {"image_compressed": image.compressed, "diagnostics_period_s": 0.5}
    node_cmd = [sys.executable, "-m", "duse_ros.nodes.affect_node", "--ros-args"]
    for name, value in params.items():
        node_cmd += ["-p", f"{name}:={str(value).lower()}"]
    node = subprocess.Popen(node_cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=ROOT)
    readings: list[float] = []
    peer = rclpy.create_node("bench_transport_listener")
    started: list[float] = []

    def on_diagnostics(arr: DiagnosticArray) -> None:
        values = diag.affect_values(arr.status)
        if values is not None and started and time.monotonic() - started[0] > warmup:
            readings.append(float(values.get(diag.IMAGE_FPS, "nan")))

    peer.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    pub_cmd = [sys.executable, __file__, "--publish", json.dumps([kind, width, height, fps, seconds])]
    publisher = subprocess.Popen(pub_cmd, env=env, cwd=ROOT)
    try:
        while publisher.poll() is None:
            if not started and peer.count_publishers(image.topic("image_raw")):
                started.append(time.monotonic())
            rclpy.spin_once(peer, timeout_sec=0.1)
    finally:
        for proc in (publisher, node):
            if proc.poll() is None:
                proc.send_signal(2)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        peer.destroy_node()
    return statistics.median(readings) if readings else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--publish", help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--warmup", type=float, default=6.0)
    ap.add_argument("--sizes", nargs="+", default=["640x480", "1280x720"])
    ap.add_argument("--rates", nargs="+", type=float, default=[15.0, 30.0])
    ap.add_argument("--kinds", nargs="+", default=["raw", "compressed"], choices=["raw", "compressed"])
    args = ap.parse_args(argv)
    if args.publish:
        publish(*json.loads(args.publish))
        return 0
    import rclpy

    rclpy.init()
    print(f"{'profile':<16} {'kind':<11} {'size':>9} {'offered':>8} {'delivered':>10} {'ratio':>6}")
    try:
        for profile in (False, True):
            for kind in args.kinds:
                for size in args.sizes:
                    width, height = (int(v) for v in size.split("x"))
                    for fps in args.rates:
                        got = measure(kind, width, height, fps, args.seconds, args.warmup, profile)
                        print(
                            f"{'large_shm (8MB)' if profile else 'Fast DDS default':<16} {kind:<11} {size:>9} "
                            f"{fps:8.1f} {got:10.1f} {got / fps:6.2f}",
                            flush=True,
                        )
    finally:
        rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

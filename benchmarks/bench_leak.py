"""Allocation profile: affect_node in a process of its own with Python's tracemalloc on
(leak_profiled_node.py), fed a live-stamped camera stream over DDS. After a warm-up it pauses the
stream, waits until the node's /diagnostics say every window was answered or dropped, has the node
write a heap snapshot (SIGUSR1), streams on, does the same again and prints how much the
Python-level allocations grew in between and where (the top sites, with tracebacks).

bench_soak.py sees RSS, which moves by tens of MB within seconds as frames, crops and clips come
and go; this sees what outlives its window. Growth in RSS with none here is native (DDS, allocator
arenas, torch). tracemalloc slows Python down, so the node drops more windows than it would.
Like every benchmark it talks to the node only as a process: topics, diagnostics, a signal.

    python benchmarks/bench_leak.py                          # 60 s warm-up, 240 s measured, default model
    python benchmarks/bench_leak.py --model duse-vitb32-normal --measure-s 120
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import tempfile
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(10, 100)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from live_camera import LiveCamera, add_stream_arguments  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from duse_ros.affect import diagnostics as diag  # noqa: E402
from duse_ros.msg import EmotionState  # noqa: E402
from duse_ros.tools.processes import NodeProcess, NodeWaitError, spin_until  # noqa: E402

HERE = Path(__file__).resolve().parent
DONE = ("completed", "errors", "dropped_queue_full", "dropped_stale", "dropped_shutdown")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warmup-s", type=float, default=60.0)
    ap.add_argument("--measure-s", type=float, default=240.0)
    add_stream_arguments(ap)
    ap.add_argument("--top", type=int, default=8, help="growth sites to print")
    args = ap.parse_args()

    snapshot_path = Path(tempfile.mkdtemp(prefix="bench_leak_")) / "heap.snapshot"
    params: dict[str, object] = {"face_mode": "full_frame", "qos.reliability": "reliable", "diagnostics_period_s": 0.5}
    if args.model:
        params["model"] = args.model
    node = NodeProcess(
        str(HERE / "leak_profiled_node.py"), params, env={**os.environ, "DUSE_LEAK_SNAPSHOT": str(snapshot_path)}
    )
    rclpy.init()
    camera = rclpy.create_node("bench_leak_camera")
    pub = camera.create_publisher(Image, "image_raw", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    readings = [0]
    camera.create_subscription(EmotionState, "emotion_state", lambda msg: readings.__setitem__(0, readings[0] + 1), 10)
    latest: dict[str, str] = {}

    def on_diagnostics(msg: DiagnosticArray) -> None:
        values = diag.affect_values(msg.status)
        if values is not None:
            latest.clear()
            latest.update(values)

    camera.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    source = LiveCamera(args.width, args.height)
    sent = [0]

    def wait_for(condition, timeout: float, what: str) -> None:
        try:
            spin_until(condition, lambda: rclpy.spin_once(camera, timeout_sec=0.05), timeout, what, node)
        except NodeWaitError as e:
            raise SystemExit(str(e)) from None

    def stream(seconds: float) -> None:
        start, first = time.monotonic(), sent[0]
        while time.monotonic() - start < seconds:
            pub.publish(source.frame(sent[0]))
            sent[0] += 1
            rclpy.spin_once(camera, timeout_sec=0.0)
            time.sleep(max(0.0, start + (sent[0] - first) / args.fps - time.monotonic()))

    def settled() -> bool:
        if "inference.submitted" not in latest:
            return False
        done = sum(int(latest[f"inference.{k}"]) for k in DONE)
        return int(latest["inference.submitted"]) == done

    def settled_snapshot() -> tracemalloc.Snapshot:
        """A snapshot once the stream has paused and every window is answered or dropped (two
        diagnostics in a row say so), so clips in flight do not read as growth."""
        latest.clear()
        wait_for(settled, 60, "every window answered")
        latest.clear()
        wait_for(settled, 60, "every window answered, twice")
        snapshot_path.unlink(missing_ok=True)
        node.proc.send_signal(signal.SIGUSR1)
        wait_for(snapshot_path.exists, 60, "the node's heap snapshot")
        return tracemalloc.Snapshot.load(str(snapshot_path))

    try:
        wait_for(lambda: pub.get_subscription_count() > 0 and "inference.submitted" in latest, 120, "the node")
        stream(args.warmup_s)
        before, readings_before = settled_snapshot(), readings[0]
        stream(args.measure_s)
        after = settled_snapshot()
        measured = readings[0] - readings_before
        stats = after.compare_to(before, "traceback")
        grown = sum(s.size_diff for s in stats)
        print(
            f"{sent[0]} frames sent, {measured} readings in the {args.measure_s:g} s measured; Python "
            f"allocations grew by {grown / 1024:+.1f} KB ({grown / max(measured, 1):+.0f} B per reading)"
        )
        for s in stats[: args.top]:
            print(f"\n{s.size_diff / 1024:+.1f} KB in {s.count_diff:+d} blocks")
            for line in s.traceback.format()[-6:]:
                print(f"  {line}")
    finally:
        node.stop()
        camera.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()

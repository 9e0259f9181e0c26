"""Allocation profile: affect_node in this process, fed a live-stamped camera stream over DDS, with
Python's tracemalloc on. After a warm-up it pauses the stream, lets the node answer what it has,
takes a snapshot, streams on, does the same again and prints how much the Python-level
allocations grew in between and where (the top sites, with tracebacks).

bench_soak.py sees RSS, which moves by tens of MB within seconds as frames, crops and clips come
and go; this sees what outlives its window. Growth in RSS with none here is native (DDS, allocator
arenas, torch). tracemalloc slows Python down, so the node drops more windows than it would.

    python benchmarks/bench_leak.py                          # 60 s warm-up, 240 s measured, default model
    python benchmarks/bench_leak.py --model duse-vitb32-normal --measure-s 120
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import threading
import time
import tracemalloc

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(10, 100)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import rclpy  # noqa: E402
from live_camera import LiveCamera, add_stream_arguments  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from duse_ros.msg import EmotionState  # noqa: E402
from duse_ros.nodes.affect_node import AffectNode  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warmup-s", type=float, default=60.0)
    ap.add_argument("--measure-s", type=float, default=240.0)
    add_stream_arguments(ap)
    ap.add_argument("--top", type=int, default=8, help="growth sites to print")
    args = ap.parse_args()

    tracemalloc.start(16)
    rclpy.init()
    overrides = [Parameter("face_mode", value="full_frame"), Parameter("qos.reliability", value="reliable")]
    if args.model:
        overrides.append(Parameter("model", value=args.model))
    node = AffectNode(parameter_overrides=overrides)
    camera = rclpy.create_node("bench_leak_camera")
    pub = camera.create_publisher(Image, "image_raw", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    readings = [0]
    camera.create_subscription(EmotionState, "emotion_state", lambda msg: readings.__setitem__(0, readings[0] + 1), 10)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(camera)
    threading.Thread(target=executor.spin, daemon=True).start()
    source = LiveCamera(args.width, args.height)
    sent = [0]

    def stream(seconds: float) -> None:
        start, first = time.monotonic(), sent[0]
        while time.monotonic() - start < seconds:
            pub.publish(source.frame(sent[0]))
            sent[0] += 1
            time.sleep(max(0.0, start + (sent[0] - first) / args.fps - time.monotonic()))

    def settled_snapshot() -> tracemalloc.Snapshot:
        """A snapshot once the stream has paused and every window is answered or dropped, so
        clips in flight do not read as growth."""
        engine = node._pipeline.engine
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            s = engine.stats.snapshot()
            done = s.completed + s.errors + s.dropped_queue_full + s.dropped_stale + s.dropped_shutdown
            if s.pending == 0 and s.in_flight == 0 and s.submitted == done:
                break
            time.sleep(0.05)
        time.sleep(0.5)  # the reading's publish and the worker's return, after the counters
        gc.collect()
        return tracemalloc.take_snapshot()

    try:
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
        executor.shutdown(timeout_sec=5)
        node.close()
        node.destroy_node()
        camera.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()

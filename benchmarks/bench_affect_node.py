"""The affect node's own cost: latency on top of the model's forward, and memory over a long stream.

Everything runs through the real node code (duse_ros.nodes.affect_node, model tiny-random-video:
random weights, a small real PyTorch net) in its own process, over loopback Fast DDS, fed
640x480 bgr8 frames built from the bundled portrait (duse_ros/data/astronaut.jpg) on a grey
canvas, swaying slowly so the face detector tracks a face that moves.

0. Transport floor, real time (`--baseline-s`). The same frames at 30 fps into a trivial echo
   node (this file run with --frame-echo, spun by the same run_node as affect_node) that
   publishes each frame's header back: what DDS and rclpy alone cost for "frame in, small
   message out" between two Python processes on this machine.
1. Latency, real time (`--duration` s per face mode; detect, then full_frame). Frames go out at
   30 fps, each stamped with this process's wall clock at publish (time.time_ns(), the ROS system
   clock), into the node's default QoS (best effort, depth 5). The node is
   `python -m duse_ros.nodes.affect_node`, untouched: everything here goes through its public
   topics. Per EmotionState with a reading:
       forward              = its inference_latency (the model's forward, as the engine timed it)
       overhead to receipt  = (received here - window_end stamp) - forward
                              window_end is the stamp of the newest frame; this includes the
                              frame's hop in (a 0.9 MB frame through DDS into the node's callback)
                              and the EmotionState's hop back, so it bounds the overhead to
                              publish from above.
   The first `--warmup-s` of stream are left out.
2. Memory, data time faster than real time (`--stream-min` minutes of stream, default 10). The
   same 30 fps stream, stamps 1/30 s apart, published as fast as the node keeps up, but at
   most `--max-speed` times real time (default 5, so that the 5 Hz face keyframes keep up and
   windows carry faces, crops and forwards rather than no-face states): reliable QoS (depth 100
   both ends) and the publisher stays at most `--lead-s` of data time ahead of the newest
   EmotionState, so no frame is dropped (checked against the node's frames_in). face_mode
   detect, the mode with more state. VmRSS and VmHWM (peak) of the node
   process are read from /proc at every minute of stream time; growth = peak at the end / peak
   at 1 min. DDS faster than real time works here, so the node process itself is measured, not
   the in-process AffectPipeline.

Fast DDS's shared-memory transport has a 512 KB segment by default; best-effort samples larger
than that (a 640x480 bgr8 frame is 0.9 MB) are lost in large numbers with any subscriber
(rmw_fastrtps issue 739; here about 1 frame in 3 at 30 fps). Unless FASTDDS_DEFAULT_PROFILES_FILE
is already set, every process of this run gets a profile with an 8 MB segment (`--stock-dds`:
Fast DDS's default, to see the loss).

Targets (issue 3): overhead p95 < 10 ms; RSS growth < 5 %. The machine's load average is printed
with each phase: above the core count, rerun before trusting a FAIL.

Usage: python benchmarks/bench_affect_node.py [--duration 45] [--stream-min 10] [--quick]
           [--modes detect full_frame] [--torch-threads N] [--stock-dds]
           [--skip-latency] [--skip-memory]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# This file is also the echo node of part 0.
FRAME_ECHO = "--frame-echo" in sys.argv

# DDS stays on this machine, on a domain of this benchmark's own (the nodes it starts inherit
# it), before rclpy loads.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
if not FRAME_ECHO:
    os.environ["ROS_DOMAIN_ID"] = str(random.Random(f"bench-affect-{os.getpid()}").randint(10, 100))
os.environ["HF_HUB_OFFLINE"] = "1"

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from duse_ros.affect import diagnostics as diag  # noqa: E402
from duse_ros.affect.settings import DEFAULTS as AFFECT_DEFAULTS  # noqa: E402
from duse_ros.io.samples import load_sample_face  # noqa: E402
from duse_ros.msg import EmotionState  # noqa: E402
from duse_ros.nodes.common import run_node, sensor_qos, stamp_to_ns  # noqa: E402
from duse_ros.timebase import NS  # noqa: E402
from duse_ros.tools.processes import NodeProcess, spin_until  # noqa: E402

WIDTH, HEIGHT, FPS = 640, 480, 30.0
MODEL = "tiny-random-video"
OVERHEAD_P95_TARGET_MS = 10.0
RSS_GROWTH_TARGET = 0.05
NAMESPACE = f"/bench_affect_{os.getpid()}"  # topics of this run only, whatever else shares the domain

LARGE_SHM_PROFILE = ROOT / "config" / "fastdds_large_shm.xml"  # the profile users are told to use


def set_stamp(msg: Image, ns: int) -> None:
    msg.header.stamp.sec, msg.header.stamp.nanosec = ns // NS, ns % NS


# ---------------------------------------------------------------------------------------------- the child roles
class FrameEcho(Node):
    """Publishes every frame's header back as soon as rclpy hands the frame over."""

    def __init__(self):
        super().__init__("bench_frame_echo")
        self._pub = self.create_publisher(Header, "frame_echo", sensor_qos("reliable", 100))
        self.create_subscription(
            Image, "image_raw", lambda msg: self._pub.publish(msg.header), sensor_qos("best_effort", 5)
        )


# ---------------------------------------------------------------------------------------------- this side
def make_frames(count: int = 60) -> list[Image]:
    """`count` pre-built 640x480 bgr8 messages: the portrait (420 px, face ~80 px) swaying +-40 px
    over `count` frames. Only the stamp changes at publish time."""
    face = cv2.cvtColor(cv2.resize(load_sample_face(), (420, 420), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR)
    frames = []
    for k in range(count):
        canvas = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
        x = 110 + int(round(40 * math.sin(2 * math.pi * k / count)))
        canvas[30:450, x : x + 420] = face
        msg = Image(height=HEIGHT, width=WIDTH, encoding="bgr8", step=WIDTH * 3, data=canvas.tobytes())
        msg.header.frame_id = "camera"
        frames.append(msg)
    return frames


@dataclass
class Received:
    recv_ns: int  # time.time_ns() in this process's callback
    window_end_ns: int  # EmotionState.window_end, or the echoed frame stamp
    forward_ns: int  # inference_latency (0 for echoes)
    has_reading: bool  # False: a no-face state (no forward ran)


class BenchPeer:
    """This process's side of the wire: publishes frames, timestamps what comes back."""

    def __init__(self, reliability: str, depth: int):
        self.node = rclpy.create_node("bench_affect_peer", namespace=NAMESPACE)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.image_pub = self.node.create_publisher(Image, "image_raw", sensor_qos(reliability, depth))
        self.received: list[Received] = []
        self.newest_end_ns: int | None = None
        self.diagnostics: dict[str, str] = {}
        self.node.create_subscription(EmotionState, "emotion_state", self._on_state, sensor_qos("reliable", 100))
        self.node.create_subscription(Header, "frame_echo", self._on_echo, sensor_qos("reliable", 100))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _add(self, received: Received) -> None:
        self.received.append(received)
        self.newest_end_ns = max(self.newest_end_ns or 0, received.window_end_ns)

    def _on_state(self, msg: EmotionState) -> None:
        recv = time.time_ns()
        self._add(
            Received(recv, stamp_to_ns(msg.window_end), stamp_to_ns(msg.inference_latency), len(msg.probabilities) > 0)
        )

    def _on_echo(self, msg: Header) -> None:
        self._add(Received(time.time_ns(), stamp_to_ns(msg.stamp), 0, True))

    def _on_diagnostics(self, arr: DiagnosticArray) -> None:
        for status in arr.status:
            if status.name.startswith("affect_node:"):
                self.diagnostics = {kv.key: kv.value for kv in status.values}

    def counter(self, suffix: str) -> int | None:
        """A node diagnostics counter by key suffix (topic keys carry the namespace); None if absent."""
        for key, value in self.diagnostics.items():
            if key.endswith(suffix) and value.isdigit():
                return int(value)
        return None

    def spin(self, timeout_s: float) -> None:
        self.executor.spin_once(timeout_sec=max(0.0, timeout_s))

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.spin(0.05)

    def spin_until(self, done, timeout_s: float, what: str, node: NodeProcess) -> None:
        spin_until(done, lambda: self.spin(0.05), timeout_s, what, node)

    def wait_matched_affect_node(self, node: NodeProcess) -> None:
        self.spin_until(
            lambda: self.image_pub.get_subscription_count() > 0 and self.node.count_publishers("emotion_state") > 0,
            60,
            "the affect node to subscribe",
            node,
        )
        # Our writer seeing the node's reader is half of the match; the node's diagnostics say
        # when its reader sees our writer (frames sent before that are lost).
        self.spin_until(
            lambda: (self.counter("image_raw.publishers") or 0) >= 1, 20, "the node to match this publisher", node
        )

    def wait_matched_echo(self, node: NodeProcess, frame: Image) -> None:
        self.spin_until(
            lambda: self.image_pub.get_subscription_count() > 0 and self.node.count_publishers("frame_echo") > 0,
            30,
            "the echo node to subscribe",
            node,
        )
        deadline = time.monotonic() + 20
        while not self.received:  # the echo's reader has matched once a frame comes back
            if time.monotonic() > deadline or not node.alive():
                raise RuntimeError(f"no echo came back:\n{node.output()[-3000:]}")
            set_stamp(frame, time.time_ns())
            self.image_pub.publish(frame)
            self.spin_for(0.1)
        self.spin_for(0.3)
        self.received.clear()
        self.newest_end_ns = None

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


NODE_PARAMS: dict[str, object] = {}  # given to every affect_node this benchmark starts


def start_affect_node(params: dict[str, object]) -> NodeProcess:
    """`python -m duse_ros.nodes.affect_node`, untouched."""
    return NodeProcess(
        "duse_ros.nodes.affect_node", {"model": MODEL, **NODE_PARAMS, **params}, ["-r", f"__ns:={NAMESPACE}"], cwd=ROOT
    )


def start_echo_node() -> NodeProcess:
    return NodeProcess(str(Path(__file__).resolve()), {}, ["-r", f"__ns:={NAMESPACE}", "--", "--frame-echo"])


def proc_status_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def load_text() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f} (1 min) {five:.2f} (5 min) on {os.cpu_count()} cores"


def load_is_high() -> bool:
    return os.getloadavg()[0] > (os.cpu_count() or 1)


def pct(values: np.ndarray) -> tuple[float, float, float]:
    return float(np.percentile(values, 50)), float(np.percentile(values, 95)), float(values.max())


# ---------------------------------------------------------------------------------------------- 0 and 1: real time
@dataclass
class RealTimeRun:
    label: str
    published: int
    wall_s: float
    late_publishes: int  # frames published more than one period after their slot
    frames_seen: int | None  # frames the node's callback saw (affect_node diagnostics, or echoes)
    gap_resets: int | None  # windower resets after > max_gap_s without a frame (lost frames)
    kept: list[Received]  # after the warm-up
    node_cpu_pct: float
    publisher_cpu_pct: float
    load_before: str
    load_after: str
    load_high: bool

    @property
    def readings(self) -> list[Received]:
        return [r for r in self.kept if r.has_reading]

    def rows(self) -> dict[str, np.ndarray]:
        """ms per reading: e2e and overhead to receipt, and the forward."""
        e2e = np.array([(r.recv_ns - r.window_end_ns) / 1e6 for r in self.readings])
        forward = np.array([r.forward_ns / 1e6 for r in self.readings])
        return {"e2e to receipt": e2e, "forward": forward, "overhead to receipt": e2e - forward}


def play_real_time(
    peer: BenchPeer,
    node: NodeProcess,
    frames: list[Image],
    label: str,
    duration_s: float,
    warmup_s: float,
    last_output_within_s: float,
) -> RealTimeRun:
    """Publish `duration_s` of 30 fps frames on schedule, stamped at publish, serving callbacks
    between frames; then wait for what the last frames produce."""
    load_before = load_text()
    period_ns = int(round(NS / FPS))
    total = int(duration_s * FPS)
    late = 0
    cpu0, own0 = proc_cpu_s(node.proc.pid), own_cpu_s()
    start = time.monotonic_ns()
    first_stamp = last_stamp = 0
    for i in range(total):
        due = start + i * period_ns
        while (now := time.monotonic_ns()) < due:
            peer.spin((due - now) / NS)
        if now - due > period_ns:
            late += 1
        msg = frames[i % len(frames)]
        last_stamp = time.time_ns()
        first_stamp = first_stamp or last_stamp
        set_stamp(msg, last_stamp)
        peer.image_pub.publish(msg)
    wall_s = (time.monotonic_ns() - start) / NS
    cpu1, own1 = proc_cpu_s(node.proc.pid), own_cpu_s()
    # Wait for the output of the last frames (after lost frames there may be none: then until
    # nothing new has come for 2 s), then one diagnostics period more, for frames_in.
    peer.spin_until(
        lambda: (
            (peer.newest_end_ns or 0) >= last_stamp - last_output_within_s * NS
            or time.time_ns() - max([r.recv_ns for r in peer.received[-1:]] + [last_stamp]) > 2 * NS
        ),
        15,
        f"{label}: the output of the last frames",
        node,
    )
    peer.spin_for(1.5)
    kept = [r for r in peer.received if r.window_end_ns >= first_stamp + warmup_s * NS]
    if not any(r.has_reading for r in kept):
        raise RuntimeError(f"{label}: nothing came back after the warm-up:\n{node.output()[-3000:]}")
    return RealTimeRun(
        label=label,
        published=total,
        wall_s=wall_s,
        late_publishes=late,
        frames_seen=peer.counter(diag.FRAMES_IN),
        gap_resets=peer.counter(diag.GAP_RESETS),
        kept=kept,
        node_cpu_pct=100 * (cpu1 - cpu0) / wall_s,
        publisher_cpu_pct=100 * (own1 - own0) / wall_s,
        load_before=load_before,
        load_after=load_text(),
        load_high=load_is_high(),
    )


def measure_echo(frames: list[Image], duration_s: float) -> RealTimeRun:
    node = start_echo_node()
    peer = BenchPeer("best_effort", 5)
    try:
        peer.wait_matched_echo(node, frames[0])
        run = play_real_time(peer, node, frames, "transport floor: echo node", duration_s, 0.0, 0.2)
        run.frames_seen = len(peer.received)  # one echo per frame that arrived
        return run
    finally:
        peer.close()
        node.stop()


def measure_affect_node(mode: str, frames: list[Image], duration_s: float, warmup_s: float) -> RealTimeRun:
    node = start_affect_node({"face_mode": mode})
    peer = BenchPeer("best_effort", 5)
    try:
        peer.wait_matched_affect_node(node)
        run = play_real_time(peer, node, frames, f"affect_node, face_mode {mode}", duration_s, warmup_s, 0.5)
    finally:
        peer.close()
        node.stop()
    return run


def print_real_time(echo: RealTimeRun | None, runs: list[RealTimeRun], torch_threads: str) -> None:
    print(
        f"\n== 1. Node overhead, real time: 640x480 bgr8 at 30 fps into the default QoS (best effort, depth 5); "
        f"model {MODEL} (random weights); torch threads in the node: {torch_threads}"
    )
    for r in ([echo] if echo else []) + runs:
        seen = (
            ""
            if r.frames_seen is None
            else f"; node saw {r.frames_seen} = {r.frames_seen / r.wall_s:.2f} fps ({r.published - r.frames_seen} lost"
            + ("" if r.gap_resets is None else f", {r.gap_resets} gap resets")
            + ")"
        )
        print(
            f"\n   {r.label}: published {r.published} frames in {r.wall_s:.1f} s = {r.published / r.wall_s:.2f} fps "
            f"({r.late_publishes} > 1 period late){seen}"
        )
        kind = "echoes" if r is echo else f"readings, {len(r.kept) - len(r.readings)} no-face states after the warm-up"
        print(
            f"   {len(r.readings)} {kind}; node CPU {r.node_cpu_pct:.0f} %, publisher {r.publisher_cpu_pct:.0f} % "
            f"of a core; {r.load_before} before, {r.load_after} after"
            + ("  [LOAD ABOVE THE CORE COUNT: rerun before trusting this]" if r.load_high else "")
        )
        print(f"   {'ms':<28}{'p50':>8}{'p95':>8}{'max':>8}")
        rows = {"frame in -> echo back": r.rows()["e2e to receipt"]} if r is echo else r.rows()
        for name, values in rows.items():
            print(f"   {name:<28}" + "".join(f"{v:8.2f}" for v in pct(values)))


def overhead_verdicts(runs: list[RealTimeRun]) -> list[tuple[str, str, bool]]:
    """(what, value text, passed) per face mode: the overhead to receipt, an upper bound of the
    overhead to publish (it adds the EmotionState's hop back to this process)."""
    out = []
    for r in runs:
        name = "overhead to receipt"
        p50, p95, _ = pct(r.rows()[name])
        out.append(
            (f"{name}, {r.label.split(', ')[-1]}", f"p50 {p50:.2f} ms, p95 {p95:.2f} ms", p95 < OVERHEAD_P95_TARGET_MS)
        )
    return out


# ---------------------------------------------------------------------------------------------- 2: memory
@dataclass
class MemorySample:
    stream_s: float
    wall_s: float
    rss_kb: int
    hwm_kb: int


@dataclass
class MemoryRun:
    samples: list[MemorySample]
    published: int
    frames_seen: int | None
    readings: int
    no_face: int  # no-face states: far above real time the 5 Hz keyframes fall behind
    wall_s: float
    dropped_queue_full: int | None
    load_before: str
    load_after: str


def measure_memory(frames: list[Image], stream_s: float, early_s: float, lead_s: float, max_speed: float) -> MemoryRun:
    load_before = load_text()
    node = start_affect_node({"face_mode": "detect", "qos.reliability": "reliable", "qos.depth": 100})
    peer = BenchPeer("reliable", 100)
    try:
        peer.wait_matched_affect_node(node)
        base = 1_000 * NS  # data time; unrelated to the wall clock
        total = int(round(stream_s * FPS))
        stamps = [base + int(round(i * NS / FPS)) for i in range(total)]
        lead_ns = int(lead_s * NS)
        first_window_allowance = base + int((2.0 + lead_s) * NS)  # the first window needs ~2 s of frames
        # Every minute, the reference point, and the last window (within a stride of the last frame).
        checkpoints = sorted({early_s, *range(60, int(stream_s), 60), (stamps[-1] - base) / NS - 0.5})
        samples: list[MemorySample] = []
        sent = 0
        start = time.monotonic()
        deadline = start + 30 + stream_s  # never needs real time: this only guards against a hang
        while checkpoints:
            limit = first_window_allowance if peer.newest_end_ns is None else peer.newest_end_ns + lead_ns
            if max_speed > 0:
                limit = min(limit, base + int(max_speed * (time.monotonic() - start) * NS))
            while sent < total and stamps[sent] <= limit:
                msg = frames[sent % len(frames)]
                set_stamp(msg, stamps[sent])
                peer.image_pub.publish(msg)
                sent += 1
                if sent % 8 == 0:
                    peer.spin(0.0)
            peer.spin(0.02)
            while checkpoints and peer.newest_end_ns is not None and peer.newest_end_ns - base >= checkpoints[0] * NS:
                mem = proc_status_kb(node.proc.pid)
                samples.append(
                    MemorySample((peer.newest_end_ns - base) / NS, time.monotonic() - start, mem["VmRSS"], mem["VmHWM"])
                )
                checkpoints.pop(0)
            if not node.alive():
                raise RuntimeError(f"affect_node exited mid-stream:\n{node.output()[-3000:]}")
            if time.monotonic() > deadline:
                newest = None if peer.newest_end_ns is None else (peer.newest_end_ns - base) / NS
                raise RuntimeError(f"stream stalled at frame {sent}/{total} (newest window at {newest} s of stream)")
        wall_s = time.monotonic() - start
        peer.spin_for(1.5)  # one diagnostics period more, for frames_in
        return MemoryRun(
            samples=samples,
            published=sent,
            frames_seen=peer.counter(diag.FRAMES_IN),
            readings=sum(r.has_reading for r in peer.received),
            no_face=sum(not r.has_reading for r in peer.received),
            wall_s=wall_s,
            dropped_queue_full=peer.counter(diag.DROPPED_QUEUE_FULL),
            load_before=load_before,
            load_after=load_text(),
        )
    finally:
        peer.close()
        node.stop()


def print_memory(r: MemoryRun, early_s: float) -> tuple[str, str, bool]:
    last = r.samples[-1]
    print(
        f"\n== 2. Node memory over {last.stream_s / 60:.1f} min of stream (30 fps 640x480, face_mode detect, "
        f"reliable QoS depth 100), replayed at {last.stream_s / r.wall_s:.1f}x real time"
    )
    print(
        f"   published {r.published} frames, node saw {r.frames_seen}; {r.readings} readings and {r.no_face} "
        f"no-face states; {r.dropped_queue_full} windows dropped by the queue"
    )
    print(f"   {r.load_before} before, {r.load_after} after")
    print(f"   {'stream (s)':>10}{'wall (s)':>10}{'VmRSS (MB)':>12}{'VmHWM (MB)':>12}")
    for s in r.samples:
        print(f"   {s.stream_s:10.1f}{s.wall_s:10.1f}{s.rss_kb / 1024:12.1f}{s.hwm_kb / 1024:12.1f}")
    early = next(s for s in r.samples if s.stream_s >= early_s)
    growth_hwm = last.hwm_kb / early.hwm_kb - 1
    growth_rss = last.rss_kb / early.rss_kb - 1
    value = (
        f"peak {early.hwm_kb / 1024:.1f} MB at {early.stream_s:.0f} s -> {last.hwm_kb / 1024:.1f} MB at "
        f"{last.stream_s:.0f} s: {100 * growth_hwm:+.2f} % (VmRSS {100 * growth_rss:+.2f} %)"
    )
    print(f"   {value}")
    return "peak RSS growth", value, growth_hwm < RSS_GROWTH_TARGET


# ---------------------------------------------------------------------------------------------- main
def use_large_shm_segment() -> str:
    """Point every process of this run at a Fast DDS profile with a large SHM segment; say which."""
    if os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        return f"Fast DDS profile from FASTDDS_DEFAULT_PROFILES_FILE={os.environ['FASTDDS_DEFAULT_PROFILES_FILE']}"
    os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(LARGE_SHM_PROFILE)
    return f"Fast DDS profile {LARGE_SHM_PROFILE.relative_to(ROOT)} (8 MB SHM segment)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=45.0, help="real-time stream per face mode, s")
    ap.add_argument("--baseline-s", type=float, default=15.0, help="real-time stream into the echo node, s (0: skip)")
    ap.add_argument("--warmup-s", type=float, default=4.0, help="stream time left out at the start of each mode, s")
    ap.add_argument("--modes", nargs="+", default=["detect", "full_frame"], choices=["detect", "full_frame"])
    ap.add_argument("--stream-min", type=float, default=10.0, help="stream time of the memory run, minutes")
    ap.add_argument("--early-min", type=float, default=1.0, help="the memory run's reference point, minutes")
    ap.add_argument(
        "--lead-s",
        type=float,
        default=1.0,
        help="memory run: how far (data time) the publisher may run ahead of the newest EmotionState",
    )
    ap.add_argument(
        "--max-speed",
        type=float,
        default=5.0,
        help="memory run: at most this many times real time, so that the face thread keeps up and "
        "windows carry faces (0: as fast as the node takes frames)",
    )
    ap.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="the node's torch_threads parameter (0: torch's default, one per core); default: the node's",
    )
    ap.add_argument("--stock-dds", action="store_true", help="Fast DDS's default 512 KB SHM segment (frames get lost)")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke run (~45 s): 4 s floor, 8 s per mode, 40 s of stream; too short for the targets",
    )
    args = ap.parse_args()
    if args.quick:
        args.baseline_s, args.duration, args.warmup_s, args.stream_min, args.early_min = 4.0, 8.0, 3.0, 40 / 60, 10 / 60
    if args.torch_threads is not None:
        NODE_PARAMS["torch_threads"] = args.torch_threads
    torch_threads = str(NODE_PARAMS.get("torch_threads", f"the node's default ({AFFECT_DEFAULTS['torch_threads']})"))
    dds = "Fast DDS defaults (512 KB SHM segment)" if args.stock_dds else use_large_shm_segment()

    t0 = time.monotonic()
    print(
        f"affect_node benchmark: domain {os.environ['ROS_DOMAIN_ID']}, namespace {NAMESPACE}; {dds}; {load_text()}"
        + ("\n[--quick: a smoke run, too short for the targets]" if args.quick else ""),
        flush=True,
    )
    rclpy.init()
    frames = make_frames()
    verdicts: list[tuple[str, str, bool]] = []
    try:
        if not args.skip_latency:
            echo = None
            if args.baseline_s > 0:
                print(f"-- transport floor: {args.baseline_s:.0f} s into the echo node ...", flush=True)
                echo = measure_echo(frames, args.baseline_s)
            runs = []
            for mode in args.modes:
                print(f"-- latency, face_mode {mode}: {args.duration:.0f} s of real-time stream ...", flush=True)
                runs.append(measure_affect_node(mode, frames, args.duration, args.warmup_s))
            print_real_time(echo, runs, torch_threads)
            verdicts += overhead_verdicts(runs)
        if not args.skip_memory:
            pace = f"at most {args.max_speed:g}x real time" if args.max_speed > 0 else "as fast as the node keeps up"
            print(f"\n-- memory: {args.stream_min:.2f} min of stream, {pace} ...", flush=True)
            run = measure_memory(frames, args.stream_min * 60, args.early_min * 60, args.lead_s, args.max_speed)
            verdicts.append(print_memory(run, args.early_min * 60))
    finally:
        rclpy.try_shutdown()
    print(
        f"\n== Summary ({time.monotonic() - t0:.0f} s; {load_text()}; targets: overhead p95 < "
        f"{OVERHEAD_P95_TARGET_MS:.0f} ms, RSS growth < {100 * RSS_GROWTH_TARGET:.0f} %)"
    )
    width = max((len(name) for name, _, _ in verdicts), default=0)
    for name, value, passed in verdicts:
        print(f"   {name:<{width}}  {'PASS' if passed else 'FAIL'}  {value}")
    return 0


if __name__ == "__main__":
    if FRAME_ECHO:
        run_node(FrameEcho)
    else:
        sys.exit(main())

"""Soak: affect_node in its own process fed a live-stamped camera stream for many minutes.

RSS is read once a second. Prints, per minute: the node's RSS (median and highest of that
minute's readings), windows emitted / dropped (queue full, too old), readings published, and
reading age at arrival (now - window_end) p50/p95. At the end: RSS growth between minute 1 and the
last minute, by the minutes' medians (target < 5 %) and by their peaks. A single reading is a poor
measure: RSS moves by tens of MB within seconds as frames, crops and queued clips come and go.
`--out DIR` writes every reading (rss.csv) and a plot (rss.png).

    python benchmarks/bench_soak.py                      # 10 minutes at 30 fps, the node's default model
    python benchmarks/bench_soak.py --minutes 2 --model duse-vitb16-normal --out /tmp/soak
    python benchmarks/bench_soak.py --minutes 1 --faces 4   # 4 faces: the detector and 4 readings a window
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(10, 100)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from live_camera import LiveCamera, add_stream_arguments  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from duse_ros.affect import diagnostics as diag  # noqa: E402
from duse_ros.msg import EmotionState  # noqa: E402
from duse_ros.timebase import NS  # noqa: E402
from duse_ros.tools.processes import NodeProcess  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    add_stream_arguments(ap)
    ap.add_argument(
        "--face-mode", default="full_frame", help="full_frame (default: a synthetic image has no face) or detect"
    )
    ap.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE", help="more node parameters")
    ap.add_argument("--out", type=Path, help="write rss.csv (one reading a second) and rss.png here")
    args = ap.parse_args()

    params: dict[str, object] = {"face_mode": args.face_mode, "qos.reliability": "reliable", "qos.depth": 10}
    if args.faces:  # faces in the picture: detect them, read every one
        params.update(face_mode="detect", max_faces=args.faces)
    if args.model:
        params["model"] = args.model
    node = NodeProcess("duse_ros.nodes.affect_node", params, [arg for p in args.param for arg in ("-p", p)])

    rclpy.init()
    peer = rclpy.create_node("bench_soak_camera")
    pub = peer.create_publisher(Image, "image_raw", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    ages: list[float] = []
    readings = [0]
    node_values: dict[str, str] = {}

    def on_state(msg: EmotionState) -> None:
        readings[0] += 1
        end = msg.window_end.sec + msg.window_end.nanosec / NS
        ages.append(time.time() - end)

    def on_diag(msg: DiagnosticArray) -> None:
        values = diag.affect_values(msg.status)
        if values is not None:
            node_values.clear()
            node_values.update(values)

    peer.create_subscription(EmotionState, "emotion_state", on_state, 100)
    peer.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    deadline = time.monotonic() + 120
    while pub.get_subscription_count() == 0:
        if not node.alive() or time.monotonic() > deadline:
            sys.exit(f"the node did not subscribe:\n{node.output()[-3000:]}")
        rclpy.spin_once(peer, timeout_sec=0.1)

    camera = LiveCamera(args.width, args.height, faces=args.faces)
    print(
        f"node pid {node.proc.pid}, log {node.log_path}; {args.minutes:g} min at {args.fps:g} fps, "
        f"{args.width}x{args.height} bgr8, {args.faces} faces"
    )
    print(
        f"{'min':>4} {'RSS MB':>8} {'peak MB':>8} {'windows':>8} {'dropped':>8} {'stale':>6} {'readings':>9} "
        f"{'age p50 s':>10} {'age p95 s':>10}"
    )
    period = 1.0 / args.fps
    start = time.monotonic()
    next_frame, next_report, next_rss, minute = start, start + 60.0, start, 0
    samples: list[tuple[float, float]] = []  # (s since start, RSS MB), once a second
    minute_rss: list[float] = []
    medians: list[float] = []
    peaks: list[float] = []
    i = 0
    try:
        while minute < int(round(args.minutes)):
            now = time.monotonic()
            if now >= next_frame:
                pub.publish(camera.frame(i))
                i += 1
                next_frame += period
                if next_frame < now - 1.0:  # fell far behind (a loaded machine): do not burst
                    next_frame = now
            if now >= next_rss:
                samples.append((now - start, rss_mb(node.proc.pid)))
                minute_rss.append(samples[-1][1])
                next_rss += 1.0
            if now >= next_report or now - start >= args.minutes * 60 - 0.05:
                minute += 1
                medians.append(float(np.median(minute_rss)) if minute_rss else rss_mb(node.proc.pid))
                peaks.append(max(minute_rss, default=medians[-1]))
                minute_rss.clear()
                p50, p95 = np.percentile(ages, [50, 95]) if ages else (float("nan"),) * 2
                print(
                    f"{minute:>4} {medians[-1]:>8.0f} {peaks[-1]:>8.0f} {node_values.get('window.windows_emitted', '?'):>8} "
                    f"{node_values.get(diag.DROPPED_QUEUE_FULL, '?'):>8} {node_values.get('inference.dropped_stale', '?'):>6} "
                    f"{readings[0]:>9} {p50:>10.2f} {p95:>10.2f}",
                    flush=True,
                )
                ages.clear()
                next_report += 60.0
            if not node.alive():
                sys.exit(f"the node exited:\n{node.output()[-3000:]}")
            rclpy.spin_once(peer, timeout_sec=max(0.0, min(next_frame, next_report, next_rss) - time.monotonic()))
    finally:
        code = node.stop(timeout=60)
        peer.destroy_node()
        rclpy.shutdown()
        # Also when the run ends early (the node died, Ctrl-C): what was measured is kept.
        if args.out is not None and samples:
            write_rss(
                args.out,
                samples,
                medians,
                f"{args.model or 'default model'}, {args.fps:g} fps" + (f", {args.faces} faces" if args.faces else ""),
            )
    sent_fps = i / (time.monotonic() - start)
    print(f"frames sent: {i} ({sent_fps:.1f} fps); node exit code {code}")
    # Where a reading's age goes, by the node's own last diagnostics: the forward, then the rest.
    print(
        "node's last diagnostics: forward p50/p95 "
        f"{node_values.get('inference.latency_p50_ms', '?')}/{node_values.get('inference.latency_p95_ms', '?')} ms, "
        "window complete -> reading p50/p95 "
        f"{node_values.get('pipeline.window_to_reading_p50_ms', '?')}/"
        f"{node_values.get('pipeline.window_to_reading_p95_ms', '?')} ms"
    )
    if len(medians) >= 2:
        for what, series, target in (("median", medians, "; target < +5%"), ("peak", peaks, "")):
            growth = (series[-1] - series[0]) / series[0]
            print(
                f"RSS {what} minute 1 -> minute {len(series)}: {series[0]:.0f} -> {series[-1]:.0f} MB "
                f"({growth:+.1%}{target})"
            )


def write_rss(out: Path, samples: list[tuple[float, float]], medians: list[float], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from duse_ros.metrics import save_figure

    out.mkdir(parents=True, exist_ok=True)
    (out / "rss.csv").write_text("t_s,rss_mb\n" + "".join(f"{t:.1f},{r:.1f}\n" for t, r in samples))
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot([t / 60 for t, _ in samples], [r for _, r in samples], lw=0.8, label="RSS, once a second")
    ax.stairs(medians, range(len(medians) + 1), baseline=None, color="C3", lw=1.5, label="median of each minute")
    ax.set_xlabel("minutes")
    ax.set_ylabel("RSS (MB)")
    ax.set_title(f"affect_node soak: {title}")
    ax.legend(loc="lower right")
    print(f"wrote {out / 'rss.csv'} and {save_figure(fig, out / 'rss.png')}")


if __name__ == "__main__":
    main()

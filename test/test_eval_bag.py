"""duse-eval-bag end to end: the real affect_node and llm_bridge_node in their own processes, the
tool in another, over loopback DDS. Models are tiny and random: the tests check that the report
agrees with the recorded EmotionStates, that no window is lost, and the replay's timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from bag_fixtures import write_robot_bag, write_video
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CompressedImage

from duse_ros.io.labels import read_labels_csv
from duse_ros.io.rosbag import LABEL_TOPIC, BagFile
from duse_ros.timebase import NS
from duse_ros.tools.make_bag import DEFAULT_ORIGIN_S
from duse_ros.tools.make_bag import main as make_bag

ROOT = Path(__file__).resolve().parents[1]


def eval_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "duse_ros.tools.eval_bag", *map(str, args), "-q", "--startup-timeout-s", "60"]


def _ns(t) -> int:
    return int(t.sec) * NS + int(t.nanosec)


def test_report_matches_a_hand_computation_from_the_recorded_states(tmp_path):
    video = tmp_path / "talk.mov"
    write_video(video, seconds=6.0, fps=15)
    labels = tmp_path / "labels.csv"
    labels.write_text("start,end,label\n0,3.2,happiness\n3.2,4.4,sadness\n4.4,6.0,anger\n")
    assert make_bag([str(video), "-o", str(tmp_path / "bag"), "--labels", str(labels), "-q"]) == 0
    out = tmp_path / "eval"
    done = subprocess.run(
        eval_cmd(
            tmp_path / "bag",
            "--model",
            "tiny-random-av",
            "--face-mode",
            "full_frame",
            "--out",
            out,
            # A random-weight model is never confident and its label may change every window, so
            # with the bridge's usual threshold and dwell no prompt need come. Here any reading
            # counts and holds at once: the first reading is a change the bridge must prompt for.
            *("--bridge-param", "min_confidence=0.0", "--bridge-param", "hysteresis=0.0"),
            *("--bridge-param", "dwell_s=0.0"),
        ),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:] + (out / "affect_node.log").read_text()[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert (out / "confusion.png").stat().st_size > 0 and (out / "timeline.png").stat().st_size > 0

    with BagFile(out / "output_bag") as bag:
        states = [bag.deserialize(raw, ty) for _, ty, _, raw in bag.messages(["/duse_eval/emotion_state"])]
        prompts = list(bag.messages(["/duse_eval/dialogue_prompt"]))
        assert [d for _, _, _, d in bag.messages([LABEL_TOPIC])]  # the labels travel with the outputs
    # Every window the stream holds came back, one every 0.5 s of stream, none lost.
    ends = np.array([_ns(s.window_end) for s in states])
    assert report["windows"] == report["windows_received"] == len(states) and report["dropped"] == 0
    assert len(states) >= 8 and np.all(np.abs(np.diff(ends) / NS - 0.5) <= 1 / 15 + 1e-6)
    assert all(s.modality == 3 and s.frames_used == 16 and s.audio_samples_used > 0 and s.untrained for s in states)
    assert report["dialogue_prompts"] == len(prompts) >= 1
    assert report["frames_sent"] == report["frames_received_by_node"] == 90 and report["frames_lost"] == 0
    assert report["audio_messages_received_by_node"] == report["audio_messages_sent"] > 0
    assert report["accounting"]["balanced"] and report["accounting"]["answered_with_reading"] == len(states)

    # By hand: each window's truth is the span holding its midpoint; prediction = label.
    spans = read_labels_csv(labels, origin_ns=DEFAULT_ORIGIN_S * NS)
    pairs = []
    for s in states:
        mid = (_ns(s.window_start) + _ns(s.window_end)) // 2
        truth = next(sp.label for sp in spans if sp.start_ns <= mid < sp.end_ns)
        pairs.append((truth, s.label))
    truths = sorted({t for t, _ in pairs})
    recall = {c: sum(1 for t, p in pairs if t == c and p == c) / sum(1 for t, _ in pairs if t == c) for c in truths}
    assert report["windows_scored"] == len(pairs)
    assert report["war"] == pytest.approx(sum(t == p for t, p in pairs) / len(pairs))
    assert report["uar"] == pytest.approx(sum(recall.values()) / len(recall))
    assert {c: r for c, r in report["per_class_recall"].items() if r is not None} == pytest.approx(recall)
    assert set(truths) == {"happiness", "sadness", "anger"}
    # End-to-end latency covers at least the model's forward pass.
    assert report["latency_ms_p95"] >= report["latency_ms_p50"] >= report["inference_ms_p50"] > 0


def test_realtime_replay_keeps_the_stream_timing(tmp_path):
    """A robot bag (CompressedImage, audio_common AudioStamped, unknown topics) at recorded speed:
    this process listens beside the nodes and compares arrival times with the recorded ones."""
    info = write_robot_bag(tmp_path / "robot", "sqlite3", "compressed", "audio_stamped", seconds=4.0)
    rclpy.init()
    node = rclpy.create_node("timing_listener")
    arrivals, clock = [], []
    node.create_subscription(
        CompressedImage,
        "/duse_eval/image_raw/compressed",
        lambda m: arrivals.append((time.monotonic(), _ns(m.header.stamp))),
        QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE),
    )
    node.create_subscription(Clock, "/duse_eval/clock", lambda m: clock.append(_ns(m.clock)), 100)
    out = tmp_path / "eval"
    proc = subprocess.Popen(
        eval_cmd(
            tmp_path / "robot",
            "--model",
            "tiny-random-av",
            "--face-mode",
            "full_frame",
            "--realtime",
            "--no-bridge",
            "--image-subscribers",
            "2",
            "--namespace",
            "/duse_eval",  # the run's topics where this listener expects them
            "--out",
            out,
        ),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
    finally:
        node.destroy_node()
        rclpy.shutdown()
        if proc.poll() is None:
            proc.kill()
    stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "realtime" and report["frames_sent"] == info["frames"] == len(arrivals)
    assert report["audio_messages_sent"] == info["audio_messages"] and report["audio_messages_unconvertible"] == 0
    assert report["windows"] == report["windows_received"] >= 4 and report["dropped"] == 0
    wall = np.array([a for a, _ in arrivals]) - arrivals[0][0]
    stream = (np.array([s for _, s in arrivals]) - arrivals[0][1]) / NS
    # Paced by the recording (slope 1 of arrival time on stream time; as fast as possible would be
    # near 0), each frame within a tolerance of its due time for a loaded machine. A fit, not the
    # first frame, sets the offset: one late first arrival must not skew every comparison.
    slope, offset = np.polyfit(stream, wall, 1)
    assert 0.9 <= slope <= 1.1, slope
    assert np.percentile(np.abs(wall - stream - np.median(wall - stream)), 95) < 0.25
    # /clock carried bag time up to the last message.
    assert max(clock) >= info["start_ns"] + int(3.9 * NS) and clock == sorted(clock)

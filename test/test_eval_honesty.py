"""duse-eval-bag never lies: the same bag gives the same report with face detection on (runs two
at a time, on one DDS domain, so each run's isolation is tested too); a bag the node cannot
read stops early with the reason instead of waiting a minute per window; every offered window
is accounted for; no score is reported when none could be computed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from bag_fixtures import header, write_video

from duse_ros.io.labels import Span
from duse_ros.io.rosbag import BagWriter, typestore
from duse_ros.timebase import NS
from duse_ros.tools import eval_bag
from duse_ros.tools.make_bag import main as make_bag

ROOT = Path(__file__).resolve().parents[1]
RUNS = 10


def eval_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "duse_ros.tools.eval_bag", *map(str, args), "-q", "--startup-timeout-s", "90"]


def _readings(out: Path) -> list[tuple]:
    """(window end, label, face found, rounded probabilities) of every EmotionState written."""
    from duse_ros.io.rosbag import BagFile

    with BagFile(out / "output_bag") as bag:
        states = [bag.deserialize(raw, ty) for _, ty, _, raw in bag.messages(["/duse_eval/emotion_state"])]
    return [
        (
            int(s.window_end.sec) * NS + int(s.window_end.nanosec),
            s.label,
            bool(s.face_found),
            tuple(np.round(np.asarray(s.probabilities, float), 4)),
        )
        for s in states
    ]


# Ten evaluations, each starting its own affect_node (most of the ~20 s a run takes on a loaded
# 2-core machine is that start): more than the suite's 180 s default, by design.
@pytest.mark.timeout(480)
def test_fast_replay_with_face_detection_is_deterministic_and_isolated(tmp_path):
    """The default (trained) model with face detection on a 3 s drifting portrait, ten times, two
    evaluations at once in one domain: every run reports the same windows, faces, labels and
    probabilities, and no run reads the other's states. (Before face detection ran in lockstep
    with a fast replay, this bag read no face at all: UAR 0.0 where the realtime replay read 1.0.)"""
    video = tmp_path / "portrait.mov"
    write_video(video, seconds=3.0, fps=15, size=(320, 240))
    assert make_bag([str(video), "-o", str(tmp_path / "bag"), "--label", "happiness", "-q"]) == 0
    reports, readings = [], []
    for pair in range(RUNS // 2):
        outs = [tmp_path / f"eval{pair}_{k}" for k in range(2)]
        procs = [
            subprocess.Popen(
                eval_cmd(tmp_path / "bag", "--no-bridge", "--out", out, "--param", "torch_threads=1"),
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for out in outs
        ]
        for proc, out in zip(procs, outs):
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-3000:] + (out / "affect_node.log").read_text()[-2000:]
            reports.append(json.loads((out / "report.json").read_text()))
            readings.append(_readings(out))
    first = reports[0]
    acc = first["accounting"]
    assert acc["offered"] == 3 and acc["answered_with_reading"] >= 1, acc  # a face was found
    for report, got in zip(reports, readings):
        assert report["accounting"]["balanced"] and report["accounting"]["states_for_windows_not_offered"] == 0
        assert report["frames_sent"] == report["frames_received_by_node"] == 45 and report["frames_lost"] == 0
        assert got == readings[0]
        assert (report["uar"], report["windows"], report["windows_scored"]) == (
            first["uar"],
            first["windows"],
            first["windows_scored"],
        )


def _corrupt_jpeg_bag(path: Path, seconds: float = 6.0, fps: float = 15.0) -> None:
    store = typestore()
    rng = np.random.default_rng(0)
    start = 1_700_000_000 * NS
    with BagWriter(path, "mcap", store) as bag:
        for i in range(int(seconds * fps)):
            ns = start + int(round(i * NS / fps))
            junk = rng.integers(0, 256, 3000, dtype=np.uint8)
            msg = store.types["sensor_msgs/msg/CompressedImage"](header=header(store, ns), format="jpeg", data=junk)
            bag.write("/image_raw/compressed", ns, msg)


def test_a_bag_the_node_cannot_read_stops_early_with_the_reason(tmp_path):
    """6 s of corrupt JPEGs: every frame is refused by the node, so no window can come. The old
    player waited 60 s for each window (150 s in all); now the run stops once three windows are
    given up, the report says why and where the frames went."""
    _corrupt_jpeg_bag(tmp_path / "bag")
    out = tmp_path / "eval"
    start = time.monotonic()
    done = subprocess.run(
        eval_cmd(tmp_path / "bag", "--model", "tiny-random-video", "--no-bridge", "--out", out),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
    )
    elapsed = time.monotonic() - start
    assert done.returncode == 3, done.stderr[-3000:]
    assert "stopped early: affect_node answered none of the first 3 windows" in done.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["stopped"].startswith("affect_node answered none")
    assert report["uar"] is None and report["uar_reason"]
    assert report["frames_malformed"] == report["frames_sent"] > 0 and report["frames_lost"] == 0
    acc = report["accounting"]
    assert acc["offered"] >= 3 and acc["not_cut_by_node"] == acc["offered"] and acc["balanced"]
    print(f"corrupt 6 s bag: stopped after {elapsed:.1f} s")


def _state(end_s: float, modality: int = 1, label: str = "happiness"):
    def stamp(s):
        return SimpleNamespace(sec=int(s), nanosec=int(round((s % 1) * NS)))

    return SimpleNamespace(
        window_start=stamp(end_s - 2),
        window_end=stamp(end_s),
        label=label,
        smoothed_label="",
        modality=modality,
        probabilities=[1.0],
        inference_latency=SimpleNamespace(sec=0, nanosec=1000),
    )


def test_every_offered_window_is_accounted_for():
    pb = eval_bag.Playback(expected=[k * NS for k in range(2, 8)])  # six windows offered
    pb.given_up = {6 * NS: "no answer", 7 * NS: "idle"}
    states = [_state(2), _state(3, modality=0), _state(4), _state(9)]  # 9 s: never offered
    node = {
        "inference.dropped_queue_full": "1",
        "inference.dropped_stale": "0",
        "inference.errors": "0",
        "window.windows_emitted": "5",
    }
    acc = eval_bag.account(pb, states, node)
    assert acc["offered"] == 6 and acc["answered_with_reading"] == 2 and acc["answered_no_reading"] == 1
    # three missing: one dropped by the node's queue, one the node never cut, one unanswered
    assert (acc["dropped_by_node_queue"], acc["not_cut_by_node"], acc["unanswered"]) == (1, 1, 1)
    assert acc["states_for_windows_not_offered"] == 1 and acc["balanced"]
    assert acc["given_up"] == {str(6 * NS): "no answer", str(7 * NS): "idle"}


def test_no_score_is_reported_when_no_window_could_be_scored(tmp_path):
    classes = ["happiness", "sadness"]
    inputs = SimpleNamespace(
        spans=[Span(100 * NS, 200 * NS, "happiness")],  # far outside the bag
        classes=classes,
        origin=0,
        out_dir=tmp_path,
        model=SimpleNamespace(model_id="m", untrained=False),
    )
    args = SimpleNamespace(smoothed=False)
    out = eval_bag.score_report(inputs, [_state(2), _state(3)], 2, args)
    assert out["uar"] is None and out["war"] is None
    assert "labels cover 100.00 to 200.00 s, windows end between 2.00 and 3.00 s" in out["uar_reason"]
    assert eval_bag.score_report(inputs, [], 0, args)["uar_reason"] == "no offered window was answered by the node"
    inputs.spans = []
    assert "no labels" in eval_bag.score_report(inputs, [_state(2)], 1, args)["uar_reason"]
    inputs.spans = [Span(0, 10 * NS, "happiness")]
    assert eval_bag.score_report(inputs, [_state(2)], 1, args)["uar"] == pytest.approx(1.0)


def test_eval_bag_reads_its_defaults_from_the_parameter_table():
    """Not from the node module (which imports rclpy and torch): the table itself."""
    from duse_ros.affect.settings import DEFAULTS

    args = eval_bag.parse_args(["bag"])
    assert (args.queue_depth, args.span_s, args.stride_s, args.max_gap_s) == (
        DEFAULTS["queue_depth"],
        DEFAULTS["span_s"],
        DEFAULTS["stride_s"],
        DEFAULTS["max_gap_s"],
    )
    assert eval_bag.default_model() == DEFAULTS["model"]
    code = "import sys, duse_ros.tools.eval_bag as e; e.default_model(); print('rclpy' in sys.modules, 'torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["False", "False"], done.stderr


def test_evaluations_claim_a_domain_of_their_own(monkeypatch):
    """Without ROS_DOMAIN_ID, a run holds a domain's lock for its lifetime; another process
    running at the same time gets another domain."""
    monkeypatch.delenv("ROS_DOMAIN_ID")
    mine = eval_bag.claim_domain()
    assert mine in eval_bag.DOMAINS
    code = "from duse_ros.tools import eval_bag; print(eval_bag.claim_domain())"
    env = {k: v for k, v in os.environ.items() if k != "ROS_DOMAIN_ID"}
    other = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert int(other.stdout) in eval_bag.DOMAINS and int(other.stdout) != mine, other.stderr

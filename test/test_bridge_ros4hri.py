"""llm_bridge_node with `input: ros4hri`: hri_msgs/Expression of the faces on /humans/faces/tracked
in, through the same person choice, dwell and hysteresis as EmotionState. Unit tests use stand-in
classes with the upstream fields; the DDS test runs the node and a stand-in provider process with
a test-only build of hri_msgs' messages (test/hri_standin.py), since hri_msgs is not installable here."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from hri_fakes import HRI, Expression, FakeNode, IdsList, NormalizedRegionOfInterest2D
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile

from duse_ros.bridge.core import Bridge
from duse_ros.bridge.prompts import load_templates, template_file_for
from duse_ros.bridge.settings import DEFAULTS, BridgeSettings
from duse_ros.msg import DialoguePrompt
from duse_ros.nodes.hri_io import HriExpressionInput, import_hri_msgs, reading_from_expression
from duse_ros.nodes.llm_bridge_node import ConfigError, LLMBridgeNode
from duse_ros.timebase import NS

ROOT = Path(__file__).resolve().parents[1]


def expression(name: str, t_s: float, confidence: float = 0.9, valence: float = 0.3, arousal: float = -0.2):
    msg = Expression(expression=name, confidence=confidence, valence=valence, arousal=arousal)
    msg.header.stamp = Time(sec=int(t_s), nanosec=int(round((t_s % 1) * NS)))
    msg.header.frame_id = "camera"
    return msg


def test_an_expression_becomes_a_reading_of_our_class_with_its_stamp_and_affect():
    got = reading_from_expression(expression("sad", 12.5), "f1", (0.2, 0.2, 0.6, 0.8), "largest", arrival_ns=99)
    assert got.sample.label == "sadness" and got.sample.stamp_ns == int(12.5 * NS)
    assert got.sample.confidence == pytest.approx(0.9) and got.sample.has_reading
    assert (got.sample.valence, got.sample.arousal) == pytest.approx((0.3, -0.2))
    assert got.sighting.face_id == "f1" and got.sighting.score == pytest.approx(0.4 * 0.6)
    assert not got.unmapped and not got.unstamped


def test_unmappable_names_keep_their_word_and_unstamped_ones_take_the_arrival_time():
    got = reading_from_expression(expression("Bored", 0.0), "f2", None, "largest", arrival_ns=7 * NS)
    assert got.unmapped and got.sample.label == "bored"
    assert got.unstamped and got.sample.stamp_ns == got.sighting.stamp_ns == 7 * NS
    assert got.sighting.score == 0.0  # no box yet: scored as nothing


@pytest.mark.parametrize(
    "bad",
    [expression("", 1.0), expression("happy", 1.0, confidence=1.5), expression("happy", 1.0, valence=-3.0)],
)
def test_an_expression_that_cannot_be_a_reading_is_refused(bad):
    with pytest.raises(ValueError):
        reading_from_expression(bad, "f1", None, "largest", arrival_ns=1)


def test_subscriptions_follow_the_tracked_faces_and_the_largest_face_is_followed():
    """The person rule scores faces by their /roi boxes: the bridge speaks about the larger face,
    and a face that leaves /tracked loses its subscriptions."""
    node = FakeNode()
    settings = BridgeSettings.from_parameters({**DEFAULTS, "dwell_s": 0.5, "person_switch_s": 0.5})
    bridge = Bridge(settings, load_templates(template_file_for("en", "")))
    events = []

    def on_expression(face_id, msg, roi):
        got = reading_from_expression(msg, face_id, roi, bridge.people.rule, arrival_ns=0)
        event = bridge.on_reading(got.sample, got.sighting)
        if event is not None:
            events.append(event)

    hri_in = HriExpressionInput(node, HRI, on_expression)
    assert set(node.subscriptions) == {"/humans/faces/tracked"}
    node.subscriptions["/humans/faces/tracked"].callback(IdsList(ids=["small", "big"]))
    assert {"/humans/faces/small/expression", "/humans/faces/big/roi"} <= set(node.subscriptions)
    node.subscriptions["/humans/faces/small/roi"].callback(NormalizedRegionOfInterest2D(xmin=0.1, xmax=0.2, ymax=0.1))
    node.subscriptions["/humans/faces/big/roi"].callback(NormalizedRegionOfInterest2D(xmin=0.3, xmax=0.8, ymax=0.6))
    for i in range(12):
        t = 10 + 0.1 * i
        node.subscriptions["/humans/faces/big/expression"].callback(expression("happy", t))
        node.subscriptions["/humans/faces/small/expression"].callback(expression("angry", t))
    assert bridge.people.followed == "big"
    assert [e.state.emotion for e in events] == ["happiness"]  # after dwell; the small face is never spoken of
    assert events[0].state.valence == pytest.approx(0.3) and "Valence +0.30" in events[0].prompt.system
    node.subscriptions["/humans/faces/tracked"].callback(IdsList(ids=["big"]))
    assert not any(t.startswith("/humans/faces/small/") for t in node.subscriptions)
    hri_in.close()
    assert node.subscriptions == {}


@pytest.mark.skipif(import_hri_msgs() is not None, reason="hri_msgs is installed here: the refusal is not reachable")
def test_input_ros4hri_without_hri_msgs_fails_configure_naming_the_package():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        with pytest.raises(ConfigError, match="input 'ros4hri' needs hri_msgs.*ros-\\$ROS_DISTRO-hri-msgs"):
            LLMBridgeNode(context=ctx, namespace="/no_hri", parameter_overrides=[Parameter("input", value="ros4hri")])
    finally:
        ctx.try_shutdown()


def test_bridge_process_speaks_about_a_ros4hri_provider_over_dds(tmp_path):
    """A stand-in provider process publishes /humans/faces/tracked and f1's Expression (happy, then
    the unmappable "bored", with valence 0.5 and arousal -0.25); the bridge process, input ros4hri,
    prompts for each after its dwell and counts the unmappable name on /diagnostics."""
    from hri_standin import standin_env

    env = standin_env()
    env["ROS_LOG_DIR"] = str(tmp_path / "ros_log")
    ns = "/hri_bridge"
    log = tmp_path / "provider.jsonl"
    node_log = (tmp_path / "bridge.log").open("w")
    bridge = subprocess.Popen(
        [sys.executable, "-m", "duse_ros.nodes.llm_bridge_node", "--ros-args", "-r", f"__ns:={ns}"]
        + [
            a
            for p in ("input:=ros4hri", "dwell_s:=0.5", "stale_s:=0.0", "diagnostics_period_s:=0.2")
            for a in ("-p", p)
        ],
        cwd=ROOT,
        env=env,
        stdout=node_log,
        stderr=subprocess.STDOUT,
    )
    provider = subprocess.Popen(
        [sys.executable, str(ROOT / "test" / "hri_provider.py"), "--schedule", "1.5:happy,9:bored"]
        + ["--count", "60", "--rate", "20", "--log", str(log)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("hri_bridge_peer", context=ctx)
    prompts, diagnostics = [], []
    node.create_subscription(
        DialoguePrompt,
        f"{ns}/dialogue_prompt",
        prompts.append,
        QoSProfile(depth=50, durability=DurabilityPolicy.TRANSIENT_LOCAL),
    )
    node.create_subscription(
        DiagnosticArray,
        "/diagnostics",
        lambda a: diagnostics.extend({kv.key: kv.value for kv in s.values} for s in a.status if "LLM bridge" in s.name),
        10,
    )
    executor = rclpy.executors.SingleThreadedExecutor(context=ctx)
    executor.add_node(node)

    def spin_until(done, timeout):
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            assert bridge.poll() is None, (tmp_path / "bridge.log").read_text()
            executor.spin_once(timeout_sec=0.05)
        return done()

    try:
        assert spin_until(lambda: [p.emotion for p in prompts] == ["happiness", "bored"], 90), (
            [p.emotion for p in prompts],
            (tmp_path / "bridge.log").read_text()[-2000:],
        )
        assert spin_until(lambda: any(int(d.get("expressions_unmapped", 0)) > 0 for d in diagnostics), 10)
        sent = [json.loads(line) for line in log.read_text().splitlines()]
        assert {s["face"] for s in sent} == {"f1"}
        happy = prompts[0]
        # Stamps are the provider's: the emotion's stamp is one the provider sent.
        assert happy.emotion_stamp.sec * NS + happy.emotion_stamp.nanosec in {s["stamp_ns"] for s in sent}
        assert "Valence +0.50" in happy.system_prompt and "arousal -0.25" in happy.system_prompt
        last = diagnostics[-1]
        assert last["input"] == "ros4hri" and last["person_followed"] == "f1" and last["faces_tracked"] == "1"
        assert last["expressions_unstamped"] == "0" and last["emotion_states_malformed"] == "0"
    finally:
        executor.shutdown(timeout_sec=2)
        node.destroy_node()
        ctx.try_shutdown()
        for p in (provider, bridge):
            p.send_signal(2)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        node_log.close()

"""The installed launch files, run by launch_testing (ROS 2 machines with launch_testing and the
package built and sourced; skipped elsewhere).

Each launch file starts for real with the tiny random-weight model and a parameters file that
sets face_mode full_frame (the test frames show no face); the test plays camera frames into
the remapped image topic and waits for an EmotionState. The full stack must also advertise
DialoguePrompt. After shutdown every process must have exited cleanly.

On a sourced ROS 2 machine pytest's launch_testing plugin runs it like any test file. Older
launch_testing releases (3.7 checked) have a plugin that pytest >= 9 refuses to load, which stops
the whole run: use pytest 7 or 8 there.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
import unittest

import pytest

# DDS stays on this machine (launch_test does not read conftest.py); the nodes inherit it.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(50 + os.getpid() % 50))

pytest.importorskip("launch_testing", reason="launch_testing is not installed (ROS 2 machines only)")
pytest.importorskip("launch_ros", reason="launch_ros is not installed (ROS 2 machines only)")

import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import rclpy  # noqa: E402
from ament_index_python.packages import get_package_share_directory  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from ros_harness import NS, frame_msg, qos  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from duse_ros.msg import EmotionState  # noqa: E402
from launch import LaunchDescription  # noqa: E402

NAMESPACE = "duse_launch_test"
IMAGE_TOPIC = "/duse_launch_test_camera/image_raw"  # absolute: the image_topic remap, not the namespace
EMOTION_TOPIC = f"/{NAMESPACE}/emotion_state"
PROMPT_TOPIC = f"/{NAMESPACE}/dialogue_prompt"
MODEL = "tiny-random-video"
FPS = 30.0
TIMEOUT_S = 60.0  # model load in a fresh process plus the first 2 s window of stream time

# Only what differs from the node's code defaults (which equal config/duse_video.yaml).
_params_dir = tempfile.TemporaryDirectory(prefix="duse_launch_test_")
PARAMS_FILE = os.path.join(_params_dir.name, "params.yaml")
with open(PARAMS_FILE, "w") as f:
    f.write("/**:\n  ros__parameters:\n    face_mode: full_frame\n")


@pytest.mark.launch_test
@launch_testing.parametrize("launch_file", ["video_pipeline.launch.py", "full_stack.launch.py"])
def generate_test_description(launch_file):
    path = os.path.join(get_package_share_directory("duse_ros"), "launch", launch_file)
    arguments = {"model": MODEL, "config": PARAMS_FILE, "namespace": NAMESPACE, "image_topic": IMAGE_TOPIC}
    return LaunchDescription(
        [
            IncludeLaunchDescription(PythonLaunchDescriptionSource(path), launch_arguments=arguments.items()),
            launch_testing.actions.ReadyToTest(),
        ]
    )


def test_runs_under_the_launch_testing_plugin():
    # The launch_testing pytest plugin collects this module as one launch test and never sees this
    # function; pytest collects it only when the plugin is off (`-p no:launch_testing`, or a
    # pytest the plugin cannot load), and then the classes below must not run without a launch.
    pytest.skip(
        "the launch_testing pytest plugin is not active; run this file with it, "
        "or as `PYTHONPATH=test launch_test test/test_launch_pipelines.py`"
    )


class TestRunningPipeline(unittest.TestCase):
    __test__ = False  # launch_testing's loader runs it; plain pytest must not (see above)

    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node("duse_launch_test_peer")

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def spin_until(self, condition, what: str, step=lambda: None) -> None:
        """Run `step` and spin the executor until `condition` holds, failing after TIMEOUT_S."""
        deadline = time.monotonic() + TIMEOUT_S
        while not condition():
            if time.monotonic() > deadline:
                self.fail(f"timed out after {TIMEOUT_S} s waiting for {what}")
            step()
            rclpy.spin_once(self.node, timeout_sec=1 / FPS)

    def test_frames_on_the_remapped_topic_give_emotion_states(self, launch_file):
        states: list[EmotionState] = []
        publisher = self.node.create_publisher(Image, IMAGE_TOPIC, qos("reliable", 10))
        self.node.create_subscription(EmotionState, EMOTION_TOPIC, states.append, qos("reliable", 10))
        self.spin_until(lambda: publisher.get_subscription_count() > 0, f"affect_node to subscribe to {IMAGE_TOPIC}")
        # Frames at 30 fps of stream time, paced near real time, until the first window comes out
        # (the config's best-effort QoS may lose a few, so the count is not fixed in advance).
        frames = itertools.count()
        self.spin_until(
            lambda: states,
            f"an EmotionState on {EMOTION_TOPIC}",
            step=lambda: publisher.publish(frame_msg(int(round((100.0 + next(frames) / FPS) * NS)))),
        )
        state = states[0]
        self.assertEqual(state.model_id, MODEL)  # model:= reached the node through the includes
        self.assertTrue(state.untrained)
        self.assertTrue(state.face_found)  # face_mode full_frame came from the parameters file
        self.assertEqual(state.modality, EmotionState.MODALITY_VIDEO)
        self.assertAlmostEqual(sum(state.probabilities), 1.0, places=4)

    def test_full_stack_advertises_dialogue_prompt(self, launch_file):
        if launch_file != "full_stack.launch.py":
            self.skipTest("only the full stack starts llm_bridge_node")
        self.spin_until(
            lambda: any(
                info.topic_type == "duse_ros/msg/DialoguePrompt"
                for info in self.node.get_publishers_info_by_topic(PROMPT_TOPIC)
            ),
            f"a DialoguePrompt publisher on {PROMPT_TOPIC}",
        )


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    __test__ = False

    def test_every_process_exits_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)

"""Test-wide settings. DDS stays on loopback with a domain id of this run's own, and no test may
reach a model hub: set before any test module imports rclpy or open_clip."""

import os
import random

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
# A domain per test run (0..101 are the valid Fast DDS domains with default ports), so two
# runs on one machine never see each other. .ci/run pins its own; a developer run picks one.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(10, 100)))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "2")


import logging  # noqa: E402
from contextlib import contextmanager  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture
def capture_logs(caplog):
    """`with capture_logs("duse_ros.affect.engine", logging.WARNING): ...` then read caplog.text.

    Importing `launch.logging` (the launch_testing pytest plugin does, on ROS machines) makes
    loggers created afterwards stop propagating to the root logger, where caplog listens; this
    turns propagation back on for the one logger while it is captured."""

    @contextmanager
    def capture(name: str, level: int):
        logger = logging.getLogger(name)
        propagate, logger.propagate = logger.propagate, True
        try:
            with caplog.at_level(level, logger=name):
                yield caplog
        finally:
            logger.propagate = propagate

    return capture


# Under `colcon test` the launch test runs on its own (add_launch_test in CMakeLists.txt).
collect_ignore = ["test_launch_pipelines.py"] if os.environ.get("DUSE_ROS_LAUNCH_TEST_SEPARATE") else []

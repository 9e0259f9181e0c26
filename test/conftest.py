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

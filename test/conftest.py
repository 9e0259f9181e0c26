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


# ---- the ros_process marker -------------------------------------------------------------------
# Tests that start node processes (over DDS: seconds each, minutes in all) are marked ros_process
# here, from what they run, so `pytest -m "not ros_process"` is the quick inner loop. A test is
# marked when its body, its fixtures, or the helpers of its module they call, start one. A test
# left unmarked that starts a node anyway fails (the guard below), so the marking cannot go stale.
import gc  # noqa: E402
import inspect  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402

_TEST_DIR = Path(__file__).resolve().parent
_STARTS_NODE = re.compile(
    r"\bNodeProcess\(|subprocess\.Popen\(|--ros-args|\bnode_command\(|duse_ros\.tools\.(eval_bag|demo)\b"
)
_NODE_ARGV = re.compile(r"--ros-args|duse_ros\.nodes\.|node_zygote|publish_samples|duse_ros\.tools\.(eval_bag|demo)")


# Sources and the helpers they name, read once per function or class: most tests share fixtures
# and helpers, and inspect.getsource is the bulk of collection time when it is asked again per test.
_sources: dict = {}
_callees: dict = {}


def _source(obj) -> str | None:
    if obj not in _sources:
        try:
            _sources[obj] = inspect.getsource(obj)
        except (OSError, TypeError):
            _sources[obj] = None
    return _sources[obj]


def _local_callables(module, source: str) -> list:
    """Functions and classes named in `source` that are defined in test/ (helpers, harness)."""
    found = []
    for name in set(re.findall(r"\b([A-Za-z_]\w*)\b", source)):
        obj = getattr(module, name, None)
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and getattr(obj, "__module__", None):
            file = inspect.getsourcefile(obj) if not inspect.isbuiltin(obj) else None
            if file and Path(file).resolve().parent == _TEST_DIR:
                found.append(obj)
    return found


def _helpers(obj, module) -> list:
    key = (obj, module)
    if key not in _callees:
        _callees[key] = _local_callables(module, _source(obj) or "")
    return _callees[key]


def _starts_node(item) -> bool:
    module = getattr(item, "module", None)
    function = getattr(item, "function", None)
    if module is None or function is None:
        return False
    infos = item._fixtureinfo.name2fixturedefs
    todo = [function] + [defs[-1].func for name in item.fixturenames if (defs := infos.get(name))]
    seen: set = set()
    while todo:
        obj = todo.pop()
        if obj in seen:
            continue
        seen.add(obj)
        source = _source(obj)
        if source is None:
            continue
        if _STARTS_NODE.search(source):
            return True
        todo += _helpers(obj, inspect.getmodule(obj) or module)
    return False


def pytest_collection_finish(session):
    # What is alive once every test module is imported (the modules, torch's and rclpy's state)
    # stays alive for the whole run; frozen, it is left out of every later collection. Nodes call
    # gc.collect() when they release a model, which otherwise walks all of it (0.2 s each here).
    gc.collect()
    gc.freeze()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _starts_node(item):
            item.add_marker(pytest.mark.ros_process)


@pytest.fixture(autouse=True)
def _unmarked_tests_start_no_node(request, monkeypatch):
    if request.node.get_closest_marker("ros_process"):
        yield
        return

    popen = subprocess.Popen

    def guarded(args, *rest, **kwargs):
        text = " ".join(map(str, args)) if isinstance(args, (list, tuple)) else str(args)
        if _NODE_ARGV.search(text):
            raise AssertionError(
                f"{request.node.nodeid} starts a node process ({text[:120]}) but is not marked ros_process: "
                "see test/conftest.py"
            )
        return popen(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", guarded)
    yield

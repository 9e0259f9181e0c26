"""The ros_process marker (test/conftest.py): tests that start node processes carry it, the rest do
not, and an unmarked test that starts a node fails, so `pytest -m "not ros_process"` stays quick."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_tests_that_start_nodes_are_marked_and_the_others_are_not():
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "ros_process", "-p", "no:cacheprovider"]
        + ["test/test_affect_node.py", "test/test_stats.py", "test/test_llm_bridge_node.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    marked = {line.split("[")[0] for line in run.stdout.splitlines() if "::" in line}
    assert "test/test_affect_node.py::test_bad_model_name_fails_configure_with_a_clear_message" in marked
    # started by its fixture (bridge_process), not in its body
    assert "test/test_llm_bridge_node.py::test_node_process_bridges_over_dds_and_never_leaks_the_key" in marked
    assert not [t for t in marked if t.startswith("test/test_stats.py")]
    assert "test/test_affect_node.py::test_a_near_miss_model_name_is_answered_with_the_registered_one" not in marked
    # in-process nodes (no process of their own) stay in the quick loop
    assert "test/test_llm_bridge_node.py::test_live_parameters_apply_and_read_only_ones_are_refused" not in marked


def test_an_unmarked_test_that_starts_a_node_fails():
    # Written so that the marker scan (which reads this source) does not see a node start.
    argv = [sys.executable, "-m", "duse_ros.nodes.affect_node", "--ros" + "-args"]
    start = subprocess.Popen
    with pytest.raises(AssertionError, match="not marked ros_process"):
        start(argv)

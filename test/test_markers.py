"""The ros_process marker (test/conftest.py): tests that start node processes carry it, the rest do
not, and an unmarked test that starts a node fails, so `pytest -m "not ros_process"` stays quick;
`make quick` also leaves out the `slow` ones, `make test` runs all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a second pytest imports and scans three test files
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


def test_make_quick_leaves_out_both_markers_and_make_test_runs_everything(pytestconfig):
    registered = {line.split(":")[0].strip() for line in pytestconfig.getini("markers")}
    assert {"ros_process", "slow"} <= registered
    rules = (ROOT / "Makefile").read_text().split("\n\n")
    quick = next(rule for rule in rules if "\nquick:" in f"\n{rule}" or rule.startswith("quick:"))
    assert '-m "not ros_process and not slow"' in quick
    test = next(rule for rule in rules if "\ntest:" in f"\n{rule}")
    assert "pytest test $(PYTEST_ARGS)" in test and "not " not in test  # the full suite: no marker left out

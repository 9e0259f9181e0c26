"""affect_node's lifecycle (in-process): 20 configure/activate/deactivate/cleanup cycles with a
model carrying 64 MB of weights leave RSS and threads flat (cleanup releases the model and its
buffers), and a failed transition says why."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import rclpy
import slow_model_node  # noqa: F401  (registers test-big-video)
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from duse_ros.nodes.affect_node import AffectNode

CYCLES = 20
SUCCESS = TransitionCallbackReturn.SUCCESS


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def node():
    rclpy.init()
    made = AffectNode(
        parameter_overrides=[
            Parameter("model", value="test-big-video"),
            Parameter("face_mode", value="detect"),
            Parameter("autostart", value=False),
        ]
    )
    yield made
    made.close()
    made.destroy_node()
    rclpy.shutdown()


def _cycle(node: AffectNode) -> None:
    assert node.trigger_configure() == SUCCESS
    assert node.trigger_activate() == SUCCESS
    assert node._pipeline.engine.running
    assert node.trigger_deactivate() == SUCCESS
    assert node.trigger_cleanup() == SUCCESS


@pytest.mark.slow  # a soak: twenty lifecycle cycles
def test_twenty_cycles_release_the_model_and_keep_rss_and_threads_flat(node):
    _cycle(node)  # first-time allocations (torch, OpenCV's cascade) happen here
    _cycle(node)
    rss, threads = rss_mb(), threading.active_count()
    for _ in range(CYCLES):
        _cycle(node)
    assert node._model is None and node._pipeline is None
    grown = rss_mb() - rss
    # A model kept alive per cycle would add 64 MB each time (1.3 GB in all).
    assert grown < 64, f"RSS grew by {grown:.0f} MB over {CYCLES} cycles"
    assert threading.active_count() <= threads


def test_a_failed_activate_says_why_and_leaves_the_node_inactive(node, capfd, monkeypatch):
    assert node.trigger_configure() == SUCCESS

    def no_device(*args, **kwargs):
        raise RuntimeError("CUDA error: out of memory (simulated)")

    monkeypatch.setattr(node._pipeline.engine.model, "to", no_device)
    assert node.trigger_activate() != SUCCESS
    err = capfd.readouterr().err
    assert "activate failed" in err and "RuntimeError: CUDA error: out of memory (simulated)" in err
    assert node._subs == [] and node._timer is None
    monkeypatch.undo()
    assert node.trigger_activate() == SUCCESS  # and it can be activated once the cause is gone


def test_torch_threads_default_is_one_and_zero_brings_back_torch_own(node, monkeypatch):
    """One thread by default (torch's one-per-core pool collapses beside a busy process:
    benchmarks/bench_threads.py); 0 restores torch's own size even after another was configured."""
    import torch

    import duse_ros.nodes.affect_node as affect_node

    before = torch.get_num_threads()
    monkeypatch.setattr(affect_node, "TORCH_DEFAULT_THREADS", 3)  # torch's default, as read at import
    try:
        assert node.p("torch_threads") == 1
        assert node.trigger_configure() == SUCCESS
        assert torch.get_num_threads() == 1
        assert node.trigger_cleanup() == SUCCESS
        assert node.set_parameters([Parameter("torch_threads", value=0)])[0].successful
        assert node.trigger_configure() == SUCCESS
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)

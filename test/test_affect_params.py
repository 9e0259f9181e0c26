"""affect_node's parameters (in-process): descriptors from the table, values refused with the
reason, configure-time parameters refused while configured, live ones applied at once."""

from __future__ import annotations

import re

import pytest
import rclpy
from rclpy.parameter import Parameter

from duse_ros.affect import settings as affect_settings
from duse_ros.nodes.affect_node import AffectNode
from duse_ros.params import ParameterSpec, check_all


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.shutdown()


@pytest.fixture
def make_node(ros):
    nodes = []

    def make(**params):
        params = {"model": "tiny-random-video", "face_mode": "full_frame", **params}
        node = AffectNode(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.close()
        node.destroy_node()


def _set(node, name, value):
    (result,) = node.set_parameters([Parameter(name, value=value)])
    return result


def test_every_parameter_is_described_with_its_range_or_choices(make_node):
    node = make_node()
    for spec in affect_settings.PARAMETERS:
        (d,) = node.describe_parameters([spec.name])
        assert d.description.startswith(spec.description), spec.name
        if spec.choices:
            assert all(c in d.description for c in spec.choices) and d.additional_constraints
        if spec.low is not None and isinstance(spec.default, int) and not isinstance(spec.default, bool):
            assert (d.integer_range[0].from_value, d.integer_range[0].to_value) == (spec.low, spec.high)
        if spec.low is not None and isinstance(spec.default, float):
            assert (d.floating_point_range[0].from_value, d.floating_point_range[0].to_value) == (spec.low, spec.high)
        assert d.read_only == spec.read_only


@pytest.mark.parametrize(
    "name, value, reason",
    [
        # rclpy checks the descriptor's range first ("out of range Min: ..."), the table the rest.
        ("span_s", -1.0, r"out of range\.? Min: 0.1"),
        ("queue_depth", 0, r"out of range\.? Min: 1"),
        ("qos.depth", -1, r"out of range\.? Min: 1"),
        ("qos.reliability", "sometimes", r"one of best_effort, reliable"),
        ("face_mode", "bogus", r"one of detect, full_frame"),
        ("diagnostics_period_s", 0.0, r"out of range\.? Min: 0.05"),
        ("smoothing_window", 2.5, r"must be int"),
        ("min_face_fraction", float("nan"), r"out of range|finite"),
    ],
)
def test_bad_values_are_refused_with_the_reason_while_active(make_node, name, value, reason):
    node = make_node()
    assert node._pipeline is not None and node._timer is not None  # active
    before = node.get_parameter(name).value
    result = _set(node, name, value)
    assert not result.successful and re.search(reason, result.reason) and name in result.reason, result.reason
    assert node.get_parameter(name).value == before


def test_configure_time_parameters_wait_for_a_reconfigure(make_node):
    node = make_node()
    result = _set(node, "span_s", 3.0)
    assert not result.successful and "takes effect at configure" in result.reason
    node.trigger_deactivate()
    node.trigger_cleanup()
    assert _set(node, "span_s", 3.0).successful
    node.trigger_configure()
    assert node._pipeline.config.span_s == 3.0 and node._pipeline.windower.span_s == 3.0


def test_live_parameters_apply_at_once(make_node):
    node = make_node()
    pipeline = node._pipeline
    assert _set(node, "smoothing_window", 2).successful
    assert pipeline.voter.k == 2 if hasattr(pipeline.voter, "k") else pipeline.config.smoothing_window == 2
    assert _set(node, "no_face_policy", "skip").successful and pipeline.config.no_face_policy == "skip"
    assert _set(node, "max_window_age_s", 0.0).successful and pipeline.config.max_window_age_s == 0.0
    timer = node._timer
    assert _set(node, "diagnostics_period_s", 0.25).successful
    assert node._timer is not timer and node._timer.timer_period_ns == 250_000_000
    assert _set(node, "max_image_pixels", 100 * 100).successful and node._live["max_image_pixels"] == 10000


def test_a_bad_start_up_value_fails_configure_and_says_why(make_node, capfd):
    node = make_node(span_s=-1.0, face_mode="bogus")
    assert node._pipeline is None and not node._configured
    err = capfd.readouterr().err
    assert "configure failed: invalid parameters" in err and "span_s" in err and "face_mode" in err
    # Fixed values make it configurable.
    assert _set(node, "span_s", 2.0).successful and _set(node, "face_mode", "full_frame").successful
    from rclpy.lifecycle import TransitionCallbackReturn

    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS


def test_table_checks_without_ros():
    spec = ParameterSpec("x", 1.0, "a float", 0.0, 2.0)
    assert spec.check(2) == "" and "<= 2" in spec.check(3.0) and "must be float" in spec.check(True)
    with pytest.raises(ValueError, match="default of parameter 'y'"):
        ParameterSpec("y", 5, "out of its own range", 0, 1)
    assert check_all(affect_settings.PARAMETERS, {"span_s": 3})["span_s"] == 3.0
    with pytest.raises(ValueError, match="unknown parameters"):
        check_all(affect_settings.PARAMETERS, {"nope": 1})

"""Small rclpy helpers the duse_ros nodes share: stamps, QoS from parameters, diagnostics, main()."""

from __future__ import annotations

import gc
import importlib
import signal
import sys
from collections.abc import Callable, Iterable

import rclpy
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from duse_ros.affect.host_memory import release_free_memory
from duse_ros.nodes import startup
from duse_ros.params import ParameterSpec
from duse_ros.timebase import NS, sec_nanosec
from duse_ros.timebase import stamp_to_ns as stamp_to_ns  # the nodes' stamps, owned by timebase

RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}


def ns_to_stamp(ns: int) -> Time:
    sec, nanosec = sec_nanosec(ns)
    return Time(sec=sec, nanosec=nanosec)


def message_class(type_name: str):
    """The rclpy class of a ROS type name such as "sensor_msgs/msg/Image" (the io/ tables' keys);
    ImportError or AttributeError when its package is not installed or lacks the type."""
    package, _, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def seconds_to_duration(seconds: float) -> Duration:
    ns = max(0, int(round(seconds * NS)))
    return Duration(sec=ns // NS, nanosec=ns % NS)


def sensor_qos(reliability: str, depth: int) -> QoSProfile:
    """The sensor-data profile (keep last, volatile) with configurable reliability and depth."""
    if reliability not in RELIABILITY:
        raise ValueError(f"qos.reliability must be one of {sorted(RELIABILITY)}, got {reliability!r}")
    if depth < 1:
        raise ValueError(f"qos.depth must be >= 1, got {depth}")
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=RELIABILITY[reliability])


def parameter_descriptor(spec: ParameterSpec) -> ParameterDescriptor:
    """What `ros2 param describe` shows: the description with its choices, and the range.
    dynamic_typing lets `-p span_s:=2` (an integer) reach the spec's own check, which takes it."""
    d = ParameterDescriptor(description=spec.full_description(), read_only=spec.read_only, dynamic_typing=True)
    if spec.choices:
        d.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.low is not None and spec.high is not None and not isinstance(spec.default, bool):
        if isinstance(spec.default, int):
            d.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=1)]
        elif isinstance(spec.default, float):
            d.floating_point_range = [FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high))]
    return d


def declare_table(node: Node, specs: Iterable[ParameterSpec]) -> dict[str, str]:
    """Declare every spec with its descriptor. A start-up value (-p, a params file) that the spec
    refuses does not raise: the parameter keeps its default and {name: reason} is returned, for the
    node to report (a lifecycle node fails configure with it)."""
    errors: dict[str, str] = {}
    for spec in specs:
        try:
            value = node.declare_parameter(spec.name, spec.default, parameter_descriptor(spec)).value
            reason = spec.check(value)
        except ParameterException as exc:  # out of the descriptor's range, or a wrong type
            reason = f"parameter {spec.name!r}: {exc}"
        if reason:
            errors[spec.name] = reason
            if node.has_parameter(spec.name):
                node.set_parameters([Parameter(spec.name, value=spec.default)])
            else:
                node.declare_parameter(spec.name, spec.default, parameter_descriptor(spec), ignore_override=True)
    return errors


def check_parameter_changes(
    specs: dict[str, ParameterSpec], params: list[Parameter], refuse: Callable[[ParameterSpec], str] = lambda spec: ""
) -> SetParametersResult:
    """An on-set callback's answer: each value checked against its spec, and `refuse(spec)` (for
    example: not live while active) may add a reason of its own."""
    for param in params:
        spec = specs.get(param.name)
        if spec is None:
            continue
        reason = spec.check(param.value) or refuse(spec)
        if reason:
            return SetParametersResult(successful=False, reason=reason)
    return SetParametersResult(successful=True)


def release_memory() -> None:
    """Give freed memory back after a model is dropped: collect cycles, empty CUDA's cache, and ask
    glibc to return free heap pages (without it a released model's GBs stay in the process)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
    release_free_memory()


def diagnostic_array(node: Node, statuses: Iterable[DiagnosticStatus]) -> DiagnosticArray:
    msg = DiagnosticArray()
    msg.header.stamp = node.get_clock().now().to_msg()
    msg.status = list(statuses)
    return msg


def diagnostic_status(
    name: str, hardware_id: str, level: bytes, message: str, values: dict[str, object]
) -> DiagnosticStatus:
    return DiagnosticStatus(
        level=level,
        name=name,
        message=message,
        hardware_id=hardware_id,
        values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()],
    )


def run_node(make_node: Callable[[], Node]) -> None:
    """rclpy.init, spin `make_node()` until Ctrl-C, SIGTERM or shutdown, then clean up (the main()
    of a node). A signal in any state (while the node starts, while it spins, during a forward)
    ends here quietly: exit 0, no traceback. An error while nobody asked to stop still raises.

    Single-threaded on purpose: the nodes' heavy work (inference, LLM calls, face detection) runs on
    threads of its own, and rclpy's MultiThreadedExecutor (9.1.x) busy-loops, starving the image
    callback until frames drop (measured by benchmarks/bench_affect_node.py)."""
    # Python-level handlers that only take note, installed before rclpy's: rclpy's own handler
    # shuts the context down (which ends the spin) and then calls these. Python's default SIGINT
    # handler would instead raise KeyboardInterrupt at whatever line runs next, clean-up included.
    # A signal that came while the node's modules were importing (nodes/startup.py) was only noted:
    # honour it now, before anything starts.
    startup.hold_signals()
    if startup.stop_requested():
        return
    # The executor is made with signals held back: one arriving while it builds its guard
    # conditions would leave a half-made executor whose __del__ prints tracebacks at exit.
    held = set(startup.STOP_SIGNALS)
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        rclpy.init(args=sys.argv)
        context = rclpy.get_default_context()
        executor = SingleThreadedExecutor()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)
    node = None
    try:
        node = make_node()
        executor.add_node(node)
        if not startup.stop_requested():  # a signal before rclpy.init could see it
            executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:  # noqa: BLE001
        # rclpy's signal handler shuts the context down under whatever runs (SIGTERM): a wait set or
        # a publisher then fails with "context is not valid". That is the stop, not an error.
        if context.ok():
            raise
    finally:
        # Under `ros2 launch` a signal may reach a node twice (the terminal, then launch forwarding
        # it): a second one must not interrupt the clean-up of the first.
        for sig in startup.STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        if node is not None:
            try:
                close = getattr(node, "close", None)
                if close is not None:
                    close()
                node.destroy_node()
            except Exception:  # noqa: BLE001 - see above: only after a stop was asked for
                if context.ok():
                    raise
        if rclpy.ok():
            rclpy.try_shutdown()

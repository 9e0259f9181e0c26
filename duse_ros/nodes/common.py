"""Small rclpy helpers the duse_ros nodes share: stamps, QoS from parameters, diagnostics, main()."""
from __future__ import annotations

import signal
import sys
from typing import Callable, Iterable

import rclpy
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

NS = 1_000_000_000

RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}


def stamp_to_ns(stamp: Time) -> int:
    return int(stamp.sec) * NS + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Time:
    return Time(sec=int(ns // NS), nanosec=int(ns % NS))


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


def diagnostic_array(node: Node, statuses: Iterable[DiagnosticStatus]) -> DiagnosticArray:
    msg = DiagnosticArray()
    msg.header.stamp = node.get_clock().now().to_msg()
    msg.status = list(statuses)
    return msg


def diagnostic_status(name: str, hardware_id: str, level: bytes, message: str,
                      values: dict[str, object]) -> DiagnosticStatus:
    return DiagnosticStatus(
        level=level, name=name, message=message, hardware_id=hardware_id,
        values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()],
    )


def run_node(make_node: Callable[[], Node]) -> None:
    """rclpy.init, spin `make_node()` until Ctrl-C or shutdown, then clean up (the main() of a node).

    Single-threaded on purpose: the nodes' heavy work (inference, LLM calls, face detection) runs on
    threads of its own, and rclpy's MultiThreadedExecutor (9.1.x) busy-loops, starving the image
    callback until frames drop (measured by benchmarks/bench_affect_node.py)."""
    rclpy.init(args=sys.argv)
    node = None
    try:
        node = make_node()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # Under `ros2 launch` Ctrl-C reaches a node twice (the terminal, then launch forwarding it):
        # a second SIGINT must not interrupt the clean-up of the first.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()

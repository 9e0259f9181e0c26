"""One stamp conversion, for any message with sec and nanosec fields, and its inverse."""

from __future__ import annotations

from types import SimpleNamespace

from builtin_interfaces.msg import Duration, Time

from duse_ros.nodes import common
from duse_ros.timebase import NS, sec_nanosec, stamp_to_ns


def test_stamps_of_every_kind_round_trip():
    for ns in (0, 1, NS - 1, NS, 1_700_000_010 * NS + 123_456_789):
        sec, nanosec = sec_nanosec(ns)
        assert 0 <= nanosec < NS
        for stamp in (
            Time(sec=sec, nanosec=nanosec),
            Duration(sec=sec, nanosec=nanosec),
            SimpleNamespace(sec=sec, nanosec=nanosec),
        ):
            assert stamp_to_ns(stamp) == ns
        assert stamp_to_ns(common.ns_to_stamp(ns)) == ns
    assert common.stamp_to_ns is stamp_to_ns  # the nodes use the one owner, not a copy

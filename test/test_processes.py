"""duse_ros.tools.processes.spin_until: the one wait on a node process that the test harness and
the benchmarks share (no DDS here: a stand-in process and a counting spin)."""

from __future__ import annotations

import pytest

from duse_ros.tools.processes import NodeWaitError, spin_until


class _Proc:
    def __init__(self, alive: bool = True):
        self.is_alive, self.reads = alive, 0

    def alive(self) -> bool:
        return self.is_alive

    def output(self) -> str:
        self.reads += 1
        return "line 1\nthe node's last words\n"


def test_spins_until_the_condition_holds_and_reads_no_log():
    spins, proc = [], _Proc()
    spin_until(lambda: len(spins) >= 3, lambda: spins.append(1), 5.0, "three spins", proc)
    assert len(spins) == 3 and proc.reads == 0


def test_a_node_that_exits_ends_the_wait_at_once_with_its_log():
    spins = []
    with pytest.raises(NodeWaitError, match=r"(?s)exited while waiting for readings.*the node's last words"):
        spin_until(lambda: False, lambda: spins.append(1), 60.0, "readings", _Proc(alive=False))
    assert spins == []


def test_time_running_out_names_what_was_awaited():
    with pytest.raises(NodeWaitError, match=r"(?s)timed out after 0.05 s waiting for a reply.*last words"):
        spin_until(lambda: False, lambda: None, 0.05, "a reply", _Proc())
    with pytest.raises(NodeWaitError, match=r"timed out after 0.05 s waiting for a reply$"):
        spin_until(lambda: False, lambda: None, 0.05, "a reply")  # no node: no log to add

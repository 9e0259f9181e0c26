"""duse_ros.affect.diagnostics: the one reader of affect_node's status that the demo, eval-bag and
the benchmarks share."""

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from duse_ros.affect import diagnostics as diag


def _status(name: str, **values: str) -> DiagnosticStatus:
    return DiagnosticStatus(name=name, values=[KeyValue(key=k, value=v) for k, v in values.items()])


def test_affect_values_are_the_last_affect_status_and_none_without_one():
    other = _status("llm_bridge_node: bridge", fps="1")
    first = _status(diag.status_name("affect_node"), fps="10")
    last = _status(diag.status_name("/ns/affect_node"), fps="30")
    assert diag.affect_values([other, first, other, last, other]) == {"fps": "30"}
    assert diag.affect_values([other]) is None
    assert diag.affect_values([]) is None

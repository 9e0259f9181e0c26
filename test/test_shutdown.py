"""affect_node stops cleanly on SIGINT and SIGTERM in every state, a forward in progress
included: exit code 0, no traceback, no abort. Children of a fork server (test/node_zygote.py)
make the 40+ start/stop cycles cheap; each child is still a process of its own that gets a
real signal and exits through the interpreter's normal shutdown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARAMS = {
    "model": "test-busy-video",
    "face_mode": "full_frame",
    "span_s": 0.5,
    "stride_s": 0.5,
    "qos.reliability": "reliable",
    "qos.depth": 50,
    "queue_depth": 1,
    "max_batch": 1,
}
CYCLES = 20
SIDE_BY_SIDE = 4  # children run at once: most of a cycle is waiting (discovery, interpreter exit)
BAD_OUTPUT = ("Traceback", "terminate called", "Aborted", "core dumped", "Fatal Python error")


@pytest.fixture(scope="module")
def zygote():
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "test" / "node_zygote.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=os.environ.copy(),
    )
    assert json.loads(proc.stdout.readline()) == {"ready": True}

    def run(state: str, sig: str, logs: list[Path], **params) -> list[dict]:
        request = {"params": {**PARAMS, **params}, "state": state, "signal": sig, "logs": [str(p) for p in logs]}
        proc.stdin.write(json.dumps(request) + "\n")
        proc.stdin.flush()
        return json.loads(proc.stdout.readline())

    yield run
    proc.stdin.close()
    proc.wait(timeout=30)


def _check(result: dict, log: Path, what: str) -> None:
    output = log.read_text()
    assert result["state_reached"], f"{what}: the node never reached the state:\n{output[-2000:]}"
    assert result["returncode"] == 0, f"{what}: exit code {result['returncode']}:\n{output[-3000:]}"
    bad = [b for b in BAD_OUTPUT if b in output]
    assert not bad, f"{what}: {bad} in the output:\n{output[-3000:]}"


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_during_a_forward_exits_cleanly_every_time(zygote, tmp_path, sig):
    for first in range(0, CYCLES, SIDE_BY_SIDE):
        logs = [tmp_path / f"{sig}-{i}.log" for i in range(first, min(first + SIDE_BY_SIDE, CYCLES))]
        for log, result in zip(logs, zygote("forward", sig, logs)):
            _check(result, log, f"{sig} during a forward ({log.stem})")


@pytest.mark.parametrize("state", ["unconfigured", "active"])
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_in_other_states_exits_cleanly(zygote, tmp_path, sig, state):
    log = tmp_path / f"{sig}-{state}.log"
    (result,) = zygote(state, sig, [log], autostart=state != "unconfigured")
    _check(result, log, f"{sig} while {state}")

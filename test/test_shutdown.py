"""affect_node stops cleanly on SIGINT and SIGTERM in every state, a forward in progress
included: exit code 0, no traceback, no abort. Children of a fork server (test/node_zygote.py)
make the 40+ start/stop cycles cheap; each child is still a process of its own that gets a
real signal and exits through the interpreter's normal shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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
EXIT_TIMEOUT_S = 60
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


def _assert_clean_exit(returncode: int | None, output: str, what: str) -> None:
    assert returncode == 0, f"{what}: exit code {returncode}:\n{output[-3000:]}"
    bad = [b for b in BAD_OUTPUT if b in output]
    assert not bad, f"{what}: {bad} in the output:\n{output[-3000:]}"


def _check(result: dict, log: Path, what: str) -> None:
    output = log.read_text()
    assert result["state_reached"], f"{what}: the node never reached the state:\n{output[-2000:]}"
    _assert_clean_exit(result["returncode"], output, what)


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


@pytest.mark.parametrize("model", ["test-slow-build-video", "test-failing-build-video"])
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_while_the_model_loads_at_configure_exits_cleanly(zygote, tmp_path, sig, model):
    """The signal comes while configure builds the model (a second, as a large checkpoint takes):
    the build ends, the configure succeeds or fails as it would, and the node exits at once,
    neither hanging in a half-made state nor printing a traceback."""
    log = tmp_path / f"{sig}-{model}.log"
    (result,) = zygote("configuring", sig, [log], model=model, autostart=True)
    _check(result, log, f"{sig} while configure loads {model}")  # a hang is killed at 30 s and fails it


def _signal_while_importing(cmd: list[str], library: str, sig: signal.Signals, delay_s: float, log: Path) -> int:
    """Start `cmd`, send `sig` `delay_s` after `library` is mapped into it (its imports are then
    still running), and return its exit code."""
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=os.environ.copy())
        maps = Path(f"/proc/{proc.pid}/maps")
        deadline = time.monotonic() + 60
        try:
            while library not in maps.read_text():
                assert proc.poll() is None, f"{cmd} ended before loading {library}:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"{cmd} did not load {library} in 60 s"
                time.sleep(0.002)
            time.sleep(delay_s)
            proc.send_signal(sig)
            return proc.wait(timeout=EXIT_TIMEOUT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc/<pid>/maps (Linux) to time the signal")
@pytest.mark.parametrize(
    "cmd, library",
    [
        (["-m", "duse_ros.nodes.affect_node"], "libtorch_cpu"),  # python -m, during `import torch`
        (["scripts/affect_node"], "libtorch_cpu"),  # the ros2 run / launch entry point
        (["-m", "duse_ros.nodes.llm_bridge_node"], "_rclpy_pybind11"),  # during rclpy's imports
    ],
    ids=["affect_node-m", "affect_node-script", "llm_bridge_node-m"],
)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_the_node_is_still_importing_exits_cleanly(tmp_path, cmd, library, sig):
    # Before: Python's default handler raised KeyboardInterrupt inside torch's import (a traceback,
    # exit -2) and SIGTERM's default killed the process (-15).
    for delay_s in (0.0, 0.15):
        log = tmp_path / f"{sig.name}-{delay_s}.log"
        code = _signal_while_importing(
            [sys.executable, *cmd, "--ros-args", "-p", "model:=tiny-random-video"], library, sig, delay_s, log
        )
        _assert_clean_exit(code, log.read_text(), f"{sig.name} {delay_s} s after {library} loaded")

"""Nodes in processes of their own, as the demo, the bag tools, the tests and the benchmarks start
them: the command line from parameters, the log kept, and a clean stop (SIGINT, then a kill only if
it hangs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO


def node_command(
    target: str,
    params: dict[str, object],
    namespace: str = "",
    extra: list[str] = (),
    remaps: dict[str, str] | None = None,
) -> list[str]:
    """`python -m <module>` (or `python <script.py>`) `--ros-args [-r __ns:=...] [-r from:=to ...]
    -p name:=value ...`; `extra` takes `name=value` or `name:=value` strings from a command line."""
    cmd = [sys.executable] + ([target] if target.endswith(".py") else ["-m", target]) + ["--ros-args"]
    cmd += ["-r", f"__ns:={namespace}"] if namespace else []
    for source, target_name in (remaps or {}).items():
        cmd += ["-r", f"{source}:={target_name}"]
    for name, value in params.items():
        cmd += ["-p", f"{name}:={str(value).lower() if isinstance(value, bool) else value}"]
    for kv in extra:
        cmd += ["-p", kv if ":=" in kv else kv.replace("=", ":=", 1)]
    return cmd


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    """SIGINT (the nodes' clean shutdown path), then kill if it has not ended in `timeout`; the
    exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class NodeProcess:
    """A node in a subprocess with its output in a log file (`log`, or a temporary file)."""

    def __init__(
        self,
        target: str,
        params: dict[str, object],
        ros_args: list[str] = (),
        *,
        log: Path | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ):
        self.log_path = Path(log) if log else Path(tempfile.mkstemp(prefix="node-", suffix=".log")[1])
        self._log: IO[str] = self.log_path.open("w+")
        cmd = node_command(target, params) + list(ros_args)
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=cwd, env=env if env is not None else os.environ.copy()
        )

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        return stop(self.proc, timeout)


class NodeWaitError(RuntimeError):
    """A wait on a node process ended without its condition: the node exited, or time ran out.
    The message names what was awaited and ends with the node's log."""


def spin_until(
    condition: Callable[[], bool],
    spin: Callable[[], object],
    timeout: float,
    what: str,
    node: NodeProcess | None = None,
) -> None:
    """Call `spin` (one spin of the caller's rclpy node, which also bounds each turn's wait) until
    `condition()` holds. NodeWaitError when `timeout` seconds pass, or at once when `node` exits."""

    def log() -> str:  # read only when the wait fails
        return f"\n--- node output ---\n{node.output()[-3000:]}" if node is not None else ""

    deadline = time.monotonic() + timeout
    while not condition():
        if node is not None and not node.alive():
            raise NodeWaitError(f"the node process exited while waiting for {what}{log()}")
        if time.monotonic() > deadline:
            raise NodeWaitError(f"timed out after {timeout} s waiting for {what}{log()}")
        spin()

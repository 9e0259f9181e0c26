"""Nodes in processes of their own, as the demo and the bag tools start them: the command line
from parameters, and a clean stop (SIGINT, then a kill only if it hangs)."""

from __future__ import annotations

import signal
import subprocess
import sys


def node_command(module: str, params: dict[str, object], namespace: str = "", extra: list[str] = ()) -> list[str]:
    """`python -m <module> --ros-args [-r __ns:=...] -p name:=value ...`; `extra` takes
    `name=value` or `name:=value` strings from a command line."""
    cmd = [sys.executable, "-m", module, "--ros-args"] + (["-r", f"__ns:={namespace}"] if namespace else [])
    for name, value in params.items():
        cmd += ["-p", f"{name}:={str(value).lower() if isinstance(value, bool) else value}"]
    for kv in extra:
        cmd += ["-p", kv if ":=" in kv else kv.replace("=", ":=", 1)]
    return cmd


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGINT (the nodes' clean shutdown path), then kill if it has not ended in `timeout`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

"""A fork server for node start/stop tests: imports torch, rclpy and affect_node once (seconds),
then forks one child per request (milliseconds). Each child is a real process of its own: it runs
affect_node's main() with its own argv, receives real signals and exits through the
interpreter's normal shutdown, as `python -m duse_ros.nodes.affect_node` would.

A feeder process (forked at start) publishes frames all along; nodes under test that subscribe
get them and start forwards.

Protocol (one JSON object per line on stdin, one per line on stdout):
  request {"params": {...}, "state": "unconfigured" | "configuring" | "active" | "forward",
           "signal": "SIGINT" | "SIGTERM",
           "logs": ["/path/for/a/child's/output", ...]}   (one child per path, run side by side)
  answer  [{"state_reached": bool, "returncode": int | null, "exit_s": float | null}, ...]
The child says when it reached the state through a pipe: "u" once its node exists, "a" once it
is active, "c" when the model's build starts (test-slow-build-video), "f" when the model's forward
starts (test-busy-video). Then this process sends the signal and waits for the exit.
Nothing here may run torch or rclpy before a fork: the children must start clean.
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
import slow_model_node  # noqa: E402,F401  (registers the test models)
from sensor_msgs.msg import Image  # noqa: E402

from duse_ros.nodes import affect_node  # noqa: E402
from duse_ros.timebase import NS  # noqa: E402

READY_TIMEOUT_S = 60.0
EXIT_TIMEOUT_S = 30.0
FEED_TOPIC = "zygote_feed/image_raw"  # nodes in the "forward" state are remapped to it


def _announcing(ready_fd: int, state: str) -> type:
    """affect_node's class, writing "u" when constructed (unconfigured) or "a" when activated."""

    class Announcing(affect_node.AffectNode):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            if state == "unconfigured":
                os.write(ready_fd, b"u")

        def on_activate(self, lifecycle_state):
            result = super().on_activate(lifecycle_state)
            if state == "active":
                os.write(ready_fd, b"a")
            return result

    return Announcing


def _feeder() -> None:
    """A process of its own publishing frames (stamps 1/30 s apart, faster than real time) until
    its parent goes away, so nodes under test start forwards."""
    parent = os.getppid()
    rclpy.init()
    node = rclpy.create_node("zygote_feeder")
    pub = node.create_publisher(Image, FEED_TOPIC, 50)
    frame = np.full(48 * 64 * 3, 90, np.uint8).tobytes()
    i = 0
    while os.getppid() == parent:
        msg = Image(height=48, width=64, encoding="rgb8", step=64 * 3, data=frame)
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(i * NS // 30, NS)
        pub.publish(msg)
        i += 1
        time.sleep(0.008)
    os._exit(0)


def _child(request: dict, ready_w: int) -> None:
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.environ["DUSE_TEST_FORWARD_FD"] = str(ready_w)
    sys.argv = ["affect_node", "--ros-args"]
    for name, value in request["params"].items():
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        sys.argv += ["-p", f"{name}:={text}"]
    if request["state"] == "forward":
        sys.argv += ["-r", f"image_raw:={FEED_TOPIC}"]
    affect_node.AffectNode = _announcing(ready_w, request["state"])  # in a forward the model writes "f"
    affect_node.main()
    sys.exit(0)  # through the zygote's frames, like the end of `python -m ...`


def _serve(request: dict) -> list[dict]:
    """Fork one child per log path in request["logs"] (they run side by side), signal each once it
    reached the state, and wait for every exit."""
    want = {"unconfigured": b"u", "configuring": b"c", "active": b"a", "forward": b"f"}[request["state"]]
    children = {}  # read end of the child's pipe -> its record
    for log in request["logs"]:
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            sys.stdin.close()
            _child({**request, "log": log}, ready_w)
        os.close(ready_w)
        children[ready_r] = {"pid": pid, "state_reached": False, "sent": None, "returncode": None}
    waiting = set(children)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while waiting and time.monotonic() < deadline:
        readable, _, _ = select.select(list(waiting), [], [], 0.5)
        for fd in readable:
            data = os.read(fd, 64)
            child = children[fd]
            child["state_reached"] = want in data
            if not data or child["state_reached"]:  # reached it, or died first
                waiting.discard(fd)
                _signal(child, request["signal"])
    for fd in waiting:  # never got there: stop it anyway
        _signal(children[fd], request["signal"])
    for child in children.values():
        while child["returncode"] is None and time.monotonic() - child["sent"] < EXIT_TIMEOUT_S:
            done, status = os.waitpid(child["pid"], os.WNOHANG)
            if done:
                child["returncode"] = os.waitstatus_to_exitcode(status)
                child["exit_s"] = time.monotonic() - child["sent"]
            else:
                time.sleep(0.01)
        if child["returncode"] is None:
            os.kill(child["pid"], signal.SIGKILL)
            os.waitpid(child["pid"], 0)
    for fd in children:
        os.close(fd)
    return [
        {"state_reached": c["state_reached"], "returncode": c["returncode"], "exit_s": c.get("exit_s")}
        for c in children.values()
    ]


def _signal(child: dict, name: str) -> None:
    child["sent"] = time.monotonic()
    try:
        os.kill(child["pid"], getattr(signal, name))
    except ProcessLookupError:
        pass


def main() -> None:
    gc.freeze()  # imported modules stay out of the children's collections (copy-on-write, exit)
    feeder, me = os.fork(), os.getpid()
    if feeder == 0:
        _feeder()
    try:
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            if line.strip():
                print(json.dumps(_serve(json.loads(line))), flush=True)
    finally:
        if os.getpid() == me:  # not in a node child unwinding through here
            os.kill(feeder, signal.SIGKILL)
            os.waitpid(feeder, 0)


if __name__ == "__main__":
    main()

"""affect_node, unchanged, in a process with Python's tracemalloc on: bench_leak.py starts it like
any node (`python benchmarks/leak_profiled_node.py --ros-args ...`) and asks for a heap snapshot
with SIGUSR1; the snapshot is written to $DUSE_LEAK_SNAPSHOT (then renamed into place, so the
reader never sees half a file). The node runs through its own entry point (`python -m`'s path),
so nothing here reaches into it."""

from __future__ import annotations

import gc
import os
import runpy
import signal
import tracemalloc

# The heavy libraries load before tracing starts (under tracemalloc, importing torch takes minutes);
# what they allocate at import is not what a stream leaks.
import cv2  # noqa: F401
import rclpy  # noqa: F401
import torch  # noqa: F401

tracemalloc.start(16)


def _dump(signum, frame) -> None:
    path = os.environ["DUSE_LEAK_SNAPSHOT"]
    gc.collect()
    tracemalloc.take_snapshot().dump(path + ".part")
    os.replace(path + ".part", path)


signal.signal(signal.SIGUSR1, _dump)
runpy.run_module("duse_ros.nodes.affect_node", run_name="__main__", alter_sys=True)

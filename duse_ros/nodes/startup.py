"""The nodes' first seconds: a SIGINT or SIGTERM that arrives while a node's modules are still being
imported (torch alone takes a second or more) is noted, not acted on, and the node stops as soon as
the imports are done, before it starts anything: exit 0, no traceback.

Python's default handler would raise KeyboardInterrupt inside whatever module was importing (a
traceback, exit code -2), SIGTERM's default kills the process (-15), and raising SystemExit from a
handler mid-import can leave an extension module half-loaded ("cannot load module more than once
per process"). So nothing happens inside the imports; run_node (nodes/common.py) reads the note.

This module imports nothing heavy on purpose. The console scripts enter through `entry_*` here;
`python -m duse_ros.nodes.<node>` calls `hold_signals()` at the top of the node module.
"""

from __future__ import annotations

import importlib
import signal

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_requested: list[int] = []


def note_stop(signum: int, frame=None) -> None:
    """A signal handler that only takes note (see stop_requested)."""
    _requested.append(signum)


def hold_signals() -> None:
    """From now on SIGINT and SIGTERM only take note; call in the main thread before heavy imports."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, note_stop)


def stop_requested() -> bool:
    """Has a stop signal been noted (by hold_signals' handler or run_node's)?"""
    return bool(_requested)


def _enter(module: str) -> None:
    hold_signals()
    importlib.import_module(module).main()


def entry_affect_node() -> None:
    """`affect_node` console script (ros2 run / ros2 launch)."""
    _enter("duse_ros.nodes.affect_node")


def entry_llm_bridge_node() -> None:
    """`llm_bridge_node` console script."""
    _enter("duse_ros.nodes.llm_bridge_node")

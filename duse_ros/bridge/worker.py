"""One background thread that handles the newest item: at most one in flight, one pending.

Submitting while an item is pending replaces it (the older one is superseded and never runs);
the item in flight is not interrupted, but `has_pending()` lets it stop retrying early. The
submitting thread (the ROS executor) never waits on the handler.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")


class LatestOnlyWorker(Generic[Item]):
    def __init__(
        self,
        handle: Callable[[Item], None],
        on_error: Callable[[BaseException], None],
        name: str = "latest-only-worker",
    ) -> None:
        self._handle = handle
        self._on_error = on_error
        self._cond = threading.Condition()
        self._pending: list[Item] = []  # zero or one item
        self._stopping = False
        self.stop_event = threading.Event()  # set by stop(); handlers wait on it instead of sleeping
        # Daemon: a request stuck in a socket read must not keep the process alive at shutdown.
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Item) -> Item | None:
        """Queue `item`; returns the pending item it superseded, if any."""
        with self._cond:
            if self._stopping:
                raise RuntimeError("worker is stopped")
            superseded = self._pending.pop() if self._pending else None
            self._pending.append(item)
            self._cond.notify()
            return superseded

    def has_pending(self) -> bool:
        with self._cond:
            return bool(self._pending)

    def stop(self, timeout: float) -> bool:
        """Drop the pending item, wake the handler's waits, join; True when the thread ended."""
        with self._cond:
            self._stopping = True
            self._pending.clear()
            self.stop_event.set()
            self._cond.notify_all()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                item = self._pending.pop()
            try:
                self._handle(item)
            except Exception as exc:  # a bug in one request must not end the worker
                self._on_error(exc)

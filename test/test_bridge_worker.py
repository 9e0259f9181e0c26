"""LatestOnlyWorker: one item in flight, the newest pending one supersedes older ones."""

import threading

import pytest

from duse_ros.bridge.worker import LatestOnlyWorker

WAIT_S = 5.0


class Recorder:
    """A handler that blocks on `gate` and records what it handled and how many ran at once."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Semaphore(0)
        self.handled: list = []
        self.running = self.max_running = 0
        self.errors: list = []
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)

    def handle(self, item) -> None:
        with self._lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        self.started.release()
        assert self.gate.wait(WAIT_S)
        if item == "boom":
            with self._lock:
                self.running -= 1
            raise RuntimeError("handler bug")
        with self._lock:
            self.running -= 1
            self.handled.append(item)
            self._done.notify_all()

    def wait_handled(self, count: int) -> bool:
        with self._lock:
            return self._done.wait_for(lambda: len(self.handled) >= count, WAIT_S)


@pytest.fixture
def recorder_and_worker():
    recorder = Recorder()
    worker = LatestOnlyWorker(recorder.handle, recorder.errors.append)
    yield recorder, worker
    recorder.gate.set()
    assert worker.stop(WAIT_S)


def test_newest_pending_item_supersedes_older_ones_while_one_is_in_flight(recorder_and_worker):
    recorder, worker = recorder_and_worker
    assert worker.submit(1) is None
    assert recorder.started.acquire(timeout=WAIT_S)  # 1 is in flight, blocked on the gate
    # The submitting thread never waits on the handler: these return while 1 is still blocked.
    assert worker.submit(2) is None
    assert worker.submit(3) == 2
    assert worker.submit(4) == 3
    assert worker.has_pending() and not recorder.gate.is_set()
    recorder.gate.set()
    assert recorder.wait_handled(2)
    assert recorder.handled == [1, 4]
    assert recorder.max_running == 1
    assert not worker.has_pending()


def test_a_failing_handler_is_reported_and_the_worker_goes_on(recorder_and_worker):
    recorder, worker = recorder_and_worker
    recorder.gate.set()
    worker.submit("boom")
    assert recorder.started.acquire(timeout=WAIT_S)
    worker.submit("after")
    assert recorder.wait_handled(1)
    assert recorder.handled == ["after"]
    assert [str(e) for e in recorder.errors] == ["handler bug"]


def test_stop_drops_the_pending_item_and_wakes_waits(recorder_and_worker):
    recorder, worker = recorder_and_worker
    worker.submit(1)
    assert recorder.started.acquire(timeout=WAIT_S)
    worker.submit(2)
    stopped = []
    stopper = threading.Thread(target=lambda: stopped.append(worker.stop(WAIT_S)))
    stopper.start()
    assert worker.stop_event.wait(WAIT_S)  # set by stop() together with dropping the pending item
    recorder.gate.set()
    stopper.join(WAIT_S)
    assert stopped == [True]
    assert recorder.handled == [1]
    with pytest.raises(RuntimeError, match="stopped"):
        worker.submit(3)

"""Small thread-safe meters for diagnostics: latency percentiles and event rates (ROS-free).

Both hold bounded memory however long the node runs, and both are safe to update from one
thread (a subscription callback, the inference worker) while another reads them (the
diagnostics timer).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np


class LatencyReservoir:
    """The most recent `capacity` samples (seconds), so percentiles describe the present.

    A uniform reservoir over the whole run would hide a slowdown that starts after an hour;
    diagnostics want "how slow is it now", which the last `capacity` samples answer.
    """

    def __init__(self, capacity: int = 1024):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._samples: deque[float] = deque(maxlen=capacity)
        self._count = 0
        self._lock = threading.Lock()

    def add(self, value: float) -> None:
        with self._lock:
            self._samples.append(float(value))
            self._count += 1

    @property
    def count(self) -> int:
        """Samples added since creation (not only those still held)."""
        with self._lock:
            return self._count

    def percentiles(self, *qs: float) -> tuple[float | None, ...]:
        """Percentiles (0-100, linear interpolation between closest ranks) of the held samples;
        None for each when there are none yet."""
        with self._lock:
            samples = np.fromiter(self._samples, dtype=np.float64, count=len(self._samples))
        if samples.size == 0:
            return tuple(None for _ in qs)
        return tuple(float(v) for v in np.percentile(samples, qs))


class RateMeter:
    """Events per second over the last `window_s` seconds of a monotonic clock.

    Falls to 0 when events stop (a stalled camera reads 0 Hz within `window_s`, not its last
    rate), and in the first `window_s` after creation divides by the time elapsed so far.
    """

    def __init__(self, window_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self._window_s = float(window_s)
        self._clock = clock
        self._start = clock()
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def tick(self) -> None:
        now = self._clock()
        with self._lock:
            self._times.append(now)
            self._prune(now)

    def rate_hz(self) -> float:
        now = self._clock()
        with self._lock:
            self._prune(now)
            span = min(self._window_s, now - self._start)
            return len(self._times) / span if span > 0 else 0.0

    def _prune(self, now: float) -> None:
        horizon = now - self._window_s
        while self._times and self._times[0] <= horizon:
            self._times.popleft()


class ArrivalMeter:
    """How many of the frames a camera sent arrive, judged from their header stamps alone.

    Every gap between two arrivals is a whole number of the camera's periods. A low percentile of
    the gaps between the stamps of the last `capacity` arrivals is a candidate (a camera at 30 fps
    with most frames lost still shows 33 ms between the pairs that got through); when no two
    neighbours got through (3 frames of 90 arriving), the period is the longest one of which every
    gap is a whole multiple, to within `tolerance` of a period (stamp jitter). The stamps' span
    over that period is how many frames were sent. A steady stream with every n-th frame dropped on
    purpose (a throttled publisher) has one gap throughout, of which nothing shorter can be told,
    and reads as complete; a camera whose stamps vary freely fits no shorter period either. Stamps
    that go back (a looped bag) start the count over.
    """

    def __init__(
        self,
        capacity: int = 64,
        min_frames: int = 16,
        gap_percentile: float = 10.0,
        tolerance: float = 0.2,
        max_rate_hz: float = 240.0,
    ):
        if capacity < min_frames or min_frames < 3:
            raise ValueError(f"need capacity >= min_frames >= 3, got {capacity}, {min_frames}")
        self._stamps: deque[int] = deque(maxlen=capacity)
        self._min_frames = min_frames
        self._percentile = gap_percentile
        self._tolerance = tolerance
        self._max_rate_hz = max_rate_hz
        self._lock = threading.Lock()

    def add(self, stamp_ns: int) -> None:
        with self._lock:
            if self._stamps and stamp_ns < self._stamps[-1]:
                self._stamps.clear()
            self._stamps.append(int(stamp_ns))

    def assess(self) -> tuple[float, float] | None:
        """(the camera's rate in Hz by its stamps, the share of its frames that arrived), or None
        until `min_frames` frames with distinct stamps are in."""
        with self._lock:
            stamps = np.fromiter(self._stamps, dtype=np.int64, count=len(self._stamps))
        gaps = np.diff(stamps)
        gaps = gaps[gaps > 0]
        if gaps.size < self._min_frames - 1:
            return None
        period = self._source_period(gaps.astype(np.float64))
        sent = (stamps[-1] - stamps[0]) / period + 1.0
        return 1e9 / period, float(min(1.0, (gaps.size + 1) / sent))

    def _source_period(self, gaps: np.ndarray) -> float:
        """The longest period (ns) of which every gap is a whole multiple: the candidate gap split
        in k = 1, 2, ... parts, each fit refined over all gaps (so jitter does not grow with the
        multiple), down to `max_rate_hz`; the candidate itself when none fits."""
        candidate = float(np.percentile(gaps, self._percentile, method="lower"))
        for k in range(1, int(candidate * self._max_rate_hz / 1e9) + 1):
            multiples = np.maximum(np.round(gaps / (candidate / k)), 1.0)
            period = float(gaps.sum() / multiples.sum())
            ratio = gaps / period
            if np.all(np.abs(ratio - np.round(ratio)) <= self._tolerance):
                return period
        return candidate

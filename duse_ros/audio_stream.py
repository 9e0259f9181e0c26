"""Microphone chunks (any rate) to a continuous stream at the model's rate, with honest stamps.

Each chunk is resampled with one `StreamResampler` per continuous stream, so chunk edges leave
no clicks, and output samples are stamped by counting from the stream's first header stamp.
A chunk whose stamp disagrees with that count by more than `max_drift_s` (a dropped chunk, a
restarted driver, a bag that loops) starts a new stream: new resampler, new stamp origin.
"""
from __future__ import annotations

import numpy as np

from .conversions import StreamResampler

NS = 1_000_000_000


class AudioStream:
    def __init__(self, target_rate: int, max_drift_s: float = 0.05):
        self.target_rate = int(target_rate)
        self.max_drift_ns = int(max_drift_s * NS)
        self.restarts = 0
        self._resampler: StreamResampler | None = None
        self._origin_ns = 0
        self._inputs = 0    # input samples since the origin
        self._outputs = 0   # output samples since the origin

    def push(self, stamp_ns: int, mono: np.ndarray, sample_rate: int) -> tuple[int, np.ndarray]:
        """Add one chunk of float32 mono at `sample_rate` stamped at its first sample; returns
        (stamp_ns of the first returned sample, samples at target_rate), possibly empty."""
        r = self._resampler
        if r is None or r.sample_rate != sample_rate or abs(stamp_ns - self._expected_ns()) > self.max_drift_ns:
            if r is not None:
                self.restarts += 1
            self._resampler = r = StreamResampler(sample_rate, self.target_rate)
            self._origin_ns, self._inputs, self._outputs = stamp_ns, 0, 0
        out = r.process(mono)
        first_ns = self._origin_ns + self._outputs * NS // self.target_rate
        self._inputs += mono.size
        self._outputs += out.size
        return first_ns, out

    def _expected_ns(self) -> int:
        return self._origin_ns + self._inputs * NS // self._resampler.sample_rate

"""Microphone chunks (any rate) to a continuous stream at the model's rate, with honest stamps.

Each chunk is resampled with one `StreamResampler` per continuous stream, so chunk edges leave
no clicks, and output samples are stamped by counting from the stream's first header stamp.
A chunk whose stamp disagrees with that count by more than `max_drift_s` (a dropped chunk, a
restarted driver, a bag that loops) starts a new stream: new resampler, new stamp origin
(counted in `restarts`).

Input sizes what gets allocated, so input is bounded before anything is: a chunk whose sample
rate lies outside [min_rate, max_rate] or that lasts longer than `max_chunk_s` is refused
(`AudioRefused`, counted in `refused`) before it is decoded or resampled.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from duse_ros.io.resample import StreamResampler
from duse_ros.timebase import NS


class AudioRefused(ValueError):
    """A chunk outside the stream's limits; `kind` names the limit (a diagnostics counter)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class AudioStream:
    def __init__(
        self,
        target_rate: int,
        max_drift_s: float = 0.05,
        min_rate: int = 1000,
        max_rate: int = 384000,
        max_chunk_s: float = 2.0,
    ):
        self.target_rate = int(target_rate)
        self.max_drift_ns = int(max_drift_s * NS)
        self.min_rate, self.max_rate, self.max_chunk_s = int(min_rate), int(max_rate), float(max_chunk_s)
        self.restarts = 0
        self.refused: Counter[str] = Counter()
        self._resampler: StreamResampler | None = None
        self._origin_ns = 0
        self._inputs = 0  # input samples since the origin
        self._outputs = 0  # output samples since the origin

    def check(self, sample_rate: int, frames: int) -> None:
        """Refuse (AudioRefused, counted) a chunk of `frames` samples per channel at `sample_rate`
        that lies outside the limits; call it before decoding the chunk."""
        if not self.min_rate <= sample_rate <= self.max_rate:
            self.refused["sample_rate"] += 1
            raise AudioRefused(
                "sample_rate",
                f"sample_rate {sample_rate} Hz is outside the accepted "
                f"{self.min_rate}..{self.max_rate} Hz (audio.min_sample_rate/max_sample_rate)",
            )
        if frames > self.max_chunk_s * sample_rate:
            self.refused["chunk_too_long"] += 1
            raise AudioRefused(
                "chunk_too_long",
                f"chunk of {frames} samples at {sample_rate} Hz lasts "
                f"{frames / sample_rate:.3g} s, more than audio.max_chunk_s = {self.max_chunk_s:g} s",
            )

    def push(self, stamp_ns: int, mono: np.ndarray, sample_rate: int) -> tuple[int, np.ndarray]:
        """Add one chunk of float32 mono at `sample_rate` stamped at its first sample; returns
        (stamp_ns of the first returned sample, samples at target_rate), possibly empty.
        Raises AudioRefused (nothing allocated) for a chunk outside the limits."""
        self.check(int(sample_rate), int(mono.size))
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

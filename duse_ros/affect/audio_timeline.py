"""The windower's audio: chunks placed on one sample grid by their header stamps, so a window's
span can be cut out to the sample (see duse_ros/affect/windowing.py for how windows use it).

The grid's origin is the first chunk's stamp; each later chunk lands at the sample its stamp
names, snapped onto the end of the buffered audio when within `jitter_samples` of it. A chunk that
starts before the previous one (a clock reset, a looping bag) starts the grid over; one that
overlaps the buffered audio loses its head; one that starts after it leaves a hole, which a cut
fills with zeros and reports as lower coverage (so are samples before the oldest buffered one).
Not thread-safe on its own: the windower calls it under its lock.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from duse_ros.timebase import NS


def round_div(num: int, den: int) -> int:
    """round(num / den) for integers, halves up (no float error on ns stamps)."""
    return (2 * num + den) // (2 * den)


class AudioTimeline:
    """Buffered mono samples at `rate` on a sample grid anchored at the first chunk's stamp."""

    def __init__(
        self,
        rate: int,
        counters: dict[str, int],
        *,
        jitter_samples: int,
        keep_samples: int,
        max_samples: int,
        max_chunks: int,
    ):
        self.rate = int(rate)
        self.counters = counters  # the windower's: audio_* counts land beside the frame counts
        self.jitter_samples = int(jitter_samples)
        self.keep_samples = int(keep_samples)
        self.max_samples = int(max_samples)
        self.max_chunks = int(max_chunks)
        self.reset()

    def reset(self) -> None:
        self.t0_ns: int | None = None  # timeline origin: time of sample index 0
        self._chunks: deque[tuple[int, np.ndarray]] = deque()  # (first sample index, samples)
        self.samples = 0  # samples held
        self.end: int | None = None  # sample index one past the newest buffered sample
        self._last_chunk_pos: int | None = None  # where the newest chunk was placed

    @property
    def chunks(self) -> int:
        return len(self._chunks)

    def sample_index(self, t_ns: int) -> int:
        return round_div((t_ns - self.t0_ns) * self.rate, NS)

    def end_ns(self) -> int | None:
        """Time just past the newest buffered sample (None without audio)."""
        if self.t0_ns is None or self.end is None:
            return None
        return self.t0_ns + round_div(self.end * NS, self.rate)

    def reaches(self, t_ns: int) -> bool:
        """Does the buffered audio reach `t_ns`?"""
        return self.t0_ns is not None and self.end is not None and self.end >= self.sample_index(t_ns)

    def add(self, stamp_ns: int, x: np.ndarray, newest_frame_ns: int | None) -> None:
        """Place one chunk (float32 mono, stamp = time of its first sample), then drop what no
        coming window can need: audio older than `keep_samples` before the newest frame (or the
        newest audio, whichever is older), and anything beyond `max_samples` / `max_chunks`."""
        if self.t0_ns is None:
            self.t0_ns = stamp_ns
            pos = 0
        else:
            pos = round_div((stamp_ns - self.t0_ns) * self.rate, NS)
            end = self.end
            if self._last_chunk_pos is not None and pos < self._last_chunk_pos - self.jitter_samples:
                # Starts before the previous chunk did: a clock reset or a loop. Start over.
                self.counters["audio_backwards_resets"] += 1
                self.reset()
                self.t0_ns = stamp_ns
                pos = 0
            elif end is not None and abs(pos - end) <= self.jitter_samples:
                pos = end  # contiguous, stamp jitter absorbed
            elif end is not None and pos > end:
                self.counters["audio_gaps"] += 1
            elif end is not None:  # pos < end: overlap; keep what we have, drop the head
                self.counters["audio_overlaps"] += 1
                x = x[end - pos :]
                pos = end
                if x.size == 0:
                    return
        self._chunks.append((pos, x))
        self.samples += x.size
        self._last_chunk_pos = pos
        self.end = pos + x.size if self.end is None else max(self.end, pos + x.size)
        cutoff = self.end - self.max_samples
        if newest_frame_ns is not None:
            ref = min(self.end, self.sample_index(newest_frame_ns))
            cutoff = max(cutoff, ref - self.keep_samples)
        while self._chunks and (
            self._chunks[0][0] + self._chunks[0][1].size <= cutoff or len(self._chunks) > self.max_chunks
        ):
            _, old = self._chunks.popleft()
            self.samples -= old.size
            self.counters["audio_chunks_evicted"] += 1

    def cut(self, end_ns: int, samples: int) -> tuple[np.ndarray | None, int | None, float]:
        """(the `samples` samples that end just before `end_ns`'s sample, holes zero-filled; the
        exact time of the first; the fraction real samples covered)."""
        if self.t0_ns is None or not self._chunks:
            return None, None, 0.0
        s1 = self.sample_index(end_ns)
        s0 = s1 - int(samples)
        n = s1 - s0
        if n <= 0:
            return None, None, 0.0
        out = np.zeros(n, dtype=np.float32)
        covered = 0
        for pos, x in self._chunks:
            a = max(pos, s0)
            b = min(pos + x.size, s1)
            if b > a:
                out[a - s0 : b - s0] = x[a - pos : b - pos]
                covered += b - a
        start = self.t0_ns + round_div(s0 * NS, self.rate)
        return out, start, covered / n

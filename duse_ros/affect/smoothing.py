"""Temporal smoothing of per-window class probabilities. ROS-free.

`SoftVoter(k)`: sliding-window soft voting (the Aff-Wild2 / ABAW style of temporal smoothing):
the published smoothed distribution is the plain mean of the last k probability vectors,
the newest included. k = 0 turns smoothing off (`add` returns None).

The caller adds one vector per window that produced a reading; a window with no reading (no face
for a video model) adds nothing, so it neither counts nor dilutes the mean. A vector whose length
differs from the previous ones (the class set changed) starts the vote over by itself
(counted in `shape_resets`); call `reset()` on a stream reset.
"""

from __future__ import annotations

from collections import deque

import numpy as np


class SoftVoter:
    """Sliding-window soft voting over the last K probability vectors. K=0: off."""

    def __init__(self, k: int):
        k = int(k)
        if k < 0:
            raise ValueError(f"k must be >= 0 (0 = off), got {k}")
        self.k = k
        self._buf: deque[np.ndarray] = deque(maxlen=max(k, 1))
        self.shape_resets = 0

    @property
    def enabled(self) -> bool:
        return self.k > 0

    @property
    def count(self) -> int:
        """How many vectors the current mean averages (0 when off or empty)."""
        return len(self._buf) if self.k else 0

    def reset(self) -> None:
        self._buf.clear()

    def add(self, probs: np.ndarray) -> np.ndarray | None:
        """Add one probability vector; return the mean of the last k (float64), or None when k == 0."""
        if not self.k:
            return None
        p = np.asarray(probs, dtype=np.float64).reshape(-1).copy()
        if p.size == 0 or not np.all(np.isfinite(p)):
            raise ValueError("probabilities must be a non-empty vector of finite numbers")
        if self._buf and self._buf[0].shape != p.shape:
            self.shape_resets += 1
            self.reset()
        self._buf.append(p)  # the deque's maxlen drops the oldest
        # Summed afresh (k is small): no drift from a running sum over hours of windows.
        return np.mean(np.stack(self._buf), axis=0)


class SoftVoters:
    """One SoftVoter per face (keyed by face id), so people are never averaged together. Holds the
    `max_keys` most recently used faces; a face gone longer is forgotten (its vote starts over).
    Not thread-safe: the caller serialises access."""

    def __init__(self, k: int, max_keys: int = 16):
        self._template = SoftVoter(k)  # validates k
        self.k = self._template.k
        self.max_keys = max(1, int(max_keys))
        self._voters: dict[str, SoftVoter] = {}

    def reset(self) -> None:
        self._voters.clear()

    def add(self, key: str, probs: np.ndarray) -> tuple[np.ndarray | None, int]:
        """SoftVoter.add for this face; returns (the mean or None when off, how many it averages)."""
        voter = self._voters.pop(key, None) or SoftVoter(self.k)
        self._voters[key] = voter  # most recently used last
        while len(self._voters) > self.max_keys:
            del self._voters[next(iter(self._voters))]
        return voter.add(probs), voter.count

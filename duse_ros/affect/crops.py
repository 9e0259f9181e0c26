"""Face crops made ahead of the window: the keyframe thread that runs face detection on the newest
frame at `face_detect_hz` of stream time, and the cache of preprocessed crops that each frame gets
on arrival and again when a keyframe moves its box, so a window finds its crops ready (see
duse_ros/affect/pipeline.py for how the pipeline uses both)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import numpy as np
import torch

from duse_ros.affect.boxes import Box, crop
from duse_ros.affect.faces import MultiFaceTrack
from duse_ros.affect.preprocess import FramePreprocessor
from duse_ros.affect.windowing import Window
from duse_ros.timebase import NS

log = logging.getLogger(__name__)


class FaceKeyframer:
    """Runs MultiFaceTrack.update on the newest frame at most `hz` times per second of stream time,
    on a thread of its own, so detection never delays the executor or a window; then
    `on_keyframe(stamp_ns, frame)`, on the same thread."""

    def __init__(self, track: MultiFaceTrack, hz: float, on_keyframe: Callable[[int, np.ndarray], None] | None = None):
        self.track = track
        self.on_keyframe = on_keyframe
        self._period_ns = int(NS / hz)
        self._next_ns: int | None = None
        self._slot: tuple[int, np.ndarray] | None = None
        self._busy = False
        self._cond = threading.Condition()
        self._running = True
        self.skipped = 0  # keyframes replaced by a newer one before the detector got to them
        self._thread = threading.Thread(target=self._work, name="duse-face-detect", daemon=True)
        self._thread.start()

    def set_hz(self, hz: float) -> None:
        self._period_ns = int(NS / hz)
        self._next_ns = None

    def offer(self, stamp_ns: int, frame: np.ndarray) -> None:
        due = self._next_ns is None or stamp_ns >= self._next_ns
        jumped_back = self._next_ns is not None and stamp_ns < self._next_ns - 2 * self._period_ns
        if not (due or jumped_back):
            return
        self._next_ns = stamp_ns + self._period_ns
        with self._cond:
            if self._slot is not None:
                self.skipped += 1
            self._slot = (stamp_ns, frame)
            self._cond.notify()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every offered keyframe has been processed (True) or the timeout passed."""
        with self._cond:
            return self._cond.wait_for(lambda: self._slot is None and not self._busy, timeout)

    def stop(self) -> None:
        with self._cond:
            self._running = False
            self._cond.notify_all()
        self._thread.join(timeout=5.0)

    def _work(self) -> None:
        while True:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
                while self._running and self._slot is None:
                    self._cond.wait()
                if not self._running:
                    return
                stamp_ns, frame = self._slot
                self._slot = None
                self._busy = True
            try:
                self.track.update(stamp_ns, frame)
                if self.on_keyframe is not None:
                    self.on_keyframe(stamp_ns, frame)
            except Exception:  # a detector failure must not end detection for the session
                log.exception("face detection failed on the frame stamped %d", stamp_ns)


class CropCache:
    """Preprocessed crops of the frames a window may still use: per frame stamp the frame, and per
    face track of that frame an entry [crop box, track version, (3, S, S) float32].

    A window's crop is taken from the cache only when the box asked for is exactly the entry's
    box (stamps are unique between resets, so the frame is the same). Entries written from a
    newer track version win: the executor thread (frame arrival, window time) and the face thread
    (after a keyframe) may both write one entry, preprocessing outside the lock, and an older
    answer never replaces a newer one. Bounded by time: entries more than `keep_ns` older than the
    newest frame are dropped.
    """

    def __init__(self, preprocess: FramePreprocessor, keep_ns: int):
        self._preprocess = preprocess
        self._keep_ns = int(keep_ns)
        self._lock = threading.Lock()
        self._frames: dict[int, np.ndarray] = {}
        self._entries: dict[int, dict[object, list]] = {}  # stamp -> {track: [box, version, array]}
        # Crops preprocessed: on a frame's arrival, by the face thread after a keyframe, and on a
        # window's critical path (a miss); crops a window found ready.
        self.counters = {"crops_on_arrival": 0, "crops_after_keyframe": 0, "crops_at_window": 0, "crops_reused": 0}

    def __len__(self) -> int:
        return len(self._frames)

    def clear(self) -> None:
        with self._lock:
            self._frames.clear()
            self._entries.clear()

    def _make(self, frames: list[np.ndarray], boxes: list[Box]) -> np.ndarray:
        return self._preprocess([crop(f, b) for f, b in zip(frames, boxes)]).numpy()

    def _store(self, stamp: int, frame: np.ndarray, box: Box, version: int, array: np.ndarray, track) -> None:
        if self._frames.get(stamp) is not frame:
            return  # pruned, or a new stream reused the stamp: this crop belongs to neither
        per_track = self._entries.setdefault(stamp, {})
        entry = per_track.get(track)
        if entry is None or version >= entry[1]:
            per_track[track] = [box, version, array]

    def _box(self, stamp: int, track) -> Box | None:
        entry = self._entries.get(stamp, {}).get(track)
        return None if entry is None else entry[0]

    def add(self, stamp: int, frame: np.ndarray, box: Box | None, version: int, track=0) -> None:
        """A frame (new, or again for another track); preprocess its crop now when its box is known."""
        with self._lock:
            if self._frames.get(stamp) is not frame:
                self._frames[stamp] = frame
                self._entries.pop(stamp, None)
                cutoff = stamp - self._keep_ns
                for old in [t for t in self._frames if t < cutoff]:
                    del self._frames[old]
                    self._entries.pop(old, None)
        if box is not None:
            array = self._make([frame], [box])[0]
            with self._lock:
                self.counters["crops_on_arrival"] += 1
                self._store(stamp, frame, box, version, array, track)

    def refresh(self, since_ns: int, boxes_of: Callable[[list[int], list[tuple]], tuple[list, int]], track=0) -> None:
        """Re-crop the track's entries from `since_ns` on whose box `boxes_of(stamps, shapes)` changed."""
        with self._lock:
            recent = sorted((t, f, self._box(t, track)) for t, f in self._frames.items() if t >= since_ns)
        if not recent:
            return
        boxes, version = boxes_of([t for t, _, _ in recent], [f.shape for _, f, _ in recent])
        todo = [(t, f, b) for (t, f, old), b in zip(recent, boxes) if b is not None and b != old]
        if not todo:
            return
        arrays = self._make([f for _, f, _ in todo], [b for _, _, b in todo])
        with self._lock:
            self.counters["crops_after_keyframe"] += len(todo)
            for (t, f, b), array in zip(todo, arrays):
                self._store(t, f, b, version, array, track)

    def video(self, window: Window, boxes: list[Box], version: int, track=0) -> torch.Tensor:
        """(T, 3, S, S) for the window's frames cropped to `boxes` (the track's crops)."""
        with self._lock:
            ready = []
            for t, f, b in zip(window.stamps_ns, window.frames, boxes):
                e = self._entries.get(t, {}).get(track)
                ready.append(e[2] if e is not None and self._frames.get(t) is f and e[0] == b else None)
        todo = [i for i, a in enumerate(ready) if a is None]
        if todo:
            arrays = self._make([window.frames[i] for i in todo], [boxes[i] for i in todo])
            with self._lock:
                for i, array in zip(todo, arrays):
                    ready[i] = array
                    self._store(window.stamps_ns[i], window.frames[i], boxes[i], version, array, track)
        with self._lock:
            self.counters["crops_at_window"] += len(todo)
            self.counters["crops_reused"] += len(ready) - len(todo)
        return torch.from_numpy(np.stack(ready))

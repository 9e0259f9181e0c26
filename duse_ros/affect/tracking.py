"""Face identities across detections: which box of this keyframe is which face of the last ones.
ROS-free, detector-free: boxes in, (face id, box) pairs out.

`BoxTracker.update(stamp_ns, boxes)` matches each box to a live track by overlap and motion:
every track predicts its box at the new stamp from its last box and its centre's velocity
(a constant-velocity model, extrapolated at most `lifetime_s`); a box and a track may match when
the predicted box overlaps the box by IoU >= `min_iou`, or when their centres lie within
`max_centre_shift` box sides of each other and their sizes differ by less than `max_size_ratio`.
Pairs are taken greedily, the nearest (size-normalised centre distance) first, so two faces whose
paths cross keep their ids as long as their motion tells them apart. A box left over is a new
track (a birth, with the next id); a track that no box matched is missed, and dies once it
has gone unseen for longer than `lifetime_s` of stamp time. A face is only missed by a keyframe
that looked: after a stall of the detector, a face found again where it was keeps its id. Ids count up from 1 for the tracker's whole life and
are never given twice, not even after `reset()`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from duse_ros.affect.boxes import Box, iou
from duse_ros.timebase import NS


@dataclass
class _Track:
    face_id: int
    box: tuple[float, float, float, float]  # last matched box
    seen_ns: int  # stamp of that box
    born_ns: int
    velocity: tuple[float, float] = (0.0, 0.0)  # centre motion, pixels per second
    matches: int = 1

    def predict(self, stamp_ns: int, horizon_ns: int) -> tuple[float, float, float, float]:
        dt = min(max(stamp_ns - self.seen_ns, 0), horizon_ns) / NS
        x, y, w, h = self.box
        return (x + self.velocity[0] * dt, y + self.velocity[1] * dt, w, h)


class BoxTracker:
    def __init__(
        self,
        lifetime_s: float = 1.0,
        min_iou: float = 0.2,
        max_centre_shift: float = 0.6,
        max_size_ratio: float = 1.6,
        velocity_smoothing: float = 0.5,
    ):
        if not lifetime_s > 0:
            raise ValueError(f"lifetime_s must be > 0, got {lifetime_s}")
        self.lifetime_s = float(lifetime_s)
        self.min_iou = float(min_iou)
        self.max_centre_shift = float(max_centre_shift)
        self.max_size_ratio = float(max_size_ratio)
        self.velocity_smoothing = float(velocity_smoothing)
        self._lifetime_ns = int(round(self.lifetime_s * NS))
        self._tracks: dict[int, _Track] = {}
        self._next_id = 1
        self.births = 0
        self.deaths = 0

    @property
    def live_ids(self) -> list[int]:
        return list(self._tracks)

    def born_ns(self, face_id: int) -> int | None:
        track = self._tracks.get(face_id)
        return None if track is None else track.born_ns

    def last_seen(self, face_id: int) -> tuple[int, tuple[float, float, float, float]] | None:
        """(stamp, box) of the face's last match, or None for an unknown or ended face."""
        track = self._tracks.get(face_id)
        return None if track is None else (track.seen_ns, track.box)

    def reset(self) -> None:
        """Forget every track (a new stream); ids go on counting up."""
        self.deaths += len(self._tracks)
        self._tracks.clear()

    def _cost(self, track: _Track, box: Box, stamp_ns: int) -> float | None:
        """Size-normalised centre distance of box to the track's prediction, or None: no match."""
        p = track.predict(stamp_ns, self._lifetime_ns)
        side_p, side_b = max(p[2], p[3]), max(box[2], box[3])
        if min(side_p, side_b) <= 0 or max(side_p, side_b) > self.max_size_ratio * min(side_p, side_b):
            return None
        shift = math.dist((p[0] + p[2] / 2, p[1] + p[3] / 2), (box[0] + box[2] / 2, box[1] + box[3] / 2))
        shift /= max(side_p, side_b)
        if shift <= self.max_centre_shift or iou(p, box) >= self.min_iou:
            return shift
        return None

    def update(self, stamp_ns: int, boxes: list[Box]) -> tuple[list[int], list[int]]:
        """Match one keyframe's boxes. Returns (the id of each box, in order; the ids that died).
        Stamps must not go backwards (call reset() first when the stream restarts)."""
        stamp_ns = int(stamp_ns)
        pairs = []
        for fid, track in self._tracks.items():
            for i, box in enumerate(boxes):
                cost = self._cost(track, box, stamp_ns)
                if cost is not None:
                    pairs.append((cost, fid, i))
        pairs.sort()
        ids: list[int | None] = [None] * len(boxes)
        taken: set[int] = set()
        for _, fid, i in pairs:
            if ids[i] is None and fid not in taken:
                ids[i] = fid
                taken.add(fid)
                self._match(self._tracks[fid], boxes[i], stamp_ns)
        dead = [fid for fid, t in self._tracks.items() if fid not in taken and stamp_ns - t.seen_ns > self._lifetime_ns]
        for fid in dead:
            del self._tracks[fid]
        self.deaths += len(dead)
        for i, box in enumerate(boxes):
            if ids[i] is None:
                fid, self._next_id = self._next_id, self._next_id + 1
                self._tracks[fid] = _Track(fid, tuple(float(v) for v in box), stamp_ns, stamp_ns)
                self.births += 1
                ids[i] = fid
        return ids, dead

    def _match(self, track: _Track, box: Box, stamp_ns: int) -> None:
        dt = (stamp_ns - track.seen_ns) / NS
        if dt > 0:
            (x0, y0, w0, h0), (x1, y1, w1, h1) = track.box, box
            measured = ((x1 + w1 / 2 - x0 - w0 / 2) / dt, (y1 + h1 / 2 - y0 - h0 / 2) / dt)
            a = self.velocity_smoothing if track.matches > 1 else 0.0
            track.velocity = tuple(a * v + (1 - a) * m for v, m in zip(track.velocity, measured))
        track.box, track.seen_ns = tuple(float(v) for v in box), stamp_ns
        track.matches += 1

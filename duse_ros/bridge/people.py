"""Which person the bridge speaks about when the affect node reads several faces.

affect_node publishes one EmotionState per face per window (face_id, face_roi). The bridge follows
one person (`person` parameter):
- `largest`: the face with the largest box (the nearest person, usually);
- `most_central`: the face whose box centre is nearest the image centre;
- any other value: that face id only (e.g. a ROS4HRI id another node chose).
Switching has hysteresis, on the readings' stamps: another face takes over only when its score
beats the followed face's by `margin` (relative) on every reading for `switch_s`, or at once when
the followed face has not been seen for `forget_s`. Readings about no face in particular
(face_id "": full-frame mode, audio-only, no face at all) always pass. `present()` counts the
faces seen within `forget_s` of the newest reading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..timebase import NS

RULES = ("largest", "most_central")


@dataclass(frozen=True)
class Sighting:
    face_id: str
    stamp_ns: int
    score: float  # higher is the better candidate under the rule


def face_score(rule: str, roi: tuple[int, int, int, int], image_size: tuple[int, int]) -> float:
    """The rule's score of a face box (x, y, w, h) in an image of (width, height); 0 when unknown."""
    width, height = image_size
    x, y, w, h = roi
    if width <= 0 or height <= 0 or w <= 0 or h <= 0:
        return 0.0
    if rule == "most_central":
        off = math.hypot(x + w / 2 - width / 2, y + h / 2 - height / 2)
        return max(0.0, 1.0 - off / math.hypot(width / 2, height / 2))
    return (w * h) / (width * height)


class PersonSelector:
    def __init__(self, person: str = "largest", margin: float = 0.25, switch_s: float = 1.5, forget_s: float = 2.0):
        if not person:
            raise ValueError("person must be 'largest', 'most_central' or a face id, not empty")
        if margin < 0 or switch_s < 0 or forget_s <= 0:
            raise ValueError(f"need margin >= 0, switch_s >= 0, forget_s > 0; got {margin}, {switch_s}, {forget_s}")
        self.person = person
        self.rule = person if person in RULES else ""
        self.margin = float(margin)
        self._switch_ns = int(round(switch_s * NS))
        self._forget_ns = int(round(forget_s * NS))
        self._seen: dict[str, tuple[int, float]] = {}  # face id -> (latest stamp, latest score)
        self._newest_ns = 0
        self.followed: str | None = None if self.rule else person
        self._challenger: tuple[str, int] | None = None  # (face id, first stamp it beat the followed)
        self.switches = 0

    def present(self) -> int:
        return sum(1 for stamp, _ in self._seen.values() if stamp >= self._newest_ns - self._forget_ns)

    def observe(self, sighting: Sighting) -> bool:
        """Record one reading's face; True when the reading is about the followed person."""
        if not sighting.face_id:
            return True
        if sighting.stamp_ns < self._newest_ns - self._forget_ns:  # stamps went back: a new stream
            self._seen.clear()
            self._challenger = None
            if self.rule:
                self.followed = None
        self._newest_ns = max(self._newest_ns, sighting.stamp_ns) if self._seen else sighting.stamp_ns
        self._seen[sighting.face_id] = (sighting.stamp_ns, sighting.score)
        for gone in [f for f, (t, _) in self._seen.items() if t < self._newest_ns - self._forget_ns]:
            del self._seen[gone]
        if not self.rule:
            return sighting.face_id == self.followed
        if self.followed is None or self.followed not in self._seen:
            self._follow(sighting.face_id)
            return True
        if sighting.face_id == self.followed:
            return True
        _, followed_score = self._seen[self.followed]
        if sighting.score > followed_score * (1.0 + self.margin):
            if self._challenger is None or self._challenger[0] != sighting.face_id:
                self._challenger = (sighting.face_id, sighting.stamp_ns)
            if sighting.stamp_ns - self._challenger[1] >= self._switch_ns:
                self._follow(sighting.face_id)
                return True
        elif self._challenger is not None and self._challenger[0] == sighting.face_id:
            self._challenger = None  # it fell back: the count starts over
        return False

    def _follow(self, face_id: str) -> None:
        if self.followed is not None and self.followed != face_id:
            self.switches += 1
        self.followed, self._challenger = face_id, None

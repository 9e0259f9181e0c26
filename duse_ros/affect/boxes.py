"""Face boxes: the one box type, its IoU, the square crop around a face and a window's crop boxes.
ROS-free; shared by detection (faces.py), identities (tracking.py) and crops (crops.py).

A `Box` is (x, y, w, h) in integer pixels of the source image. A detector returns bare boxes or
`Detection`s (box, score, five landmarks); `as_detection` makes the first the second (score 1).
A `CropBox` is a square crop box, optionally with the face's in-plane angle (`roll_deg`): `crop`
then cuts it turned back upright about the box's centre (eye alignment).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from duse_ros.affect.windowing import Window

Box = tuple[int, int, int, int]  # x, y, w, h in pixels
CropBox = tuple[int, int, int, int] | tuple[int, int, int, int, float]  # a Box, or a Box and an angle

# The five landmarks a detector with landmarks gives, in this order (the person's right/left).
LANDMARK_NAMES = ("right_eye", "left_eye", "nose", "mouth_right", "mouth_left")


@dataclass(frozen=True, eq=False)
class Detection:
    """One detected face: its box, the detector's score (0..1) and, when the detector gives them,
    the landmarks of LANDMARK_NAMES as a (5, 2) float32 array of (x, y) source pixels."""

    box: Box
    score: float = 1.0
    landmarks: np.ndarray | None = None

    @property
    def area(self) -> int:
        return self.box[2] * self.box[3]

    @property
    def roll_deg(self) -> float:
        """How far the face is turned in the image plane, from its eye line: degrees,
        counter-clockwise as seen in the image, 0 upright (and without landmarks)."""
        if self.landmarks is None:
            return 0.0
        (rx, ry), (lx, ly) = self.landmarks[0], self.landmarks[1]
        return -math.degrees(math.atan2(ly - ry, lx - rx))


def as_detection(found: Box | Detection) -> Detection:
    if isinstance(found, Detection):
        return found
    return Detection(tuple(int(v) for v in found))


def iou(a, b) -> float:
    """Intersection over union of two (x, y, w, h) boxes (ints or floats)."""
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def square_crop_box(box: Box, image_shape: tuple[int, ...], margin: float = 0.25) -> Box:
    """The square crop for a face box: side = max(w, h) * (1 + 2 * margin), centred on the box,
    then shifted (not shrunk) to lie inside the image; shrunk only when the side exceeds the
    image's shorter side. The crop always contains the whole box (clipped to the image)."""
    H, W = int(image_shape[0]), int(image_shape[1])
    x, y, w, h = box
    side = int(round(max(w, h) * (1.0 + 2.0 * margin)))
    side = max(1, min(side, H, W))
    cx, cy = x + w / 2.0, y + h / 2.0
    x0 = int(round(cx - side / 2.0))
    y0 = int(round(cy - side / 2.0))
    x0 = min(max(x0, 0), W - side)
    y0 = min(max(y0, 0), H - side)
    return (x0, y0, side, side)


def crop(frame: np.ndarray, box: CropBox, size: int | None = None) -> np.ndarray:
    """Slice (a view, no copy) and optionally resize to size x size. A box with a non-zero angle is
    cut rotated by it about its centre (a new array; pixels beyond the frame repeat its edge)."""
    x, y, w, h = box[:4]
    angle = box[4] if len(box) > 4 else 0.0
    if angle:
        import cv2

        side = size or w
        cx, cy = x + w / 2.0, y + h / 2.0
        m = cv2.getRotationMatrix2D((cx, cy), -angle, side / w)  # turns the face back upright
        m[0, 2] += side / 2.0 - cx
        m[1, 2] += side / 2.0 - cy
        return cv2.warpAffine(frame, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out = frame[y : y + h, x : x + w]
    if size:
        import cv2

        out = cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA if w > size else cv2.INTER_CUBIC)
    return out


def window_crop_boxes(
    window: Window,
    boxes: list[Box | None],
    margin: float,
    min_face_fraction: float,
    angles: list[float | None] | None = None,
) -> list[CropBox] | None:
    """One square crop box per window frame from the face boxes at its stamps (a frame without
    one takes the nearest frame's), or None when fewer than min_face_fraction of them have one.
    With `angles` (the face's roll at each stamp) each crop box carries its angle (aligned crops)."""
    have = [i for i, b in enumerate(boxes) if b is not None]
    n = len(window.frames)
    if n == 0 or not have or len(have) < min_face_fraction * n:
        return None
    out = []
    for i, frame in enumerate(window.frames):
        j = i if boxes[i] is not None else min(have, key=lambda k: (abs(k - i), k))
        square = square_crop_box(boxes[j], frame.shape, margin)
        out.append(square if angles is None else (*square, angles[j] or 0.0))
    return out

"""Face boxes: the one box type, its IoU, the square crop around a face and a window's crop boxes.
ROS-free; shared by detection (faces.py), identities (tracking.py) and crops (crops.py).

A `Box` is (x, y, w, h) in integer pixels of the source image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from duse_ros.affect.windowing import Window

Box = tuple[int, int, int, int]  # x, y, w, h in pixels


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


def crop(frame: np.ndarray, box: Box, size: int | None = None) -> np.ndarray:
    """Slice (a view, no copy) and optionally resize to size x size."""
    x, y, w, h = box
    out = frame[y : y + h, x : x + w]
    if size:
        import cv2

        out = cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA if w > size else cv2.INTER_CUBIC)
    return out


def window_crop_boxes(
    window: Window, boxes: list[Box | None], margin: float, min_face_fraction: float
) -> list[Box] | None:
    """One square crop box per window frame from the face boxes at its stamps (a frame without
    one takes the nearest frame's), or None when fewer than min_face_fraction of them have one."""
    have = [i for i, b in enumerate(boxes) if b is not None]
    n = len(window.frames)
    if n == 0 or not have or len(have) < min_face_fraction * n:
        return None
    out = []
    for i, frame in enumerate(window.frames):
        b = boxes[i]
        if b is None:
            b = boxes[min(have, key=lambda j: (abs(j - i), j))]
        out.append(square_crop_box(b, frame.shape, margin))
    return out

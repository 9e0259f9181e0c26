"""The live view: a keyframe drawn with what the node makes of each face (ROS-free; the node
publishes it as ~/debug_image only while someone subscribes, `make demo` saves a few as PNGs).

Each face read on the keyframe: its box and id in a colour of its own, the detector's score, the
landmarks, and its latest reading: label, confidence, one bar per class, and the reading's age
(the keyframe's stamp minus the end of the reading's window: how far the reading lags the picture).
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from duse_ros.affect.hri import Keyframe
from duse_ros.timebase import NS

_COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180)]
_FONT = cv2.FONT_HERSHEY_SIMPLEX


class LiveView:
    """The latest reading of each face (`on_reading`, any thread) and `draw(keyframe)`."""

    def __init__(self):
        self._lock = threading.Lock()
        self._readings: dict[str, object] = {}

    def on_reading(self, reading) -> None:
        if reading.face_id:
            with self._lock:
                self._readings[reading.face_id] = reading

    def forget_except(self, face_ids: list[str]) -> None:
        with self._lock:
            for gone in [f for f in self._readings if f not in face_ids]:
                del self._readings[gone]

    def draw(self, keyframe: Keyframe) -> np.ndarray:
        """The keyframe's frame (a copy, RGB) with every face read on it annotated."""
        self.forget_except(keyframe.tracked)
        image = np.ascontiguousarray(keyframe.frame[:, :, :3], dtype=np.uint8).copy()
        height = image.shape[0]
        scale = max(0.35, min(1.0, height / 960))
        line = max(1, int(round(2 * scale)))
        with self._lock:
            readings = dict(self._readings)
        for k, face in enumerate(keyframe.faces):
            colour = _COLOURS[_colour_index(face.face_id, k)]
            x, y, w, h = face.box
            cv2.rectangle(image, (x, y), (x + w, y + h), colour, line)
            if face.landmarks is not None:
                for px, py in face.landmarks:
                    cv2.circle(image, (int(round(px)), int(round(py))), max(2, line + 1), colour, -1)
            _text(image, f"{face.face_id} {face.score:.2f}", (x, max(12, y - 4)), scale, colour)
            reading = readings.get(face.face_id)
            if reading is not None:
                _reading_panel(image, reading, keyframe.stamp_ns, (x, y + h + 4), scale, colour)
        if not keyframe.faces:
            _text(image, "no face", (8, 24), scale, (255, 255, 255))
        return image


def _colour_index(face_id: str, fallback: int) -> int:
    digits = "".join(c for c in face_id if c.isdigit())
    return (int(digits) if digits else fallback) % len(_COLOURS)


def _text(image: np.ndarray, text: str, origin: tuple[int, int], scale: float, colour) -> None:
    thickness = max(1, int(round(scale * 1.5)))
    cv2.putText(image, text, origin, _FONT, 0.5 * scale * 1.6, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(image, text, origin, _FONT, 0.5 * scale * 1.6, colour, thickness, cv2.LINE_AA)


def _reading_panel(image: np.ndarray, reading, stamp_ns: int, origin: tuple[int, int], scale: float, colour) -> None:
    """Label, confidence and age on one line, then one bar per class (longest = 1.0)."""
    H, W = image.shape[:2]
    row = max(10, int(round(16 * scale)))
    bar_w = max(60, int(round(120 * scale)))
    names = list(reading.class_names)
    probs = np.asarray(reading.probabilities, dtype=np.float32)
    x0 = min(max(0, origin[0]), max(0, W - bar_w - 70))
    y0 = min(origin[1], max(0, H - row * (len(names) + 1) - 2))
    age = (stamp_ns - reading.window_end_ns) / NS
    _text(image, f"{reading.label} {reading.confidence:.2f}  {age:+.1f}s", (x0, y0 + row - 3), scale, colour)
    for i, (name, p) in enumerate(zip(names, probs)):
        top = y0 + row * (i + 1) + 2
        cv2.rectangle(image, (x0, top), (x0 + bar_w, top + row - 4), (40, 40, 40), -1)
        cv2.rectangle(image, (x0, top), (x0 + int(round(bar_w * float(p))), top + row - 4), colour, -1)
        _text(image, name[:9], (x0 + bar_w + 4, top + row - 5), scale * 0.8, (255, 255, 255))

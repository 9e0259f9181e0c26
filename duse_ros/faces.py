"""Face detection, tracking across a window, and face crops. ROS-free.

- `HaarFaceDetector`: OpenCV 4.x's frontal-face Haar cascade (shipped in `cv2.data.haarcascades`),
  run on a downscaled grey image (`detect_width` pixels wide) for speed (histogram equalisation
  is optional and off: on the test photo it added a false face larger than the real one);
  boxes come back in full-resolution pixels. Any object with `detect(rgb) -> list[Box]` can be
  used instead (`FaceDetector` protocol).
- `FaceTrack`: detection is too slow to run on every frame inside the node's latency budget, so it
  runs on SOME frames (keyframes, e.g. 5 Hz from a worker thread, `update`), and the track
  answers for any stamp (`box_at`): between two keyframes with a face the box is interpolated
  linearly; past the last (or before the first) it is held for up to `max_age_s`; a keyframe where
  the detector found no face is a "no face" answer for the stamps nearer to it than to a keyframe
  with a face. `crop_boxes_for_window` / `crops_for_window` only look boxes up (and slice the
  frames): no detection, cheap. The box lookups also return the track's version (it counts the
  changes to the keyframes), so a caller that cached something derived from the boxes knows
  which of two answers is newer.

Never a guess presented as a face reading: when fewer than `min_face_fraction` of a window's
frames have a box within `max_age_s`, `crops_for_window` returns ([], False).
"""
from __future__ import annotations

import os
import threading
from bisect import bisect_left
from collections import deque
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from duse_ros.windowing import Window

NS = 1_000_000_000

Box = tuple[int, int, int, int]  # x, y, w, h in pixels


@runtime_checkable
class FaceDetector(Protocol):
    def detect(self, rgb: np.ndarray) -> list[Box]: ...


def _to_grey(img: np.ndarray) -> np.ndarray:
    import cv2

    if img.ndim == 2:
        return img
    if img.ndim == 3 and img.shape[2] == 1:
        return img[:, :, 0]
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_RGBA2GRAY)
    raise ValueError(f"expected an RGB, RGBA or grey image, got shape {img.shape}")


class HaarFaceDetector:
    """OpenCV Haar cascade face detector.

    `cascade`: a file name in `cv2.data.haarcascades` or a path. `detect_width`: the image is
    downscaled to this width before detection (never upscaled; 0 or None: full resolution).
    `min_size_frac`: smallest face side as a fraction of the image's shorter side.
    A detector instance is not safe to call from two threads at once (OpenCV's cascade is not);
    `detect` takes a lock, so sharing one is correct but serial.
    """

    def __init__(self, cascade: str = "haarcascade_frontalface_default.xml", detect_width: int = 320,
                 min_size_frac: float = 0.1, scale_factor: float = 1.1, min_neighbors: int = 5,
                 equalize: bool = False):
        import cv2

        path = cascade if os.path.isfile(cascade) else os.path.join(cv2.data.haarcascades, cascade)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Haar cascade not found: {cascade!r} (looked in {cv2.data.haarcascades})")
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise ValueError(f"could not load the Haar cascade {path}")
        self.cascade_path = path
        self.detect_width = int(detect_width or 0)
        self.min_size_frac = float(min_size_frac)
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.equalize = bool(equalize)
        self._lock = threading.Lock()

    def detect(self, rgb: np.ndarray) -> list[Box]:
        import cv2

        grey = _to_grey(np.asarray(rgb))
        if grey.dtype != np.uint8:
            raise ValueError(f"expected a uint8 image, got {grey.dtype}")
        if grey.size == 0:
            return []
        h, w = grey.shape
        scale = 1.0
        if self.detect_width and w > self.detect_width:
            scale = self.detect_width / w
            grey = cv2.resize(grey, (self.detect_width, max(1, round(h * scale))),
                              interpolation=cv2.INTER_AREA)
        if self.equalize:
            grey = cv2.equalizeHist(grey)
        side = max(1, int(self.min_size_frac * min(grey.shape)))
        with self._lock:
            found = self._cascade.detectMultiScale(grey, scaleFactor=self.scale_factor,
                                                   minNeighbors=self.min_neighbors, minSize=(side, side))
        boxes: list[Box] = []
        for x, y, bw, bh in (found if len(found) else []):
            x0, y0 = round(x / scale), round(y / scale)
            x1, y1 = min(w, round((x + bw) / scale)), min(h, round((y + bh) / scale))
            if x1 > x0 and y1 > y0:
                boxes.append((x0, y0, x1 - x0, y1 - y0))
        return boxes


def iou(a: Box, b: Box) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0, min(ay1, by1) - max(a[1], b[1]))
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
    out = frame[y:y + h, x:x + w]
    if size:
        import cv2

        out = cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA if w > size else cv2.INTER_CUBIC)
    return out


class FaceTrack:
    """Face boxes over time, from detections on keyframes; see the module docstring.

    `margin`: crop margin on each side, as a fraction of the box's longer side.
    `max_age_s`: how far in time a keyframe's box may be held (and the longest distance to the
    nearer keyframe when interpolating). `smoothing`: exponential smoothing of the box between
    consecutive keyframes of the same face (0: off; 0.5: halfway between the previous box and the
    new detection). Thread-safe: `update` (slow, runs the detector) and `crops_for_window` (cheap)
    may be called from different threads; detection runs outside the track's state lock.
    """

    def __init__(self, detector: FaceDetector, margin: float = 0.25, max_age_s: float = 0.5,
                 smoothing: float = 0.5, *, history_s: float = 5.0, max_keyframes: int = 256,
                 iou_threshold: float = 0.3, keep_area_ratio: float = 0.5):
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.detector = detector
        self.margin = float(margin)
        self.max_age_s = float(max_age_s)
        self.smoothing = float(smoothing)
        self.history_s = float(history_s)
        self.iou_threshold = float(iou_threshold)
        self.keep_area_ratio = float(keep_area_ratio)
        self._max_age_ns = int(round(self.max_age_s * NS))
        self._history_ns = int(round(self.history_s * NS))
        self._lock = threading.Lock()
        self._detect_lock = threading.Lock()
        self._stamps: deque[int] = deque(maxlen=max_keyframes)  # ascending keyframe stamps
        self._boxes: deque[tuple[float, float, float, float] | None] = deque(maxlen=max_keyframes)
        self._version = 0  # +1 on every change of the keyframes (update, reset)
        self.counters: dict[str, int] = {
            "detections": 0, "detections_with_face": 0, "detections_multi_face": 0,
            "track_resets": 0, "windows_with_face": 0, "windows_without_face": 0,
            "late_keyframes": 0,
        }

    # ------------------------------------------------------------------ keyframes
    def reset(self) -> None:
        with self._lock:
            self._stamps.clear()
            self._boxes.clear()
            self._version += 1
            self.counters["track_resets"] += 1

    @property
    def num_keyframes(self) -> int:
        return len(self._stamps)

    def _choose(self, boxes: list[Box], prev: tuple[float, ...] | None) -> Box | None:
        if not boxes:
            return None
        largest = max(boxes, key=lambda b: b[2] * b[3])
        if prev is None or len(boxes) == 1:
            return largest
        pb = tuple(int(round(v)) for v in prev)
        best = max(boxes, key=lambda b: iou(b, pb))
        if iou(best, pb) >= self.iou_threshold and \
                best[2] * best[3] >= self.keep_area_ratio * largest[2] * largest[3]:
            return best  # stay on the tracked face unless a much larger one appeared
        return largest

    def update(self, stamp_ns: int, rgb: np.ndarray) -> Box | None:
        """Run the detector on this frame, pick the face (the largest; the one overlapping the
        recent track by IoU >= iou_threshold is preferred unless less than keep_area_ratio of the
        largest's area), record it as a keyframe and return its (smoothed) box, or None."""
        stamp_ns = int(stamp_ns)
        with self._detect_lock:
            boxes = [tuple(int(v) for v in b) for b in self.detector.detect(rgb)]
        with self._lock:
            self._version += 1
            self.counters["detections"] += 1
            if len(boxes) > 1:
                self.counters["detections_multi_face"] += 1
            if self._stamps and stamp_ns <= self._stamps[-1]:
                if stamp_ns == self._stamps[-1]:
                    return self._int_box(self._boxes[-1])
                if self._stamps[-1] - stamp_ns > self._max_age_ns:  # a loop or a clock reset
                    self._stamps.clear()
                    self._boxes.clear()
                    self.counters["track_resets"] += 1
            prev = None
            if self._stamps and self._boxes[-1] is not None and abs(stamp_ns - self._stamps[-1]) <= self._max_age_ns:
                prev = self._boxes[-1]
            chosen = self._choose(boxes, prev)
            box: tuple[float, float, float, float] | None = None
            if chosen is not None:
                self.counters["detections_with_face"] += 1
                box = tuple(float(v) for v in chosen)
                if prev is not None and self.smoothing > 0 and iou(chosen, self._int_box(prev)) >= self.iou_threshold:
                    a = self.smoothing
                    box = tuple(a * p + (1 - a) * c for p, c in zip(prev, box))
            if self._stamps and stamp_ns < self._stamps[-1]:
                # A slightly late keyframe (out of order): insert in place, no smoothing chain.
                self.counters["late_keyframes"] += 1
                if len(self._stamps) == self._stamps.maxlen:
                    self._stamps.popleft()
                    self._boxes.popleft()
                i = bisect_left(list(self._stamps), stamp_ns)
                self._stamps.insert(i, stamp_ns)
                self._boxes.insert(i, box if chosen is None else tuple(float(v) for v in chosen))
            else:
                self._stamps.append(stamp_ns)
                self._boxes.append(box)
            cutoff = self._stamps[-1] - self._history_ns
            while self._stamps and self._stamps[0] < cutoff:
                self._stamps.popleft()
                self._boxes.popleft()
            return self._int_box(box)

    @staticmethod
    def _int_box(b) -> Box | None:
        return None if b is None else tuple(int(round(v)) for v in b)

    # ------------------------------------------------------------------ lookup
    def _box_at(self, stamps: list[int], boxes: list, t: int) -> tuple[float, ...] | None:
        if not stamps:
            return None
        i = bisect_left(stamps, t)
        if i < len(stamps) and stamps[i] == t:
            return boxes[i]
        before = i - 1 if i > 0 else None
        after = i if i < len(stamps) else None
        # The nearer keyframe decides (a miss nearer than a hit means no face).
        cand = [j for j in (before, after) if j is not None]
        near = min(cand, key=lambda j: abs(stamps[j] - t))
        if abs(stamps[near] - t) > self._max_age_ns or boxes[near] is None:
            return None
        if before is not None and after is not None and boxes[before] is not None \
                and boxes[after] is not None and stamps[after] - stamps[before] <= 2 * self._max_age_ns:
            t0, t1 = stamps[before], stamps[after]
            a = (t - t0) / (t1 - t0)
            return tuple((1 - a) * p + a * q for p, q in zip(boxes[before], boxes[after]))
        return boxes[near]

    def box_at(self, stamp_ns: int) -> Box | None:
        """The track's box at this stamp (interpolated or held), or None."""
        with self._lock:
            return self._int_box(self._box_at(list(self._stamps), list(self._boxes), int(stamp_ns)))

    def boxes_for_stamps(self, stamps_ns: list[int]) -> list[Box | None]:
        return self._boxes_and_version(stamps_ns)[0]

    def _boxes_and_version(self, stamps_ns) -> tuple[list[Box | None], int]:
        with self._lock:
            stamps, boxes, version = list(self._stamps), list(self._boxes), self._version
        return [self._int_box(self._box_at(stamps, boxes, int(t))) for t in stamps_ns], version

    def crop_boxes(self, stamps_ns: list[int], shapes: list[tuple[int, ...]]) -> tuple[list[Box | None], int]:
        """The square crop box (with margin, inside an image of that shape) at each stamp, or
        None where the track has no box; and the track's version they were read at."""
        boxes, version = self._boxes_and_version(stamps_ns)
        return [None if b is None else square_crop_box(b, shape, self.margin)
                for b, shape in zip(boxes, shapes)], version

    def crop_boxes_for_window(self, window: "Window", min_face_fraction: float = 0.5
                              ) -> tuple[list[Box] | None, int]:
        """One square crop box per window frame (see `crops_for_window`), or None when fewer
        than min_face_fraction of the frames have a box; and the track's version."""
        boxes, version = self._boxes_and_version(window.stamps_ns)
        have = [i for i, b in enumerate(boxes) if b is not None]
        n = len(window.frames)
        if n == 0 or not have or len(have) < min_face_fraction * n:
            with self._lock:
                self.counters["windows_without_face"] += 1
            return None, version
        crop_boxes = []
        for i, frame in enumerate(window.frames):
            b = boxes[i]
            if b is None:
                b = boxes[min(have, key=lambda j: (abs(j - i), j))]
            crop_boxes.append(square_crop_box(b, frame.shape, self.margin))
        with self._lock:
            self.counters["windows_with_face"] += 1
        return crop_boxes, version

    def crops_for_window(self, window: "Window", min_face_fraction: float = 0.5,
                         size: int | None = None) -> tuple[list[np.ndarray], bool]:
        """One square crop (with margin, inside the image) per window frame, from the track's box
        at that frame's stamp. Frames of a window with a face whose own stamp has no box use the
        box of the nearest frame that has one. Returns (crops, True), or ([], False) when fewer
        than min_face_fraction of the frames have a box. `size`: resize the crops to size x size
        (default: views of the frames at native resolution, no copy)."""
        boxes, _ = self.crop_boxes_for_window(window, min_face_fraction)
        if boxes is None:
            return [], False
        return [crop(frame, box, size) for frame, box in zip(window.frames, boxes)], True


def load_sample_face() -> np.ndarray:
    """The bundled public-domain portrait (duse_ros/data/astronaut.jpg) as RGB uint8, 512x512."""
    import cv2
    from pathlib import Path

    path = Path(__file__).with_name("data") / "astronaut.jpg"
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"bundled sample image {path} is missing or unreadable")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

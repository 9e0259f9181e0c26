"""Face detection, tracking across a window, and face crops. ROS-free.

- `MtcnnFaceDetector` (the default): a trained CNN cascade, scored detections with five landmarks
  (eyes, nose, mouth corners) that turn crops upright (`align`).
- `HaarFaceDetector`: OpenCV 4.x's frontal-face Haar cascade (shipped in `cv2.data.haarcascades`),
  run on a downscaled grey image (`detect_width` pixels wide) for speed (histogram equalisation
  is optional and off: on the test photo it added a false face larger than the real one);
  boxes come back in full-resolution pixels, unscored. Any object with
  `detect(rgb) -> list[Box | Detection]` can be used instead (`FaceDetector` protocol).
- `FaceKeyframes`: detection is too slow to run on every frame inside the node's latency budget, so
  it runs on SOME frames (keyframes, e.g. 5 Hz from a worker thread), and one face's keyframes
  answer for any stamp (`box_at`): between two keyframes with the face the box is interpolated
  linearly; past the last (or before the first) it is held for up to `max_age_s`; a keyframe that
  missed the face is a "no face" answer for the stamps nearer to it than to one that saw it.
- `MultiFaceTrack`: the detector on keyframes (`update`), the faces to read (by salience),
  stable ids (`BoxTracker`, tracking.py) and a FaceKeyframes per id; `faces_for_window` and
  `crops_for_window` only look boxes up (and slice the frames): no detection, cheap. Box lookups
  also return the track's version (it counts the changes to the keyframes), so a caller that
  cached something derived from the boxes knows which of two answers is newer.

Never a guess presented as a face reading: when fewer than `min_face_fraction` of a window's
frames have a box within `max_age_s`, the face is not in that window.
Boxes, IoU and square crops: duse_ros/affect/boxes.py.
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from duse_ros.affect.boxes import Box, Detection, as_detection, crop, iou, square_crop_box, window_crop_boxes
from duse_ros.affect.tracking import BoxTracker
from duse_ros.timebase import NS

if TYPE_CHECKING:  # pragma: no cover
    from duse_ros.affect.windowing import Window


@runtime_checkable
class FaceDetector(Protocol):
    def detect(self, rgb: np.ndarray) -> list[Box | Detection]: ...


class MtcnnFaceDetector:
    """The trained MTCNN (duse_ros/models/mtcnn.py; weights from duse_ros/weights.py):
    scored detections with five landmarks. `min_face_size`: the smallest face side searched, in
    source pixels (it sets the image pyramid's first scale, so it sets the cost); `threshold`: the
    score a face must reach. The whole frame is searched at its own resolution (no detect_width:
    the pyramid does the scaling). Safe to call from several threads (no state between calls)."""

    def __init__(self, model=None, min_face_size: int = 32, threshold: float = 0.9):
        if model is None:
            from duse_ros.weights import load_detector

            model = load_detector()
        self.model = model
        self.min_face_size = max(12, int(min_face_size))
        self.threshold = float(threshold)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        image = np.asarray(rgb)
        if image.dtype != np.uint8:
            raise ValueError(f"expected a uint8 image, got {image.dtype}")
        if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
            image = np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=2)
        elif image.ndim == 3 and image.shape[2] == 4:
            image = image[:, :, :3]
        elif image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an RGB, RGBA or grey image, got shape {image.shape}")
        if min(image.shape[:2]) < 12:
            return []
        H, W = image.shape[:2]
        faces = self.model.detect(image, self.min_face_size, self.threshold)
        out = []
        for (x1, y1, x2, y2), score, marks in zip(faces.boxes, faces.scores, faces.landmarks):
            x0, y0 = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
            x1i, y1i = min(W, int(np.ceil(x2))), min(H, int(np.ceil(y2)))
            if x1i > x0 and y1i > y0:
                out.append(Detection((x0, y0, x1i - x0, y1i - y0), float(score), marks.copy()))
        return out


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

    def __init__(
        self,
        cascade: str = "haarcascade_frontalface_default.xml",
        detect_width: int = 320,
        min_size_frac: float = 0.1,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        equalize: bool = False,
    ):
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
            grey = cv2.resize(grey, (self.detect_width, max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        if self.equalize:
            grey = cv2.equalizeHist(grey)
        side = max(1, int(self.min_size_frac * min(grey.shape)))
        with self._lock:
            found = self._cascade.detectMultiScale(
                grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(side, side)
            )
        boxes: list[Box] = []
        for x, y, bw, bh in found if len(found) else []:
            x0, y0 = round(x / scale), round(y / scale)
            x1, y1 = min(w, round((x + bw) / scale)), min(h, round((y + bh) / scale))
            if x1 > x0 and y1 > y0:
                boxes.append((x0, y0, x1 - x0, y1 - y0))
        return boxes


class FaceKeyframes:
    """One face's boxes over time, from the keyframes that saw it (or missed it); see the module
    docstring. MultiFaceTrack keeps one per face id and feeds it in stamp order.

    `margin`: crop margin on each side, as a fraction of the box's longer side.
    `max_age_s`: how far in time a keyframe's box may be held (and the longest distance to the
    nearer keyframe when interpolating). `smoothing`: exponential smoothing of the box between
    consecutive keyframes of the face (0: off; 0.5: halfway between the previous box and the new
    detection). `history_s`: keyframes older than this before the newest are dropped. Thread-safe.
    """

    def __init__(
        self,
        margin: float = 0.25,
        max_age_s: float = 0.5,
        smoothing: float = 0.5,
        *,
        history_s: float = 5.0,
        max_keyframes: int = 256,
        iou_threshold: float = 0.3,
    ):
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.margin = float(margin)
        self.max_age_s = float(max_age_s)
        self.smoothing = float(smoothing)
        self.iou_threshold = float(iou_threshold)
        self._max_age_ns = int(round(self.max_age_s * NS))
        self._history_ns = int(round(float(history_s) * NS))
        self._lock = threading.Lock()
        self._stamps: deque[int] = deque(maxlen=max_keyframes)  # ascending keyframe stamps
        self._boxes: deque[tuple[float, ...] | None] = deque(maxlen=max_keyframes)  # x, y, w, h, roll

    @property
    def num_keyframes(self) -> int:
        return len(self._stamps)

    @property
    def last_keyframe_ns(self) -> int | None:
        with self._lock:
            return self._stamps[-1] if self._stamps else None

    def record(self, stamp_ns: int, found: Box | None, roll_deg: float = 0.0) -> Box | None:
        """Keyframe `stamp_ns` (later than the last one) saw the face at `found` turned by
        `roll_deg` in the image plane, or missed it (None); returns the box kept for it (smoothed
        with the previous keyframe's box when the two overlap by IoU >= iou_threshold and are at
        most max_age_s apart)."""
        stamp_ns = int(stamp_ns)
        with self._lock:
            box = None if found is None else (*(float(v) for v in found), float(roll_deg))
            if (
                box is not None
                and self.smoothing > 0
                and self._stamps
                and self._boxes[-1] is not None
                and stamp_ns - self._stamps[-1] <= self._max_age_ns
                and iou(box, self._boxes[-1]) >= self.iou_threshold
            ):
                a = self.smoothing
                box = tuple(a * p + (1 - a) * c for p, c in zip(self._boxes[-1], box))
            self._stamps.append(stamp_ns)
            self._boxes.append(box)
            cutoff = stamp_ns - self._history_ns
            while self._stamps and self._stamps[0] < cutoff:
                self._stamps.popleft()
                self._boxes.popleft()
            return _int_box(box)

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
        if (
            before is not None
            and after is not None
            and boxes[before] is not None
            and boxes[after] is not None
            and stamps[after] - stamps[before] <= 2 * self._max_age_ns
        ):
            t0, t1 = stamps[before], stamps[after]
            a = (t - t0) / (t1 - t0)
            return tuple((1 - a) * p + a * q for p, q in zip(boxes[before], boxes[after]))
        return boxes[near]

    def box_at(self, stamp_ns: int) -> Box | None:
        """The face's box at this stamp (interpolated or held), or None."""
        return self.boxes_for_stamps([stamp_ns])[0]

    def boxes_for_stamps(self, stamps_ns: list[int]) -> list[Box | None]:
        return self.poses_for_stamps(stamps_ns)[0]

    def poses_for_stamps(self, stamps_ns: list[int]) -> tuple[list[Box | None], list[float | None]]:
        """The box and the roll (degrees, 0.1 steps) at each stamp, None where there is none."""
        with self._lock:
            stamps, boxes = list(self._stamps), list(self._boxes)
        poses = [self._box_at(stamps, boxes, int(t)) for t in stamps_ns]
        return [_int_box(p) for p in poses], [None if p is None else round(p[4], 1) for p in poses]

    def crop_boxes(self, stamps_ns: list[int], shapes: list[tuple[int, ...]], align: bool = False) -> list:
        """The square crop box (with margin, inside an image of that shape; with the roll when
        `align`) at each stamp, or None where the face has no box."""
        boxes, rolls = self.poses_for_stamps(stamps_ns)
        out = []
        for b, roll, shape in zip(boxes, rolls, shapes):
            square = None if b is None else square_crop_box(b, shape, self.margin)
            out.append(square if square is None or not align else (*square, roll))
        return out


def _int_box(b) -> Box | None:
    return None if b is None else tuple(int(round(v)) for v in b[:4])


@dataclass(frozen=True)
class WindowFace:
    """One tracked face in one window."""

    face_id: int
    crop_boxes: list  # one square crop box (CropBox: with the roll when aligned) per window frame
    face_box: Box  # the face's own box at the newest window frame that has one
    version: int  # the tracker's version the boxes were read at


MAX_CANDIDATES = 32  # detections per keyframe given ids; more (a crowd) are counted, lowest scores first


class MultiFaceTrack:
    """Up to `max_faces` faces over time, each with an id that stays with it.

    Every keyframe: detections narrower than `min_face_size` pixels are skipped (counted:
    `faces_too_small`); of the rest, at most MAX_CANDIDATES (highest scores first; the others
    counted in `faces_over_cap`) get ids from `BoxTracker` (duse_ros/affect/tracking.py: overlap
    and motion, misses survived for `lifetime_s`, ids never reused). Each id keeps a salience: the
    average over keyframes of its detection score, 0 where it was missed (exponential, weight
    `salience_rate`). A face seen steadily nears its score; a flicker (a background false positive
    on a third of the keyframes) stays low; a newcomer needs a few keyframes. The `max_faces` most
    salient faces found on the keyframe are read (those read on the last keyframe get `stickiness`
    added, so two alike do not swap); ties go to the higher score, then the larger box; the others
    are counted (`faces_not_read`). Each face read keeps a FaceKeyframes (a keyframe where it was
    not read is a miss for it), so interpolation, holding and misses work per face. A face's
    keyframes outlive its death by `history_s`, for the windows that still cover it.

    A face takes part in a window only when its track reaches back over the whole window (born no
    later than the window's first frame plus `max_age_s`, the hold before a first keyframe) and
    has a box on at least min_face_fraction of its frames; at most `max_faces` per window, the
    most salient first. `align`: crop boxes carry the face's roll from its eye landmarks, so the
    crops come out upright. Thread-safe: `update` on the face thread, lookups elsewhere.
    """

    def __init__(
        self,
        detector: FaceDetector | None,
        max_faces: int = 1,
        margin: float = 0.25,
        max_age_s: float = 0.5,
        smoothing: float = 0.5,
        lifetime_s: float = 1.0,
        *,
        history_s: float = 5.0,
        iou_threshold: float = 0.3,
        min_face_size: int = 0,
        align: bool = False,
        salience_rate: float = 0.5,
        stickiness: float = 0.25,
    ):
        if max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {max_faces}")
        if not 0.0 < salience_rate <= 1.0:
            raise ValueError(f"salience_rate must be in (0, 1], got {salience_rate}")
        self.detector = detector
        self.max_faces = int(max_faces)
        self.margin = float(margin)
        self.max_age_s = float(max_age_s)
        self.min_face_size = int(min_face_size)
        self.align = bool(align)
        self.salience_rate, self.stickiness = float(salience_rate), float(stickiness)
        self._max_age_ns = int(round(self.max_age_s * NS))
        self._history_ns = int(round(float(history_s) * NS))
        self._face_args = dict(
            margin=margin,
            max_age_s=max_age_s,
            smoothing=smoothing,
            history_s=history_s,
            iou_threshold=iou_threshold,
        )
        self.ids = BoxTracker(lifetime_s=lifetime_s)
        self._faces: dict[int, FaceKeyframes] = {}  # keyframes of the faces read, live or recently ended
        self._born: dict[int, int] = {}
        self._salience: dict[int, float] = {}  # every live id
        self._read: list[tuple[int, Detection]] = []  # the faces read on the last keyframe
        self._last_ns: int | None = None
        self._version = 0
        self._lock = threading.Lock()
        self._detect_lock = threading.Lock()
        self.counters: dict[str, int] = {
            "detections": 0,
            "detections_with_face": 0,
            "detections_multi_face": 0,
            "track_resets": 0,
            "windows_with_face": 0,
            "windows_without_face": 0,
            "late_keyframes": 0,
            "tracks": 0,
            "track_births": 0,
            "track_deaths": 0,
            "faces_too_small": 0,
            "faces_over_cap": 0,
            "faces_not_read": 0,
        }

    # ------------------------------------------------------------------ keyframes
    def reset(self) -> None:
        with self._lock:
            self._reset_locked()

    def _reset_locked(self) -> None:
        self.ids.reset()
        self._faces.clear()
        self._born.clear()
        self._salience.clear()
        self._read = []
        self._last_ns = None
        self._version += 1
        self.counters["track_resets"] += 1
        self._count_tracks()

    def _count_tracks(self) -> None:
        self.counters.update(tracks=len(self.ids.live_ids), track_births=self.ids.births, track_deaths=self.ids.deaths)

    def update(self, stamp_ns: int, rgb: np.ndarray) -> dict[int, Box]:
        """Detect on this frame and record the keyframe; {face id: its (smoothed) box} of the faces read."""
        with self._detect_lock:
            found = self.detector.detect(rgb)
        return self.record(stamp_ns, found)

    def record(self, stamp_ns: int, found: list[Box | Detection]) -> dict[int, Box]:
        """Record the faces found on the frame stamped `stamp_ns`; {face id: its (smoothed) box} of
        the faces read (see the class docstring)."""
        stamp_ns = int(stamp_ns)
        detections = [as_detection(f) for f in found]
        with self._lock:
            self._version += 1
            self.counters["detections"] += 1
            if self._last_ns is not None and stamp_ns <= self._last_ns:
                if self._last_ns - stamp_ns <= self._max_age_ns:
                    self.counters["late_keyframes"] += 1  # ids are matched in stamp order only
                    return {}
                self._reset_locked()  # a loop or a clock reset
            self._last_ns = stamp_ns
            big = [d for d in detections if min(d.box[2], d.box[3]) >= self.min_face_size]
            self.counters["faces_too_small"] += len(detections) - len(big)
            big.sort(key=lambda d: (-d.score, -d.area))
            self.counters["faces_over_cap"] += max(0, len(big) - MAX_CANDIDATES)
            big = big[:MAX_CANDIDATES]
            self.counters["detections_with_face"] += bool(big)
            self.counters["detections_multi_face"] += len(big) > 1
            ids, _ = self.ids.update(stamp_ns, [d.box for d in big])
            seen = dict(zip(ids, big))
            live = set(self.ids.live_ids)
            rate = self.salience_rate
            self._salience = {
                f: (1 - rate) * self._salience.get(f, 0.0) + rate * (seen[f].score if f in seen else 0.0) for f in live
            }
            was_read = {f for f, _ in self._read}
            ranked = sorted(
                seen,
                key=lambda f: (
                    -(self._salience[f] + self.stickiness * (f in was_read)),
                    -seen[f].score,
                    -seen[f].area,
                    f,
                ),
            )
            read = ranked[: self.max_faces]
            self.counters["faces_not_read"] += len(ranked) - len(read)
            out: dict[int, Box] = {}
            for face_id in read:
                face = self._faces.get(face_id)
                if face is None:
                    face = self._faces[face_id] = FaceKeyframes(**self._face_args)
                    self._born[face_id] = stamp_ns
                out[face_id] = face.record(stamp_ns, seen[face_id].box, seen[face_id].roll_deg)
            for face_id, face in self._faces.items():
                if face_id in live and face_id not in out:
                    face.record(stamp_ns, None)  # not read on this keyframe: a miss for it
            self._read = [(f, seen[f]) for f in read]
            for face_id in [
                f
                for f, face in self._faces.items()
                if f not in live and (face.last_keyframe_ns or 0) < stamp_ns - self._history_ns
            ]:
                del self._faces[face_id], self._born[face_id]
            self._count_tracks()
            return out

    # ------------------------------------------------------------------ lookup
    def face_ids(self) -> list[int]:
        """Faces with keyframes (read, live or ended recently enough to matter to a window)."""
        with self._lock:
            return list(self._faces)

    def tracked_ids(self) -> list[int]:
        """The live faces that have been read (REP-155's tracked faces)."""
        with self._lock:
            live = set(self.ids.live_ids)
            return [f for f in self._faces if f in live]

    def read_faces(self) -> list[tuple[int, Detection]]:
        """(face id, detection) of each face read on the last keyframe, most salient first."""
        with self._lock:
            return list(self._read)

    def salience(self, face_id: int) -> float:
        with self._lock:
            return self._salience.get(face_id, 0.0)

    def crop_boxes(self, stamps_ns: list[int], shapes: list[tuple[int, ...]], face_id: int) -> tuple[list, int]:
        """FaceKeyframes.crop_boxes for one face (all None for a face that is gone), and the version."""
        with self._lock:
            face, version = self._faces.get(face_id), self._version
            if face is None:
                return [None] * len(stamps_ns), version
            return face.crop_boxes(stamps_ns, shapes, self.align), version

    def faces_for_window(self, window: Window, min_face_fraction: float = 0.5) -> list[WindowFace]:
        """The faces this window shows (see the class docstring), most salient first."""
        out = []
        with self._lock:
            version = self._version
            for face_id, face in self._faces.items():
                if self._born[face_id] - self._max_age_ns > window.start_ns:
                    continue  # born inside the window: its first reading waits for a full one
                boxes, rolls = face.poses_for_stamps(window.stamps_ns)
                crop_boxes = window_crop_boxes(
                    window, boxes, self.margin, min_face_fraction, rolls if self.align else None
                )
                if crop_boxes is not None:
                    newest = next(b for b in reversed(boxes) if b is not None)
                    out.append(WindowFace(face_id, crop_boxes, newest, version))
            out.sort(key=lambda f: (-self._salience.get(f.face_id, 0.0), -f.face_box[2] * f.face_box[3], f.face_id))
            out = out[: self.max_faces]
            self.counters["windows_with_face" if out else "windows_without_face"] += 1
        return out

    def crops_for_window(
        self, window: Window, min_face_fraction: float = 0.5, size: int | None = None
    ) -> tuple[list[np.ndarray], bool]:
        """One square crop (with margin, inside the image) per window frame of the window's first
        face (see faces_for_window), or ([], False) when it shows none. `size`: resize the crops
        to size x size (default: views of the frames, no copy)."""
        faces = self.faces_for_window(window, min_face_fraction)
        if not faces:
            return [], False
        return [crop(frame, box, size) for frame, box in zip(window.frames, faces[0].crop_boxes)], True

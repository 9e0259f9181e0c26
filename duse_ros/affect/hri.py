"""ROS4HRI (REP-155) without ROS: duse_ros readings in hri_msgs' terms, and faces found by another node.

- `EXPRESSIONS`: duse_ros class name -> hri_msgs/Expression's expression string (its vocabulary:
  neutral, happy, sad, angry, surprised, disgusted, scared, ... disappointed ...). The one table.
- `CLASSES_OF_EXPRESSION`: the other way, hri_msgs/Expression's string -> duse_ros class, for
  readings another node publishes (the bridge's ros4hri input, duse-eval-bag's providers).
- Expression's valence and arousal (-1..+1, no "unknown" value) come from
  duse_ros.classes.valence_arousal: derived from the class probabilities, not regressed.
- `Keyframe` / `FaceObservation`: the faces the node's own detector read on one keyframe, for the
  REP-155 face topics (`roi`, `cropped`, `aligned`, `landmarks`) and the live view;
  `normalized_roi` and `facial_landmarks` put them in hri_msgs' normalised terms.
- `ExternalFaces`: with `face_source: ros4hri`, faces, ids and aligned crops come from an
  hri_face_detect-style node (/humans/faces/tracked, /humans/faces/<id>/aligned and /roi), keyed
  by the source image's stamp; a window of the camera stream takes, for each tracked face, the
  crop of each of its frames' stamps.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from dataclasses import dataclass, field

import numpy as np
import torch

from duse_ros.classes import VALENCE_AROUSAL, valence_arousal

# duse_ros class -> hri_msgs/Expression.expression (the message's string constants).
EXPRESSIONS: dict[str, str] = {
    "neutral": "neutral",
    "happiness": "happy",
    "sadness": "sad",
    "anger": "angry",
    "surprise": "surprised",
    "disgust": "disgusted",
    "fear": "scared",
    "contempt": "skeptical",  # hri_msgs has no contempt; the one-sided sneer reads as scepticism
    "anxiety": "scared",
    "helplessness": "vulnerable",
    "disappointment": "disappointed",
}

# hri_msgs/Expression.expression -> duse_ros class. The inverse of EXPRESSIONS where it is one to
# one, plus hri names we never publish that are plainly one of our classes. "scared" stands for
# fear (EXPRESSIONS sends anxiety there too). Names not here (pleading, bored, confused, ...) have
# no class: consumers count them apart (see `class_of_expression`).
CLASSES_OF_EXPRESSION: dict[str, str] = {
    **{hri: ours for ours, hri in EXPRESSIONS.items() if ours != "anxiety"},
    "furious": "anger",
    "annoyed": "anger",
    "horrified": "fear",
    "amazed": "surprise",
    "despaired": "helplessness",
}


def class_of_expression(expression: str) -> str | None:
    """The duse_ros class an hri_msgs/Expression string names, or None (unmappable)."""
    return CLASSES_OF_EXPRESSION.get(expression.strip().lower())


# REP-155 topic names.
FACES_TRACKED = "/humans/faces/tracked"


# hri_msgs/FacialLandmarks: 70 points (dlib/OpenPose order); the indices of the five our detector
# gives (duse_ros/affect/boxes.py LANDMARK_NAMES order): the pupils, the nose tip, the mouth corners.
FACIAL_LANDMARKS = 70
LANDMARK_INDICES = (68, 69, 30, 48, 54)  # RIGHT_PUPIL, LEFT_PUPIL, NOSE, MOUTH_OUTER_RIGHT, MOUTH_OUTER_LEFT
ALIGNED_SIZE = 128  # side of the /aligned face images, pixels


@dataclass(frozen=True, eq=False)
class FaceObservation:
    """One face read on a keyframe: its published id, box (x, y, w, h source pixels), detector
    score, landmarks ((5, 2) source pixels, or None) and in-plane roll (degrees)."""

    face_id: str
    box: tuple[int, int, int, int]
    score: float
    landmarks: np.ndarray | None = None
    roll_deg: float = 0.0


@dataclass(frozen=True, eq=False)
class Keyframe:
    """A frame the face detector ran on: its source stamp, the frame (RGB), the faces tracked now
    and those read on it (most salient first)."""

    stamp_ns: int
    frame: np.ndarray
    tracked: list[str] = field(default_factory=list)
    faces: list[FaceObservation] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.frame.shape[1]), int(self.frame.shape[0])


def normalized_roi(box, width: int, height: int) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of a pixel box, each in [0, 1] (hri_msgs/NormalizedRegionOfInterest2D)."""
    x, y, w, h = box
    return (
        min(max(x / width, 0.0), 1.0),
        min(max(y / height, 0.0), 1.0),
        min(max((x + w) / width, 0.0), 1.0),
        min(max((y + h) / height, 0.0), 1.0),
    )


def facial_landmarks(
    landmarks: np.ndarray | None, score: float, width: int, height: int
) -> list[tuple[float, float, float]]:
    """hri_msgs/FacialLandmarks' 70 points as (x, y, c), normalised to [0, 1]: the points we have
    at their indices with the detector's score as c; every other point absent (0, 0, c = 0)."""
    points = [(0.0, 0.0, 0.0)] * FACIAL_LANDMARKS
    if landmarks is not None:
        for index, (x, y) in zip(LANDMARK_INDICES, landmarks):
            points[index] = (min(max(float(x) / width, 0.0), 1.0), min(max(float(y) / height, 0.0), 1.0), float(score))
    return points


def face_topic(face_id: str, leaf: str) -> str:
    return f"/humans/faces/{face_id}/{leaf}"


def unmapped(class_names) -> list[str]:
    """Classes the tables above cannot express (a model with other class names)."""
    return [c for c in class_names if c not in EXPRESSIONS or c not in VALENCE_AROUSAL]


def expression_of(class_names, probabilities) -> tuple[str, float, float, float]:
    """(hri expression, confidence, valence, arousal) of one class distribution."""
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    if p.size != len(class_names) or p.size == 0:
        raise ValueError(f"{p.size} probabilities for {len(class_names)} classes")
    best = int(np.argmax(p))
    valence, arousal = valence_arousal(class_names, p)
    return EXPRESSIONS[class_names[best]], float(p[best]), valence, arousal


class ExternalFaces:
    """Faces another node tracks, by id: their aligned crops and boxes by source-image stamp.

    A face takes part in a window when it is tracked now, its first crop is no later than the
    window's first frame (plus half a frame spacing: its first reading waits for a full window),
    and at least min_face_fraction of the window's frames have a crop of the same stamp (within
    half the window's frame spacing); a frame without one takes the nearest frame's. At most
    `max_faces` per window, the largest box first. Crops are preprocessed on arrival.
    Thread-safe: the executor adds, windows read.
    """

    def __init__(self, preprocess, keep_ns: int, max_faces: int = 1):
        self._preprocess = preprocess
        self._keep_ns = int(keep_ns)
        self.max_faces = int(max_faces)
        self._lock = threading.Lock()
        self._tracked: list[str] = []
        self._crops: dict[str, dict[int, np.ndarray]] = {}  # id -> stamp -> (3, S, S) float32
        self._rois: dict[str, dict[int, tuple[float, float, float, float]]] = {}  # normalised xmin, ymin, xmax, ymax
        self._first_ns: dict[str, int] = {}
        self.counters = {
            "tracks": 0,
            "crops_in": 0,
            "crops_untracked": 0,
            "windows_with_face": 0,
            "windows_without_face": 0,
        }

    def reset(self) -> None:
        with self._lock:
            self._crops.clear()
            self._rois.clear()
            self._first_ns.clear()

    def set_tracked(self, face_ids: list[str]) -> None:
        """The ids tracked now; a face no longer listed is gone (REP-155: its id means nothing more)."""
        with self._lock:
            self._tracked = list(dict.fromkeys(face_ids))
            for gone in [f for f in self._crops if f not in self._tracked]:
                del self._crops[gone]
                self._rois.pop(gone, None)
                self._first_ns.pop(gone, None)
            self.counters["tracks"] = len(self._tracked)

    def add_crop(self, face_id: str, stamp_ns: int, rgb: np.ndarray) -> None:
        array = self._preprocess([rgb]).numpy()[0]
        with self._lock:
            if face_id not in self._tracked:
                self.counters["crops_untracked"] += 1
                return
            self.counters["crops_in"] += 1
            crops = self._crops.setdefault(face_id, {})
            crops[int(stamp_ns)] = array
            self._first_ns.setdefault(face_id, int(stamp_ns))
            _prune(crops, int(stamp_ns) - self._keep_ns)

    def add_roi(self, face_id: str, stamp_ns: int, xmin: float, ymin: float, xmax: float, ymax: float) -> None:
        with self._lock:
            if face_id in self._tracked:
                rois = self._rois.setdefault(face_id, {})
                rois[int(stamp_ns)] = (xmin, ymin, xmax, ymax)
                _prune(rois, int(stamp_ns) - self._keep_ns)

    def faces_for_window(self, window, min_face_fraction: float) -> list[tuple[str, tuple | None, torch.Tensor]]:
        """(face id, box in the source image or None, (T, 3, S, S) clip) per face, largest first."""
        n = len(window.stamps_ns)
        tol = (window.end_ns - window.start_ns) // max(2 * (n - 1), 1)
        height, width = window.frames[-1].shape[:2]
        out = []
        with self._lock:
            for face_id in self._tracked:
                crops = self._crops.get(face_id)
                if not crops or self._first_ns[face_id] > window.start_ns + tol:
                    continue
                stamps = sorted(crops)
                picked = [_nearest(stamps, t, tol) for t in window.stamps_ns]
                have = [i for i, s in enumerate(picked) if s is not None]
                if not have or len(have) < min_face_fraction * n:
                    continue
                arrays = [
                    crops[picked[i] if picked[i] is not None else picked[min(have, key=lambda j: abs(j - i))]]
                    for i in range(n)
                ]
                box = None
                rois = self._rois.get(face_id)
                if rois:
                    roi_stamps = sorted(rois)
                    near = _nearest(roi_stamps, window.end_ns, window.end_ns - window.start_ns)
                    if near is not None:
                        box = _pixel_box(rois[near], width, height)
                out.append((face_id, box, torch.from_numpy(np.stack(arrays))))
            self.counters["windows_with_face" if out else "windows_without_face"] += 1
        out.sort(key=lambda f: -(f[1][2] * f[1][3] if f[1] else 0))
        return out[: self.max_faces]


def _prune(by_stamp: dict, cutoff: int) -> None:
    for old in [t for t in by_stamp if t < cutoff]:
        del by_stamp[old]


def _nearest(stamps: list[int], t: int, tol: int) -> int | None:
    i = bisect_left(stamps, t)
    near = [stamps[j] for j in (i - 1, i) if 0 <= j < len(stamps)]
    if not near:
        return None
    best = min(near, key=lambda s: abs(s - t))
    return best if abs(best - t) <= tol else None


def _pixel_box(roi, width: int, height: int) -> tuple[int, int, int, int]:
    xmin, ymin, xmax, ymax = (min(max(float(v), 0.0), 1.0) for v in roi)
    x0, y0 = int(round(xmin * width)), int(round(ymin * height))
    return (x0, y0, max(0, int(round(xmax * width)) - x0), max(0, int(round(ymax * height)) - y0))

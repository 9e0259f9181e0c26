"""The affect pipeline without ROS: frames and audio in, one `Reading` per face per window out.

    add_frame / add_audio ─> Windower ─> face crops ─> preprocess ─> InferenceEngine ─> SoftVoter ─> on_reading
                     └─> face detector thread (keyframes at `face_detect_hz` of data time)

The caller's thread (the ROS executor) only buffers, cuts windows and crops; face detection and
the model run on their own threads. `on_reading` is called from the engine's worker thread.

Latency: the work between a window's newest frame and its submission to the model is kept to
the newest frame alone. Each frame is cropped and preprocessed when it arrives, with the face
box the track has for it then; after each keyframe the face thread re-crops the recent frames
whose boxes that keyframe changed (interpolation between keyframes). A window then finds all
its crops ready, made with exactly the boxes the track gives at window time; any that is not
(the face thread fell behind) is made on the spot. A frame that completes a window is not a
keyframe (the next one is), so detection does not compete with the window for the CPU.

Several people: up to `max_faces` faces per window (MultiFaceTrack gives each a stable id), each
cropped and smoothed on its own; one window's faces go to the model as one job of N clips (one
forward, the audio shared), and each comes back as a Reading with its face id and box. With
`face_source="ros4hri"` faces, ids and aligned crops come from another node (`external`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace

import numpy as np
import torch

from duse_ros.affect import settings as affect_settings
from duse_ros.affect.boxes import Box
from duse_ros.affect.crops import CropCache, FaceKeyframer
from duse_ros.affect.engine import InferenceEngine, Job, Result, normalises_on_device
from duse_ros.affect.faces import FaceDetector, HaarFaceDetector, MtcnnFaceDetector, MultiFaceTrack
from duse_ros.affect.hri import ExternalFaces, FaceObservation, Keyframe
from duse_ros.affect.preprocess import FramePreprocessor
from duse_ros.affect.smoothing import SoftVoters
from duse_ros.affect.stats import LatencyReservoir
from duse_ros.affect.windowing import Window, Windower
from duse_ros.models.base import AffectModel
from duse_ros.timebase import NS

log = logging.getLogger(__name__)


# Values of Reading.modality; equal to duse_ros/msg/EmotionState's MODALITY_* constants.
MODALITY_NONE, MODALITY_VIDEO, MODALITY_AUDIO, MODALITY_AUDIO_VISUAL = 0, 1, 2, 3
LABEL_NO_FACE = "no_face"


_D = affect_settings.DEFAULTS


@dataclass
class PipelineConfig:
    """Windowing, face and inference settings: the affect node's parameters of the same names,
    with their defaults, ranges and meaning in duse_ros/affect/settings.py."""

    span_s: float = _D["span_s"]
    stride_s: float = _D["stride_s"]
    max_gap_s: float = _D["max_gap_s"]
    face_mode: str = _D["face_mode"]
    max_faces: int = _D["max_faces"]
    face_lifetime_s: float = _D["face_lifetime_s"]
    face_source: str = _D["face_source"]
    face_detector: str = _D["face_detector"]
    face_detect_threshold: float = _D["face_detect_threshold"]
    face_min_size: int = _D["face_min_size"]
    face_align: bool = _D["face_align"]
    face_margin: float = _D["face_margin"]
    face_detect_hz: float = _D["face_detect_hz"]
    face_detect_sync: bool = _D["face_detect_sync"]
    face_detect_width: int = _D["face_detect_width"]
    min_face_fraction: float = _D["min_face_fraction"]
    no_face_policy: str = _D["no_face_policy"]
    smoothing_window: int = _D["smoothing_window"]
    queue_depth: int = _D["queue_depth"]
    max_batch: int = _D["max_batch"]
    max_window_age_s: float = _D["max_window_age_s"]
    device: str = _D["device"]
    precision: str = _D["precision"]

    def __post_init__(self):
        for f in fields(self):
            spec = affect_settings.BY_NAME[f.name]
            reason = spec.check(getattr(self, f.name))
            if reason:
                raise ValueError(reason)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


# The pipeline settings that apply while running: the parameter table says which are live.
LIVE = frozenset(affect_settings.LIVE) & set(PipelineConfig.names())


@dataclass
class Reading:
    """Everything an EmotionState carries, without ROS types."""

    window_index: int
    window_start_ns: int
    window_end_ns: int
    modality: int
    class_names: list[str]
    probabilities: np.ndarray  # empty for MODALITY_NONE
    label: str
    confidence: float
    smoothed_probabilities: np.ndarray  # empty when smoothing is off or no reading
    smoothed_label: str
    smoothed_confidence: float
    smoothing_count: int
    face_found: bool
    frames_used: int
    audio_samples_used: int
    audio_rate: int
    latency_s: float  # model forward time (0 for MODALITY_NONE)
    face_id: str = ""  # the face read ("" : none, or the whole frame in full_frame mode)
    face_box: Box | None = None  # its box (x, y, w, h) in the source image at the window's end
    image_size: tuple[int, int] = (0, 0)  # (width, height) of the source image


def face_label(face_id: int) -> str:
    """A tracker's face id as published (short, unique in a run, a valid ROS name segment)."""
    return f"f{face_id}"


@dataclass
class _WindowMeta:
    """What a reading needs of its window once the clips are built. The frames are not kept: a job
    waiting in the queue (seconds under load) would hold its window's camera frames, 16 x 0.9 MB at
    640x480, beyond the ring buffer that bounds them."""

    index: int
    start_ns: int
    end_ns: int
    num_frames: int
    image_size: tuple[int, int]
    face_found: bool
    modality: int
    submitted_monotonic: float
    faces: list[tuple[str, Box | None]] = field(default_factory=list)  # (face id, box) per clip, in order


class AffectPipeline:
    def __init__(
        self,
        model: AffectModel,
        config: PipelineConfig,
        on_reading: Callable[[Reading], None],
        detector: FaceDetector | None = None,
        stamp_age: Callable[[int], float | None] | None = None,
        on_faces: Callable[[Keyframe], None] | None = None,
    ):
        """stamp_age(stamp_ns): how old data of that stamp is now, in seconds, or None when the
        caller's clock cannot tell; it lets max_window_age_s count transport delay too.
        on_faces(keyframe): after each keyframe (own detection only), the frame, the faces tracked
        and those read on it (affect/hri.py Keyframe), called on the face thread."""
        self.model = model
        self._on_faces = on_faces
        self._stamp_age = stamp_age
        self.config = config
        self.spec = model.input_spec
        self.on_reading = on_reading
        self.windower = Windower(
            num_frames=self.spec.num_frames,
            span_s=config.span_s,
            stride_s=config.stride_s,
            max_gap_s=config.max_gap_s,
            use_audio=self.spec.uses_audio,
            audio_rate=self.spec.audio_rate,
            audio_s=self.spec.audio_s,
        )
        self.voter = SoftVoters(config.smoothing_window, max_keys=2 * config.max_faces + 1)  # per face
        self._voter_lock = threading.Lock()
        self.track: MultiFaceTrack | None = None
        self.external: ExternalFaces | None = None
        self._keyframer: FaceKeyframer | None = None
        normalise = not normalises_on_device(config.device)  # a GPU engine takes uint8 crops
        if config.face_mode == "detect" and config.face_source == "ros4hri":
            self.external = ExternalFaces(
                FramePreprocessor(self.spec, normalise),
                keep_ns=int(self.windower.buffer_s * NS),
                max_faces=config.max_faces,
            )
        elif config.face_mode == "detect":
            self.track = MultiFaceTrack(
                detector or make_detector(config),
                max_faces=config.max_faces,
                margin=config.face_margin,
                lifetime_s=config.face_lifetime_s,
                min_face_size=config.face_min_size,
                align=config.face_align,
            )
        self.engine = InferenceEngine(
            model,
            device=config.device,
            precision=config.precision,
            queue_depth=config.queue_depth,
            max_batch=config.max_batch,
            on_result=self._on_result,
        )
        self.counters = {
            "no_face_windows": 0,
            "no_face_skipped": 0,
            "audio_only_windows": 0,
            "windows_unusable": 0,
            "readings": 0,
        }
        self.end_to_end = LatencyReservoir(1024)  # window complete -> reading made (s)
        self._last_epoch = 0
        self._crops = CropCache(FramePreprocessor(self.spec, normalise), keep_ns=int(self.windower.buffer_s * NS))

    # -------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.engine.start()
        if self.track is not None:
            self._keyframer = FaceKeyframer(self.track, self.config.face_detect_hz, self._on_keyframe)

    def stop(self) -> None:
        self.engine.stop()
        if self._keyframer is not None:
            self._keyframer.stop()
            self._keyframer = None
        # Frames and crops are held until the next stream; a stopped pipeline holds none.
        self.windower.reset("pipeline stopped")
        self._crops.clear()

    def update(self, **changes) -> None:
        """Apply the settings that may change while running: those the parameter table marks live
        (affect/settings.py LIVE) that are pipeline settings; ValueError for others or bad values."""
        refused = set(changes) - LIVE
        if refused:
            raise ValueError(f"not changeable while running: {sorted(refused)}")
        config = replace(self.config, **changes)  # validates
        self.config = config
        if "smoothing_window" in changes:
            with self._voter_lock:
                self.voter = SoftVoters(config.smoothing_window, max_keys=2 * config.max_faces + 1)
        if "face_detect_hz" in changes and self._keyframer is not None:
            self._keyframer.set_hz(config.face_detect_hz)

    # -------------------------------------------------------------- input
    def add_frame(self, stamp_ns: int, rgb: np.ndarray) -> None:
        """Buffer one RGB frame (source stamp, ns) and process any window it completes."""
        counts = self.windower.counters
        before = counts["frames_buffered"]
        self.windower.add_frame(stamp_ns, rgb)
        if self.windower.reset_epoch != self._last_epoch:
            self._on_stream_reset()
        if counts["frames_buffered"] != before:  # not a duplicate or out-of-order drop
            # Crop and preprocess now, so a window that falls due has only its newest frame left
            # to do (a 640x480 full frame: ~1.5 ms; a face crop: less).
            if self.track is not None:
                self._crops.add(stamp_ns, rgb, None, 0)
                for face_id in self.track.face_ids():
                    boxes, version = self.track.crop_boxes([stamp_ns], [rgb.shape], face_id)
                    if boxes[0] is not None:
                        self._crops.add(stamp_ns, rgb, boxes[0], version, track=face_id)
            elif self.external is None:
                self._crops.add(stamp_ns, rgb, self._full_box(rgb), 0)
        emitted = self._drain()
        if self._keyframer is not None and not emitted:
            self._keyframer.offer(stamp_ns, rgb)
            if self.config.face_detect_sync:  # the boxes of later frames then never depend on timing
                self._keyframer.wait_idle(timeout=10.0)  # bounded: a stopping pipeline must not hang

    @staticmethod
    def _full_box(frame: np.ndarray) -> Box:
        return (0, 0, int(frame.shape[1]), int(frame.shape[0]))

    def _on_keyframe(self, stamp_ns: int, frame: np.ndarray) -> None:
        # A keyframe changes the boxes at most 2 * max_age before it (interpolation spans at
        # most that; a held box at most max_age): re-crop those frames now, off the executor.
        if self._on_faces is not None:
            read = [
                FaceObservation(face_label(f), d.box, d.score, d.landmarks, d.roll_deg)
                for f, d in self.track.read_faces()
            ]
            self._on_faces(Keyframe(stamp_ns, frame, [face_label(f) for f in self.track.tracked_ids()], read))
        since = stamp_ns - 2 * int(self.track.max_age_s * NS)
        for face_id in self.track.face_ids():
            self._crops.refresh(
                since, lambda stamps, shapes, f=face_id: self.track.crop_boxes(stamps, shapes, f), track=face_id
            )

    def add_audio(self, stamp_ns: int, samples: np.ndarray) -> None:
        """Buffer mono float32 samples at the model's rate (stamp = first sample)."""
        if not self.spec.uses_audio:
            return
        self.windower.add_audio(stamp_ns, samples)
        if self.windower.reset_epoch != self._last_epoch:
            self._on_stream_reset()
        self._drain()

    def _on_stream_reset(self) -> None:
        # A reset (stamps went backwards, a long gap) starts a new stream: old faces and old
        # votes belong to the previous one.
        self._last_epoch = self.windower.reset_epoch
        self._crops.clear()
        if self.track is not None:
            self.track.reset()
        if self.external is not None:
            self.external.reset()
        with self._voter_lock:
            self.voter.reset()

    def _drain(self) -> int:
        emitted = 0
        while (window := self.windower.poll()) is not None:
            self._process(window)
            emitted += 1
        return emitted

    # -------------------------------------------------------------- per window
    def _window_faces(self, window: Window) -> list[tuple[str, Box | None, torch.Tensor]]:
        """(face id, box in the source image, (T, 3, S, S) clip) of each face the window shows."""
        if self.external is not None:
            return self.external.faces_for_window(window, self.config.min_face_fraction)
        if self.track is None:
            full = self._full_box(window.frames[-1])
            return [("", full, self._crops.video(window, [self._full_box(f) for f in window.frames], 0))]
        return [
            (face_label(f.face_id), f.face_box, self._crops.video(window, f.crop_boxes, f.version, track=f.face_id))
            for f in self.track.faces_for_window(window, self.config.min_face_fraction)
        ]

    def _process(self, window: Window) -> None:
        faces = self._window_faces(window)
        face_found = bool(faces)
        audio = window.audio if self.spec.uses_audio else None
        video = None
        if len(faces) == 1:
            video = faces[0][2]  # (T, 3, S, S): one face, as ever
        elif faces:
            video = torch.stack([clip for _, _, clip in faces])  # (N, T, 3, S, S): one job, one forward
        if video is not None and audio is not None:
            modality = MODALITY_AUDIO_VISUAL
        elif video is not None:
            modality = MODALITY_VIDEO
        elif audio is not None:
            modality = MODALITY_AUDIO  # modality dropout: the face is missing, the voice is not
            self.counters["audio_only_windows"] += 1
        else:
            self._no_reading(window)
            return
        if not face_found:
            self.counters["no_face_windows"] += 1
        now = time.monotonic()
        meta = _WindowMeta(
            window.index,
            window.start_ns,
            window.end_ns,
            window.num_frames,
            _image_size(window),
            face_found,
            modality,
            now,
            [(face_id, box) for face_id, box, _ in faces],
        )
        self.engine.submit(
            Job(
                window.index,
                video,
                None if audio is None else torch.from_numpy(np.ascontiguousarray(audio)),
                meta,
                deadline=self._deadline(window.end_ns, now),
            )
        )

    def _deadline(self, end_ns: int, now: float) -> float | None:
        """Monotonic time after which the window is too old to be worth a forward."""
        max_age = self.config.max_window_age_s
        if max_age <= 0:
            return None
        age = self._stamp_age(end_ns) if self._stamp_age is not None else None
        return now + max_age - max(0.0, age or 0.0)

    def _no_reading(self, window: Window) -> None:
        """No face and no audio: a state flagged as such, never a guess presented as a reading."""
        self.counters["no_face_windows"] += 1
        if self.spec.uses_audio:
            self.counters["windows_unusable"] += 1  # audio was expected but did not cover the window
        if self.config.no_face_policy == "skip":
            self.counters["no_face_skipped"] += 1
            return
        self.on_reading(
            Reading(
                window_index=window.index,
                window_start_ns=window.start_ns,
                window_end_ns=window.end_ns,
                modality=MODALITY_NONE,
                class_names=list(self.model.class_names),
                probabilities=np.zeros(0, np.float32),
                label=LABEL_NO_FACE,
                confidence=0.0,
                smoothed_probabilities=np.zeros(0, np.float32),
                smoothed_label="",
                smoothed_confidence=0.0,
                smoothing_count=0,
                face_found=False,
                frames_used=0,
                audio_samples_used=0,
                audio_rate=self.spec.audio_rate,
                latency_s=0.0,
                image_size=_image_size(window),
            )
        )

    def _on_result(self, result: Result) -> None:
        meta: _WindowMeta = result.job.meta
        if result.error is not None:
            log.warning("inference failed for window %d: %s", result.job.key, result.error)
            return
        names = list(self.model.class_names)
        rows = np.atleast_2d(result.probabilities.astype(np.float32))
        faces = meta.faces or [("", None)]  # an audio-only reading is about no face in particular
        now = time.monotonic()
        self.end_to_end.add(now - meta.submitted_monotonic)
        for (face_id, box), probs in zip(faces, rows):
            with self._voter_lock:
                smoothed, count = self.voter.add(face_id, probs)
            best = int(np.argmax(probs))
            if smoothed is None:
                smoothed, s_label, s_conf = np.zeros(0, np.float32), "", 0.0
            else:
                s_best = int(np.argmax(smoothed))
                smoothed, s_label, s_conf = smoothed.astype(np.float32), names[s_best], float(smoothed[s_best])
            self.counters["readings"] += 1
            self.on_reading(
                Reading(
                    window_index=meta.index,
                    window_start_ns=meta.start_ns,
                    window_end_ns=meta.end_ns,
                    modality=meta.modality,
                    class_names=names,
                    probabilities=probs,
                    label=names[best],
                    confidence=float(probs[best]),
                    smoothed_probabilities=smoothed,
                    smoothed_label=s_label,
                    smoothed_confidence=s_conf,
                    smoothing_count=count,
                    face_found=meta.face_found,
                    frames_used=meta.num_frames if result.job.video is not None else 0,
                    audio_samples_used=0 if result.job.audio is None else int(result.job.audio.shape[-1]),
                    audio_rate=self.spec.audio_rate,
                    latency_s=result.latency_s,
                    face_id=face_id,
                    face_box=box,
                    image_size=meta.image_size,
                )
            )

    # -------------------------------------------------------------- diagnostics
    def diagnostics(self) -> dict[str, object]:
        """A flat snapshot of every counter, for /diagnostics."""
        snap = self.engine.stats.snapshot()
        out: dict[str, object] = {f"window.{k}": v for k, v in self.windower.counters.items()}
        out.update({f"pipeline.{k}": v for k, v in self.counters.items()})
        out.update({f"pipeline.{k}": v for k, v in self._crops.counters.items()})
        if self.external is not None:
            out.update({f"face.{k}": v for k, v in self.external.counters.items()})
        if self.track is not None:
            out.update({f"face.{k}": v for k, v in self.track.counters.items()})
            if self._keyframer is not None:
                out["face.keyframes_skipped"] = self._keyframer.skipped
        out.update(
            {
                "inference.device": snap.device,
                "inference.precision": snap.precision,
                "inference.submitted": snap.submitted,
                "inference.completed": snap.completed,
                "inference.errors": snap.errors,
                "inference.dropped_queue_full": snap.dropped_queue_full,
                "inference.dropped_shutdown": snap.dropped_shutdown,
                "inference.dropped_stale": snap.dropped_stale,
                "inference.latency_p50_ms": _ms(snap.latency_p50_s),
                "inference.latency_p95_ms": _ms(snap.latency_p95_s),
            }
        )
        p50, p95 = self.end_to_end.percentiles(50, 95)
        out["pipeline.window_to_reading_p50_ms"] = _ms(p50)
        out["pipeline.window_to_reading_p95_ms"] = _ms(p95)
        return out


def make_detector(config: PipelineConfig) -> FaceDetector:
    """The face detector the settings name (mtcnn: WeightsError with the fixing command when its
    weights are missing or altered)."""
    if config.face_detector == "haar":
        return HaarFaceDetector(detect_width=config.face_detect_width)
    return MtcnnFaceDetector(min_face_size=config.face_min_size, threshold=config.face_detect_threshold)


def _image_size(window: Window) -> tuple[int, int]:
    shape = window.frames[-1].shape if window.frames else (0, 0)
    return int(shape[1]), int(shape[0])


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1e3:.1f}"

"""The affect pipeline without ROS: frames and audio in, one `Reading` per window out.

    add_frame / add_audio ─> Windower ─> face crops ─> preprocess ─> InferenceEngine ─> SoftVoter ─> on_reading
                     └─> face detector thread (keyframes at `face_detect_hz` of data time)

The caller's thread (the ROS executor) only buffers, cuts windows and crops; face detection and
the model run on their own threads. `on_reading` is called from the engine's worker thread.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, fields
from typing import Callable

import numpy as np
import torch

from .engine import InferenceEngine, Job, Result
from .faces import FaceDetector, FaceTrack, HaarFaceDetector, full_frame_crops
from .models.base import AffectModel
from .preprocess import FramePreprocessor
from .smoothing import SoftVoter
from .stats import LatencyReservoir
from .windowing import Window, Windower

log = logging.getLogger(__name__)

NS = 1_000_000_000

# Values of Reading.modality; equal to duse_ros/msg/EmotionState's MODALITY_* constants.
MODALITY_NONE, MODALITY_VIDEO, MODALITY_AUDIO, MODALITY_AUDIO_VISUAL = 0, 1, 2, 3
LABEL_NO_FACE = "no_face"

FACE_MODES = ("detect", "full_frame")
NO_FACE_POLICIES = ("publish", "skip")


@dataclass
class PipelineConfig:
    """Windowing, face and inference settings; the affect node's parameters of the same names."""

    span_s: float = 2.0              # a window's 16 frames are spread evenly over this much time
    stride_s: float = 0.5            # a new window every stride (data time)
    max_gap_s: float = 0.5           # a longer gap between frames resets the buffers
    face_mode: str = "detect"        # "detect": crop the largest face; "full_frame": no detection
    face_margin: float = 0.25
    face_detect_hz: float = 5.0      # keyframe detections per second of stream
    face_detect_width: int = 320     # detection runs on a frame downscaled to this width
    min_face_fraction: float = 0.5   # share of a window's frames that must have a face
    no_face_policy: str = "publish"  # video model, no face: publish a no-face state, or "skip"
    smoothing_window: int = 5        # soft voting over the last K readings; 0 = off
    queue_depth: int = 2
    max_batch: int = 4
    device: str = "cpu"
    half: bool = False

    def __post_init__(self):
        if self.face_mode not in FACE_MODES:
            raise ValueError(f"face_mode must be one of {FACE_MODES}, got {self.face_mode!r}")
        if self.no_face_policy not in NO_FACE_POLICIES:
            raise ValueError(f"no_face_policy must be one of {NO_FACE_POLICIES}, got {self.no_face_policy!r}")
        if self.face_detect_hz <= 0:
            raise ValueError(f"face_detect_hz must be > 0, got {self.face_detect_hz}")
        if self.smoothing_window < 0:
            raise ValueError(f"smoothing_window must be >= 0 (0 = off), got {self.smoothing_window}")

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


@dataclass
class Reading:
    """Everything an EmotionState carries, without ROS types."""

    window_index: int
    window_start_ns: int
    window_end_ns: int
    modality: int
    class_names: list[str]
    probabilities: np.ndarray          # empty for MODALITY_NONE
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
    latency_s: float                   # model forward time (0 for MODALITY_NONE)
    emitted_monotonic: float = field(default=0.0)  # time.monotonic() when the reading was made


@dataclass
class _WindowMeta:
    window: Window
    face_found: bool
    modality: int
    submitted_monotonic: float


class _FaceKeyframer:
    """Runs FaceTrack.update on the newest frame at most `hz` times per second of stream time,
    on a thread of its own, so detection never delays the executor or a window."""

    def __init__(self, track: FaceTrack, hz: float):
        self.track = track
        self._period_ns = int(NS / hz)
        self._next_ns: int | None = None
        self._slot: tuple[int, np.ndarray] | None = None
        self._cond = threading.Condition()
        self._running = True
        self.skipped = 0  # keyframes replaced by a newer one before the detector got to them
        self._thread = threading.Thread(target=self._work, name="duse-face-detect", daemon=True)
        self._thread.start()

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

    def stop(self) -> None:
        with self._cond:
            self._running = False
            self._cond.notify()
        self._thread.join(timeout=5.0)

    def _work(self) -> None:
        while True:
            with self._cond:
                while self._running and self._slot is None:
                    self._cond.wait()
                if not self._running:
                    return
                stamp_ns, frame = self._slot
                self._slot = None
            try:
                self.track.update(stamp_ns, frame)
            except Exception:  # a detector failure must not end detection for the session
                log.exception("face detection failed on the frame stamped %d", stamp_ns)


class AffectPipeline:
    def __init__(self, model: AffectModel, config: PipelineConfig,
                 on_reading: Callable[[Reading], None], detector: FaceDetector | None = None):
        self.model = model
        self.config = config
        self.spec = model.input_spec
        self.on_reading = on_reading
        self.windower = Windower(
            num_frames=self.spec.num_frames, span_s=config.span_s, stride_s=config.stride_s,
            max_gap_s=config.max_gap_s, use_audio=self.spec.uses_audio, audio_rate=self.spec.audio_rate,
        )
        self.voter = SoftVoter(config.smoothing_window)
        self._voter_lock = threading.Lock()
        self.track: FaceTrack | None = None
        self._keyframer: _FaceKeyframer | None = None
        if config.face_mode == "detect":
            self.track = FaceTrack(detector or HaarFaceDetector(detect_width=config.face_detect_width),
                                   margin=config.face_margin)
        self.engine = InferenceEngine(model, device=config.device, half=config.half,
                                      queue_depth=config.queue_depth, max_batch=config.max_batch,
                                      on_result=self._on_result)
        self.counters = {"no_face_windows": 0, "no_face_skipped": 0, "audio_only_windows": 0,
                         "windows_unusable": 0, "readings": 0}
        self.end_to_end = LatencyReservoir(1024)   # window complete -> reading made (s)
        self._last_epoch = 0
        self._preprocess = FramePreprocessor(self.spec)
        # (frame stamp, crop shape, crop offset in its frame) -> (3, S, S), for the frames still in use
        self._preprocessed: dict[tuple, np.ndarray] = {}

    # -------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.engine.start()
        if self.track is not None:
            self._keyframer = _FaceKeyframer(self.track, self.config.face_detect_hz)

    def stop(self) -> None:
        self.engine.stop()
        if self._keyframer is not None:
            self._keyframer.stop()
            self._keyframer = None

    # -------------------------------------------------------------- input
    def add_frame(self, stamp_ns: int, rgb: np.ndarray) -> None:
        """Buffer one RGB frame (source stamp, ns) and process any window it completes."""
        self.windower.add_frame(stamp_ns, rgb)
        if self.windower.reset_epoch != self._last_epoch:
            self._on_stream_reset()
        if self._keyframer is not None:
            self._keyframer.offer(stamp_ns, rgb)
        else:
            # Full frames are the crops: preprocess each on arrival, so a window that falls due
            # has only its newest frame left to do (about 1.5 ms a 640x480 frame, 30 times a
            # second, instead of 4 frames at once on the window's critical path).
            self._preprocessed[(stamp_ns, rgb.shape, 0)] = self._preprocess([rgb])[0].numpy()
        self._drain()

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
        self._preprocessed.clear()
        if self.track is not None:
            self.track.reset()
        with self._voter_lock:
            self.voter.reset()

    def _drain(self) -> None:
        while (window := self.windower.poll()) is not None:
            self._process(window)

    # -------------------------------------------------------------- per window
    def _process(self, window: Window) -> None:
        if self.track is not None:
            crops, face_found = self.track.crops_for_window(window, self.config.min_face_fraction)
        else:
            crops, face_found = full_frame_crops(window), True
        audio = window.audio if self.spec.uses_audio else None
        video = self._video_tensor(window, crops) if face_found else None
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
        meta = _WindowMeta(window, face_found, modality, time.monotonic())
        self.engine.submit(Job(window.index, video,
                               None if audio is None else torch.from_numpy(np.ascontiguousarray(audio)), meta))

    def _video_tensor(self, window: Window, crops: list[np.ndarray]) -> torch.Tensor:
        """(T, 3, S, S) for the window's crops. Consecutive windows share most of their frames
        (12 of 16 at 30 fps with the default span and stride), so a crop preprocessed for an
        earlier window is reused. A crop that is a view into its frame is known by the frame's
        stamp, the crop's shape and its offset in the frame (so a moved face box is a new crop);
        any other crop is preprocessed afresh."""
        keys = [(stamp, crop.shape, crop.ctypes.data - frame.ctypes.data)
                if np.may_share_memory(crop, frame) else None
                for stamp, frame, crop in zip(window.stamps_ns, window.frames, crops)]
        todo = [i for i, key in enumerate(keys) if key is None or key not in self._preprocessed]
        fresh = dict(zip(todo, self._preprocess([crops[i] for i in todo]).numpy())) if todo else {}
        video = torch.from_numpy(np.stack([fresh[i] if i in fresh else self._preprocessed[key]
                                           for i, key in enumerate(keys)]))
        self._preprocessed.update({keys[i]: fresh[i] for i in todo if keys[i] is not None})
        # Windows only move forward between resets: frames before this window are never needed again.
        self._preprocessed = {k: v for k, v in self._preprocessed.items() if k[0] >= window.start_ns}
        return video

    def _no_reading(self, window: Window) -> None:
        """No face and no audio: a state flagged as such, never a guess presented as a reading."""
        self.counters["no_face_windows"] += 1
        if self.spec.uses_audio:
            self.counters["windows_unusable"] += 1  # audio was expected but did not cover the window
        if self.config.no_face_policy == "skip":
            self.counters["no_face_skipped"] += 1
            return
        self.on_reading(Reading(
            window_index=window.index, window_start_ns=window.start_ns, window_end_ns=window.end_ns,
            modality=MODALITY_NONE, class_names=list(self.model.class_names),
            probabilities=np.zeros(0, np.float32), label=LABEL_NO_FACE, confidence=0.0,
            smoothed_probabilities=np.zeros(0, np.float32), smoothed_label="", smoothed_confidence=0.0,
            smoothing_count=0, face_found=False, frames_used=0, audio_samples_used=0,
            audio_rate=self.spec.audio_rate, latency_s=0.0, emitted_monotonic=time.monotonic(),
        ))

    def _on_result(self, result: Result) -> None:
        meta: _WindowMeta = result.job.meta
        if result.error is not None:
            log.warning("inference failed for window %d: %s", result.job.key, result.error)
            return
        names = list(self.model.class_names)
        probs = result.probabilities.astype(np.float32)
        with self._voter_lock:
            smoothed = self.voter.add(probs)
            count = self.voter.count
        best = int(np.argmax(probs))
        if smoothed is None:
            smoothed, s_label, s_conf = np.zeros(0, np.float32), "", 0.0
        else:
            s_best = int(np.argmax(smoothed))
            smoothed, s_label, s_conf = smoothed.astype(np.float32), names[s_best], float(smoothed[s_best])
        w = meta.window
        now = time.monotonic()
        self.end_to_end.add(now - meta.submitted_monotonic)
        self.counters["readings"] += 1
        self.on_reading(Reading(
            window_index=w.index, window_start_ns=w.start_ns, window_end_ns=w.end_ns,
            modality=meta.modality, class_names=names, probabilities=probs,
            label=names[best], confidence=float(probs[best]),
            smoothed_probabilities=smoothed, smoothed_label=s_label, smoothed_confidence=s_conf,
            smoothing_count=count, face_found=meta.face_found,
            frames_used=w.num_frames if result.job.video is not None else 0,
            audio_samples_used=0 if result.job.audio is None else int(result.job.audio.shape[-1]),
            audio_rate=self.spec.audio_rate, latency_s=result.latency_s, emitted_monotonic=now,
        ))

    # -------------------------------------------------------------- diagnostics
    def diagnostics(self) -> dict[str, object]:
        """A flat snapshot of every counter, for /diagnostics."""
        snap = self.engine.stats.snapshot()
        out: dict[str, object] = {f"window.{k}": v for k, v in self.windower.counters.items()}
        out.update({f"pipeline.{k}": v for k, v in self.counters.items()})
        if self.track is not None:
            out.update({f"face.{k}": v for k, v in self.track.counters.items()})
            if self._keyframer is not None:
                out["face.keyframes_skipped"] = self._keyframer.skipped
        out.update({
            "inference.device": snap.device, "inference.half": snap.half,
            "inference.submitted": snap.submitted, "inference.completed": snap.completed,
            "inference.errors": snap.errors, "inference.dropped_queue_full": snap.dropped_queue_full,
            "inference.dropped_shutdown": snap.dropped_shutdown,
            "inference.latency_p50_ms": _ms(snap.latency_p50_s), "inference.latency_p95_ms": _ms(snap.latency_p95_s),
        })
        p50, p95 = self.end_to_end.percentiles(50, 95)
        out["pipeline.window_to_reading_p50_ms"] = _ms(p50)
        out["pipeline.window_to_reading_p95_ms"] = _ms(p95)
        return out


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1e3:.1f}"

"""Inputs that become bags: a video file (with its audio track), a folder of frames, a DFEW/MAFW-style
clip list, and WAV files. Each frame comes with its time on the input's own timeline (seconds).

Video files are read with PyAV (FFmpeg), which gives every frame's presentation time and the audio
track. A file PyAV opens but cannot decode to the end (damaged or truncated) is an error naming
the stream and the point where decoding failed: falling back to another reader would lose the
audio or the frames after the damage without a word. Only a file PyAV cannot open at all is
read with OpenCV, which says so once (no audio; frame times from CAP_PROP_POS_MSEC) and fails
when it reads fewer frames than the file declares.
"""

from __future__ import annotations

import logging
import re
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
log = logging.getLogger(__name__)


class SourceError(ValueError):
    """An input that cannot be read; the message names the file."""


@dataclass
class Audio:
    """Interleaved signed 16-bit PCM, (samples, channels), and when its first sample plays."""

    pcm: np.ndarray
    rate: int
    start_s: float = 0.0

    @property
    def channels(self) -> int:
        return int(self.pcm.shape[1])

    @property
    def duration_s(self) -> float:
        return self.pcm.shape[0] / self.rate


@dataclass
class Source:
    """One clip: `frames()` yields (time s, RGB uint8) in time order; optional audio and label."""

    name: str
    frames: Callable[[], Iterator[tuple[float, np.ndarray]]]
    audio: Audio | None = None
    label: str | None = None
    info: dict = field(default_factory=dict)


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SourceError(f"{path}: not an image OpenCV can read")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def frames_folder(path: str | Path, fps: float) -> Source:
    """Frames in natural name order (frame_2 before frame_10), at `fps`."""
    path = Path(path)
    files = sorted(
        (f for f in path.iterdir() if f.suffix.lower() in FRAME_SUFFIXES), key=lambda f: _natural_key(f.name)
    )
    if not files:
        raise SourceError(f"{path}: no frames ({', '.join(FRAME_SUFFIXES)})")
    if not fps > 0:
        raise SourceError(f"{path}: a folder of frames needs --fps > 0, got {fps}")

    def frames():
        for i, f in enumerate(files):
            yield i / fps, _read_rgb(f)

    return Source(path.name, frames, info={"frames": len(files), "fps": fps})


def _pyav_audio(path: Path) -> Audio | None:
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout=stream.layout.name, rate=stream.rate)
        chunks, start, decoded_s = [], None, 0.0
        try:
            for frame in container.decode(stream):
                if start is None:
                    start = float(frame.time) if frame.time is not None else 0.0
                decoded_s = float(frame.time or 0.0) - start
                chunks += [f.to_ndarray() for f in resampler.resample(frame)]
            chunks += [f.to_ndarray() for f in resampler.resample(None)]
        except av.FFmpegError as e:
            raise SourceError(
                f"{path}: the audio track cannot be decoded past {decoded_s:.2f} s ({e}); the file is damaged"
            ) from None
        channels = stream.channels
    if not chunks:
        return None
    pcm = np.concatenate([c.reshape(-1) for c in chunks]).astype(np.int16).reshape(-1, channels)
    return Audio(pcm, int(stream.rate), start or 0.0)


def _opencv_video(path: Path, pyav_error: Exception) -> Source:
    capture = cv2.VideoCapture(str(path))
    ok = capture.isOpened() and capture.read()[0]
    declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    capture.release()
    if not ok:
        raise SourceError(f"{path}: neither PyAV ({pyav_error}) nor OpenCV can read it as a video") from None
    log.warning("%s: PyAV cannot open it (%s); read with OpenCV: no audio track", path, pyav_error)

    def frames():
        cap = cv2.VideoCapture(str(path))
        read = 0
        try:
            while True:
                ok, bgr = cap.read()
                if not ok:
                    break
                read += 1
                yield cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()
        if declared and read < declared:
            raise SourceError(f"{path}: OpenCV read {read} of the {declared} frames the file declares; it is damaged")

    return Source(path.stem, frames, None, info={"reader": "opencv", "frames": declared or None})


def video_file(path: str | Path, with_audio: bool = True) -> Source:
    path = Path(path)
    try:
        import av

        with av.open(str(path)) as container:
            if not container.streams.video:
                raise SourceError(f"{path}: no video stream")
            rate = container.streams.video[0].average_rate
            declared = int(container.streams.video[0].frames or 0)
    except SourceError:
        raise
    except Exception as pyav_error:  # noqa: BLE001 - not for FFmpeg: try OpenCV's backends
        return _opencv_video(path, pyav_error)
    audio = _pyav_audio(path) if with_audio else None

    def frames():
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            count = 0
            try:
                for frame in c.decode(stream):
                    t = float(frame.time) if frame.time is not None else count / float(rate or 30)
                    count += 1
                    yield t, frame.to_ndarray(format="rgb24")
            except av.FFmpegError as e:
                raise SourceError(
                    f"{path}: video frame {count + 1} cannot be decoded ({e}); the file is damaged"
                ) from None
            if declared and count < declared:
                raise SourceError(f"{path}: decoded {count} of the {declared} frames the file declares; it is damaged")

    return Source(
        path.stem,
        frames,
        audio,
        info={"reader": "pyav", "fps": float(rate) if rate else None, "frames": declared or None},
    )


def read_wav(path: str | Path) -> Audio:
    """A PCM WAV file (8, 16, 24 or 32-bit integer) as 16-bit PCM."""
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as w:
            width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError, OSError) as e:
        raise SourceError(f"{path}: not a PCM WAV file ({e})") from None
    if width == 1:
        pcm = (np.frombuffer(raw, np.uint8).astype(np.int16) - 128) << 8
    elif width == 2:
        pcm = np.frombuffer(raw, "<i2")
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        pcm = ((b[:, 2].astype(np.int8).astype(np.int32) << 8) | b[:, 1]).astype(np.int16)
    elif width == 4:
        pcm = (np.frombuffer(raw, "<i4") >> 16).astype(np.int16)
    else:
        raise SourceError(f"{path}: {8 * width}-bit samples are not supported")
    return Audio(pcm.astype(np.int16).reshape(-1, channels), rate, 0.0)


def open_input(path: str | Path, fps: float = 30.0, with_audio: bool = True) -> Source:
    """A video file or a folder of frames."""
    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    return frames_folder(path, fps) if path.is_dir() else video_file(path, with_audio)

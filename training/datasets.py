"""Video (and audio) emotion clips for offline training: annotation files, clip sampling, loading.

An annotation file lists one clip per line, fields separated by commas or spaces:

    <clip> [<frame count>] <label>

`<clip>` is a directory of frames (.jpg .jpeg .png .bmp, in natural name order) or a video file,
relative to the clip root. The middle field, when present, is ignored (frames are counted).
`<label>` is a number counted from `label_base` in the class set's order (duse_ros.classes), or
a class name ("happy", "Angry", "sadness" ...: names and the usual adjectives are matched
case-insensitively). Blank lines and '#' lines are skipped, and so is a first line whose label
is neither (a CSV header). Any other malformed line is an error naming the file and the line.

Sampling: a clip's 16 frames come from a window of `span_s` seconds (the whole clip when
`span_s` is None or the clip is shorter), cut into 16 equal segments with one frame from each:
at a random place in its segment and a random window position for training, the segment centres
of the centred window for evaluation. The affect node samples 16 frames over its own `span_s`,
so a model trained with the same span sees windows like the ones it will be given.

Audio (audio-visual models): the mono waveform at the model's rate, the `audio_s` seconds
(default: the span) that end at the last sampled frame's time, with zeros where that stretch
reaches before the file's start (or past its end): what the affect node gives a model, the
audio_s seconds before its window's last frame, since a robot only hears the past. It is read
from a `.wav` beside the clip (`clip.wav` for a frame directory or `clip.mp4` -> `clip.wav`) or
else from the video file's audio stream with PyAV.

Before training, `check_clips` reads every clip of a fold once (the frames evaluation will read,
every frame's image header, the audio), so a corrupt or missing file fails the run at once.
"""

from __future__ import annotations

import re
import wave
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from duse_ros.affect.preprocess import FramePreprocessor
from duse_ros.io.clip_lists import ClipEntry
from duse_ros.io.clip_lists import ClipListError as DatasetError  # a dataset's errors name its file and line
from duse_ros.models.base import InputSpec

from .augment import ClipAugment

FRAME_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
# Names the datasets use for the classes of duse_ros.classes (FERV39k writes "Happy", DFEW
# "happy", MAFW "happiness").


def check_entries(entries: Sequence[ClipEntry]) -> None:
    """Every listed clip exists (a directory with frames or a file); the error names the line."""
    for e in entries:
        if not e.path.exists():
            raise DatasetError(f"{e.source}: clip {e.path} does not exist")
        if e.path.is_dir() and not any(f.suffix.lower() in FRAME_SUFFIXES for f in e.path.iterdir()):
            raise DatasetError(f"{e.source}: clip directory {e.path} has no frames ({sorted(FRAME_SUFFIXES)})")


def _check_clip(entry: ClipEntry, spec: InputSpec, fps: float, span_s: float | None, evaluated: bool) -> str | None:
    """Why `entry` cannot be read, or None. Frame folders: every frame's image header (PIL reads
    only the header), then the frames evaluation samples (`evaluated`: validation and test clips)
    or the first frame (training clips) decoded in full. Video files: opened and their first
    frame decoded. Audio-visual models: the audio opened (a .wav header, or the video file's
    audio stream)."""
    from PIL import Image

    path = entry.path
    try:
        if path.is_dir():
            files = frame_files(path)
            for f in files:
                with Image.open(f) as image:
                    image.size  # noqa: B018  (parses the header)
            picked = sample_frames(len(files), spec.num_frames, fps, span_s, train=False) if evaluated else [0]
            for i in sorted(set(picked)):
                _read_rgb(files[i])
        else:
            capture = cv2.VideoCapture(str(path))
            ok = capture.isOpened() and capture.read()[0]
            capture.release()
            if not ok:
                return f"cannot decode video {path}"
        if spec.uses_audio:
            sidecar = audio_path(path)
            if sidecar.is_file():
                with wave.open(str(sidecar), "rb") as f:
                    f.getnframes()
            elif path.is_dir():
                return f"no audio for frame directory {path}: expected {sidecar}"
            else:
                _check_audio_stream(path)
    except (OSError, ValueError, EOFError, wave.Error, DatasetError) as e:  # PIL raises OSError/ValueError
        return f"{e}"
    return None


def _check_audio_stream(path: Path) -> None:
    try:
        import av
    except ImportError:
        raise DatasetError(f"{path}: reading audio from video files needs PyAV (pip install av)") from None
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise DatasetError(f"{path} has no audio stream")
    except av.error.FFmpegError as e:
        raise DatasetError(f"{path}: cannot open for audio: {e}") from None


def check_clips(
    train_entries: Sequence[ClipEntry],
    evaluated_entries: Sequence[ClipEntry],
    spec: InputSpec,
    fps: float,
    span_s: float | None,
    workers: int = 4,
    progress: bool = True,
) -> None:
    """Read every clip once before training (see `_check_clip` for how much), so that a corrupt
    file stops the run now and not after its last epoch: the validation and test clips exactly
    as evaluation will read them, the training clips' headers and first frame. All failures are
    collected; the error counts them and names the first with its annotation line."""
    failures: list[str] = []
    jobs = [(e, False) for e in train_entries] + [(e, True) for e in evaluated_entries]
    entries = [e for e, _ in jobs]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # OpenCV and PIL decode outside the GIL
        results = pool.map(lambda job: (job[0], _check_clip(job[0], spec, fps, span_s, job[1])), jobs)
        for entry, problem in tqdm(
            results, total=len(entries), desc="checking clips", unit="clip", leave=False, disable=not progress
        ):
            if problem is not None:
                failures.append(f"{entry.source or entry.path}: {problem}")
    if failures:
        raise DatasetError(
            f"{len(failures)} of {len(entries)} clips cannot be read; the first: {failures[0]} "
            "(fix or remove them before training)"
        )


# ---------------------------------------------------------------------------------------------- sampling
def segment_indices(num_frames: int, segments: int, train: bool, rng: np.random.Generator | None = None) -> list[int]:
    """One frame index per equal segment of [0, num_frames): random within it (train) or its
    centre (evaluation). With fewer frames than segments, neighbouring segments share frames."""
    if num_frames < 1:
        raise ValueError("a clip needs at least one frame")
    edges = np.linspace(0.0, num_frames, segments + 1)
    offsets = (rng or np.random.default_rng()).random(segments) if train else np.full(segments, 0.5)
    positions = edges[:-1] + offsets * (edges[1:] - edges[:-1])
    return np.minimum(positions.astype(int), num_frames - 1).tolist()


def sample_frames(
    num_frames: int,
    segments: int,
    fps: float,
    span_s: float | None,
    train: bool,
    rng: np.random.Generator | None = None,
) -> list[int]:
    """`segments` frame indices from a window of `span_s` seconds of a clip of `num_frames` frames
    at `fps` (see the module docstring). Short clips (or span None) use every frame's range."""
    window = num_frames if span_s is None else int(min(num_frames, max(1, round(span_s * fps))))
    spare = num_frames - window
    if train:
        rng = rng or np.random.default_rng()
        start = int(rng.integers(0, spare + 1))
    else:
        start = spare // 2
    return [start + i for i in segment_indices(window, segments, train, rng)]


# ---------------------------------------------------------------------------------------------- reading
def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def frame_files(path: Path) -> list[Path]:
    files = sorted(
        (f for f in path.iterdir() if f.suffix.lower() in FRAME_SUFFIXES), key=lambda f: _natural_key(f.name)
    )
    if not files:
        raise DatasetError(f"clip directory {path} has no frames ({sorted(FRAME_SUFFIXES)})")
    return files


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DatasetError(f"cannot read frame {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _read_video(path: Path) -> tuple[list[np.ndarray], float]:
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:  # decode all: frame counts in video headers are not reliable
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    if not frames:
        raise DatasetError(f"cannot read video {path}")
    return frames, float(fps) if fps and fps > 0 else 0.0


def read_all_frames(path: Path) -> list[np.ndarray]:
    """Every frame of a clip (a frame directory or a video file) as (H, W, 3) uint8 RGB."""
    if path.is_dir():
        return [_read_rgb(f) for f in frame_files(path)]
    return _read_video(path)[0]


def clip_length(path: Path, fps: float) -> tuple[int, float]:
    """(frame count, frames per second) of a clip; `fps` is used for frame directories and for
    videos whose header has none."""
    if path.is_dir():
        return len(frame_files(path)), fps
    capture = cv2.VideoCapture(str(path))
    count, video_fps = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    if count <= 0:
        count = len(_read_video(path)[0])
    return count, float(video_fps) if video_fps and video_fps > 0 else fps


def read_clip(
    path: Path,
    segments: int,
    train: bool,
    rng: np.random.Generator | None = None,
    fps: float = 25.0,
    span_s: float | None = None,
) -> tuple[list[np.ndarray], float, float]:
    """The sampled frames of a clip as (H, W, 3) uint8 RGB arrays, and the first and the last
    sampled frame's time (s from the clip's start)."""
    if path.is_dir():
        files = frame_files(path)
        picked = sample_frames(len(files), segments, fps, span_s, train, rng)
        return [_read_rgb(files[i]) for i in picked], picked[0] / fps, picked[-1] / fps
    frames, video_fps = _read_video(path)
    fps = video_fps or fps
    picked = sample_frames(len(frames), segments, fps, span_s, train, rng)
    return [frames[i] for i in picked], picked[0] / fps, picked[-1] / fps


def _resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target or samples.size == 0:
        return samples.astype(np.float32)
    out_len = int(round(samples.size * target / rate))
    return np.interp(np.linspace(0, samples.size - 1, out_len), np.arange(samples.size), samples).astype(np.float32)


def audio_path(clip: Path) -> Path:
    return clip.with_name(clip.name + ".wav") if clip.is_dir() else clip.with_suffix(".wav")


def read_wav(path: Path, rate: int) -> np.ndarray:
    """Mono float32 samples in [-1, 1] at `rate` from a PCM .wav (8/16/32-bit)."""
    with wave.open(str(path), "rb") as f:
        width, channels, source_rate = f.getsampwidth(), f.getnchannels(), f.getframerate()
        data = f.readframes(f.getnframes())
    dtype = {1: np.uint8, 2: np.int16, 4: np.int32}.get(width)
    if dtype is None:
        raise DatasetError(f"{path}: {8 * width}-bit wav is not supported (8, 16 or 32-bit PCM)")
    samples = np.frombuffer(data, dtype=dtype).astype(np.float32)
    samples = (samples - 128.0) / 128.0 if width == 1 else samples / float(np.iinfo(dtype).max)
    return _resample(samples.reshape(-1, channels).mean(axis=1), source_rate, rate)


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    """Mono float samples in [-1, 1] as a 16-bit PCM .wav."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())


def read_video_audio(path: Path, rate: int) -> np.ndarray:
    """Mono float32 samples at `rate` from a video file's first audio stream (PyAV)."""
    try:
        import av
    except ImportError:
        raise DatasetError(
            f"{path}: reading audio from video files needs PyAV (pip install av); or put a .wav beside the clip"
        ) from None
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise DatasetError(f"{path} has no audio stream")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            chunks = []
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except av.error.FFmpegError as e:
        raise DatasetError(f"{path}: cannot decode audio: {e}") from None
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def read_audio(clip: Path, rate: int) -> np.ndarray:
    sidecar = audio_path(clip)
    if sidecar.is_file():
        return read_wav(sidecar, rate)
    if clip.is_dir():
        raise DatasetError(f"no audio for frame directory {clip}: expected {sidecar}")
    return read_video_audio(clip, rate)


def cut_audio_ending(samples: np.ndarray, end_s: float, length: int, rate: int) -> np.ndarray:
    """The `length` samples before `end_s` (s from the file's start), zeros where they reach
    before the file's start or past its end."""
    end = int(round(end_s * rate))
    start = end - length
    out = np.zeros(length, np.float32)
    a, b = max(start, 0), min(end, samples.size)
    if b > a:
        out[a - start : b - start] = samples[a:b]
    return out


# ---------------------------------------------------------------------------------------------- dataset
class VideoClipDataset(Dataset):
    """Items are dicts: "video" (T, 3, S, S) normalised for the model's InputSpec, "label", and
    "audio" (S_a,) for audio-visual models. Training applies `augment` (the same draw to every
    frame of a clip). Randomness comes from (seed, epoch, index), so a run is repeatable whatever
    the number of loader workers; call `set_epoch` before each epoch."""

    def __init__(
        self,
        entries: Sequence[ClipEntry],
        spec: InputSpec,
        num_classes: int,
        train: bool,
        fps: float = 25.0,
        span_s: float | None = None,
        audio_s: float | None = None,
        augment: ClipAugment | None = None,
        seed: int = 0,
    ):
        bad = [e for e in entries if not 0 <= e.label < num_classes]
        if bad:
            raise DatasetError(
                f"{len(bad)} clips have labels outside 0..{num_classes - 1} "
                f"(after label_base), e.g. {bad[0].source or bad[0].path} -> {bad[0].label}"
            )
        self.entries = list(entries)
        self.spec = spec
        self.preprocess = FramePreprocessor(spec)
        self.train, self.fps, self.span_s = train, fps, span_s
        self.augment = augment if train else None
        self.audio_len = int(round((audio_s or span_s or 2.0) * spec.audio_rate)) if spec.uses_audio else 0
        self.seed, self.epoch = seed, 0

    def __len__(self) -> int:
        return len(self.entries)

    def labels(self) -> list[int]:
        return [e.label for e in self.entries]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict:
        entry = self.entries[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        try:
            frames, _, last_s = read_clip(entry.path, self.spec.num_frames, self.train, rng, self.fps, self.span_s)
            if self.augment is not None:
                video = self.augment(frames, self.spec, rng)
            else:
                video = self.preprocess(frames)
            item = {"video": video, "label": entry.label}
            if self.spec.uses_audio:
                samples = read_audio(entry.path, self.spec.audio_rate)
                # as a node hears it: the audio before the window's last frame
                item["audio"] = torch.from_numpy(
                    cut_audio_ending(samples, last_s, self.audio_len, self.spec.audio_rate)
                )
        except (OSError, DatasetError) as e:
            raise DatasetError(f"{entry.source or entry.path}: {e}") from None
        return item


def stratified_split(
    entries: Sequence[ClipEntry], fraction: float, seed: int
) -> tuple[list[ClipEntry], list[ClipEntry]]:
    """(train, validation) carved from a training fold: `fraction` of each class (at least one
    clip of every class with two or more), chosen by `seed`; fraction 0 keeps every clip for
    training. Order within each part is kept."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return list(entries), []
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {}
    for i, e in enumerate(entries):
        by_class.setdefault(e.label, []).append(i)
    held: set[int] = set()
    for label in sorted(by_class):
        members = by_class[label]
        count = min(len(members) - 1, max(1, int(round(fraction * len(members)))))
        held.update(rng.permutation(members)[:count].tolist())
    return ([e for i, e in enumerate(entries) if i not in held], [e for i, e in enumerate(entries) if i in held])

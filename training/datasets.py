"""Video emotion clips for offline training: DFEW-style annotation files and frame sampling.

An annotation file lists one clip per line, fields separated by spaces or commas:

    <clip> [<frame count>] <label>

`<clip>` is a directory of frames (any of .jpg .jpeg .png .bmp, in natural name order) or a video
file that OpenCV reads, relative to the data root (default: the annotation file's folder). The
middle field, when present, is ignored (the frames are counted). Labels are class indices in
the class set's order (duse_ros.classes), counted from `label_base`: DFEW, FERV39k and MAFW
number them from 1. Blank lines and lines starting with '#' are skipped, and so is a first line
whose label field is not a number (a CSV header).

Each clip gives T frames: the clip is cut into T equal segments and one frame is taken from each,
at a random place inside the segment for training and at its centre for testing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from duse_ros.models.base import InputSpec
from duse_ros.preprocess import FramePreprocessor

FRAME_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


@dataclass(frozen=True)
class ClipEntry:
    path: Path
    label: int


def read_annotation(path: str | Path, root: str | Path | None = None, label_base: int = 1) -> list[ClipEntry]:
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = [f for f in re.split(r"[,\s]+", line.strip()) if f]
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) < 2:
            raise ValueError(f"{path}:{number}: expected '<clip> [<frames>] <label>', got {line!r}")
        try:
            label = int(fields[-1]) - label_base
        except ValueError:
            if not entries:
                continue  # a header row
            raise ValueError(f"{path}:{number}: label {fields[-1]!r} is not an integer") from None
        entries.append(ClipEntry(root / fields[0], label))
    if not entries:
        raise ValueError(f"{path} lists no clips")
    return entries


def segment_indices(num_frames: int, segments: int, train: bool, generator: torch.Generator | None = None) -> list[int]:
    """One frame index per equal segment of [0, num_frames): random within it (train) or its centre (test).
    With fewer frames than segments, neighbouring segments share frames."""
    if num_frames < 1:
        raise ValueError("a clip needs at least one frame")
    edges = np.linspace(0.0, num_frames, segments + 1)
    if train:
        offsets = torch.rand(segments, generator=generator).numpy()
    else:
        offsets = np.full(segments, 0.5)
    positions = edges[:-1] + offsets * (edges[1:] - edges[:-1])
    return np.minimum(positions.astype(int), num_frames - 1).tolist()


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"cannot read frame {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_clip(path: Path, segments: int, train: bool, generator: torch.Generator | None = None) -> list[np.ndarray]:
    """The `segments` sampled frames of a clip as (H, W, 3) uint8 RGB arrays."""
    if path.is_dir():
        files = sorted((f for f in path.iterdir() if f.suffix.lower() in FRAME_SUFFIXES), key=lambda f: _natural_key(f.name))
        if not files:
            raise OSError(f"clip directory {path} has no frames ({sorted(FRAME_SUFFIXES)})")
        return [_read_rgb(files[i]) for i in segment_indices(len(files), segments, train, generator)]
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:  # decode all: frame counts in video headers are not reliable
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    if not frames:
        raise OSError(f"cannot read video {path}")
    return [frames[i] for i in segment_indices(len(frames), segments, train, generator)]


class VideoClipDataset(Dataset):
    """(video (T, 3, S, S) normalised for the model's InputSpec, label) pairs. Training adds a
    random horizontal flip of the whole clip."""

    def __init__(self, entries: list[ClipEntry], spec: InputSpec, num_classes: int, train: bool):
        bad = [e for e in entries if not 0 <= e.label < num_classes]
        if bad:
            raise ValueError(f"{len(bad)} clips have labels outside 0..{num_classes - 1} "
                             f"(after label_base), e.g. {bad[0].path} -> {bad[0].label}")
        self.entries = entries
        self.num_frames = spec.num_frames
        self.preprocess = FramePreprocessor(spec)
        self.train = train

    def __len__(self) -> int:
        return len(self.entries)

    def labels(self) -> list[int]:
        return [e.label for e in self.entries]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        entry = self.entries[index]
        video = self.preprocess(read_clip(entry.path, self.num_frames, self.train))
        if self.train and torch.rand(()) < 0.5:
            video = video.flip(-1)
        return video, entry.label


def make_synthetic_dataset(root: str | Path, num_classes: int = 7, train_per_class: int = 3, test_per_class: int = 2,
                           frames: int = 16, size: int = 40, seed: int = 0) -> tuple[Path, Path]:
    """Write a small learnable dataset (each class a colour and a bar moving at its own speed;
    frame folders and, for every third clip, an MJPG .avi) with DFEW-style train.txt and
    test.txt (labels from 1). Returns the two annotation paths."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    hues = np.linspace(0, 180, num_classes, endpoint=False)
    lines = {"train": [], "test": []}
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        for label in range(num_classes):
            for k in range(per_class):
                name = f"{split}/{label}_{k:03d}"
                clip = []
                for t in range(frames):
                    hsv = np.empty((size, size, 3), np.uint8)
                    hsv[..., 0] = hues[label]
                    hsv[..., 1] = 200
                    hsv[..., 2] = rng.integers(90, 140, (size, size))
                    frame = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
                    x = int((t * (label + 1) * 3) % size)
                    frame[:, max(0, x - 3):x + 3] = 255
                    clip.append(frame)
                if k % 3 == 2:
                    (root / split).mkdir(parents=True, exist_ok=True)
                    path = root / f"{name}.avi"
                    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (size, size))
                    for frame in clip:
                        writer.write(frame)
                    writer.release()
                    lines[split].append(f"{name}.avi {frames} {label + 1}")
                else:
                    (root / name).mkdir(parents=True, exist_ok=True)
                    for t, frame in enumerate(clip):
                        cv2.imwrite(str(root / name / f"{t + 1:05d}.png"), frame)
                    lines[split].append(f"{name} {frames} {label + 1}")
    paths = []
    for split in ("train", "test"):
        path = root / f"{split}.txt"
        path.write_text("\n".join(lines[split]) + "\n")
        paths.append(path)
    return paths[0], paths[1]

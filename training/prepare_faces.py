"""Face-cropped frame folders (and their audio) for every clip of a dataset, as BHGap trains on.

    python -m training.prepare_faces --data /data/MAFW --layout mafw            # -> /data/MAFW/faces/
    python -m training.prepare_faces --data /data/DFEW --layout dfew --videos Clip/original

For each clip that an annotation file of any fold lists (train and test), the frames are read
(a frame folder or a video file), the face detector affect_node runs by default (its
`face_detector` parameter; duse_ros/affect/faces.py) looks at every `--detect-every`-th frame
for the largest face (boxes between two detections interpolated, held past the first and
last), and each frame is cut to the square around its box with affect_node's `face_margin`,
turned upright by the eye line when the detector gives landmarks and `face_align` is on (as the
node does), and saved as `--size` px JPEGs. A clip in which no face is found keeps its centre square (counted
as a fallback in the manifest, so it can be inspected or left out).

Output, under `<data>/<out>` (default `faces`), mirroring the clip paths below the layout's
`clip_root`: a frame folder per clip, named like the clip (a video `a/b.mp4` becomes the folder
`a/b.mp4/`, so annotation lines need no change), and beside it `<folder>.wav`, 16 kHz mono: the
audio extracted from the original video (the clip itself for MAFW; `--videos DIR`, the dataset's
videos folder, for DFEW, whose frame folders carry no sound). Training reads them with
`--set data.clip_root=faces` (the BHGap recipes do).

Cached and resumable: a clip is written to `<folder>.partial` and renamed when complete, so an
interrupted run redoes at most the clips in flight, and a finished clip is skipped; `faces.jsonl`
gets one line per clip written (frames, frames with a face, fallback, audio seconds).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import threading
from bisect import bisect_left
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from duse_ros.affect.boxes import as_detection, crop, square_crop_box  # noqa: E402
from duse_ros.affect.faces import FaceDetector  # noqa: E402
from duse_ros.affect.pipeline import PipelineConfig, make_detector  # noqa: E402
from duse_ros.classes import get_class_set  # noqa: E402
from duse_ros.io.clip_lists import ClipEntry  # noqa: E402
from training.datasets import (  # noqa: E402
    DatasetError,
    audio_path,
    read_all_frames,
    read_audio,
    read_video_audio,
    write_wav,
)
from training.layouts import LAYOUTS, fold_numbers, load_split, resolve_layout  # noqa: E402

log = logging.getLogger("prepare_faces")

AUDIO_RATE = 16000
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v")


@dataclass
class Options:
    out_root: Path
    clip_root: Path
    videos: Path | None
    size: int
    margin: float
    align: bool
    detect_every: int
    audio: bool


def default_detector() -> FaceDetector:
    """The face detector affect_node uses by default (its parameter table's `face_detector`), with
    its default settings."""
    return make_detector(PipelineConfig())


def dataset_clips(data_dir: Path, layout: dict) -> list[ClipEntry]:
    """Every clip an annotation file of the layout lists (all folds, train and test), once."""
    classes = list(get_class_set(layout["class_set"]).classes)
    seen: dict[Path, ClipEntry] = {}
    for fold in fold_numbers(layout):
        for split in ("train", "test"):
            for entry in load_split(data_dir, layout, split, fold, classes):
                seen.setdefault(entry.path, entry)
    return list(seen.values())


def _largest(found: list) -> tuple[float, float, float, float, float] | None:
    """(x, y, w, h, roll in degrees) of the largest face; roll 0 without landmarks."""
    if not found:
        return None
    face = max((as_detection(f) for f in found), key=lambda d: d.area)
    return (*(float(v) for v in face.box), face.roll_deg)


def face_boxes(frames: list[np.ndarray], detector, every: int) -> list[tuple | None]:
    """The face (x, y, w, h, roll) for each frame: detection runs on every `every`-th frame and
    keeps the largest face; between two frames where it found one the box is interpolated
    linearly, before the first and after the last it is held. None for every frame when no face
    was found."""
    detected = {i: _largest(detector.detect(frames[i])) for i in range(0, len(frames), every)}
    found = sorted(i for i, box in detected.items() if box is not None)
    if not found:
        return [None] * len(frames)
    out = []
    for i in range(len(frames)):
        after = bisect_left(found, i)
        if after == len(found) or found[after] == i or after == 0:
            out.append(detected[found[min(after, len(found) - 1)]])
            continue
        j0, j1 = found[after - 1], found[after]
        a, b = np.array(detected[j0], float), np.array(detected[j1], float)
        out.append(tuple(float(v) for v in a + (b - a) * (i - j0) / (j1 - j0)))
    return out


def crop_clip(frames: list[np.ndarray], boxes: list, size: int, margin: float, align: bool) -> list[np.ndarray]:
    """Square crops around each frame's face box (the centre square without one), resized;
    turned upright by the face's roll when `align` (as affect_node's `face_align`)."""
    out = []
    for frame, face in zip(frames, boxes):
        h, w = frame.shape[:2]
        if face is None:
            side = min(h, w)
            square = ((w - side) // 2, (h - side) // 2, side, side)
        else:
            square = square_crop_box(tuple(int(round(v)) for v in face[:4]), frame.shape, margin)
            if align and face[4]:
                square = (*square, face[4])
        out.append(crop(frame, square, size))
    return out


def source_video(entry: ClipEntry, options: Options) -> Path | None:
    """The video file that holds a clip's sound: the clip itself, or for a frame folder the file
    named like it under `--videos` (any video suffix)."""
    if not entry.path.is_dir():
        return entry.path
    if options.videos is None:
        return None
    rel = entry.path.relative_to(options.clip_root)
    for suffix in VIDEO_SUFFIXES:
        candidate = options.videos / rel.parent / (rel.name + suffix)
        if candidate.is_file():
            return candidate
    return None


def clip_audio(entry: ClipEntry, options: Options) -> np.ndarray | None:
    sidecar = audio_path(entry.path)
    if sidecar.is_file():
        return read_audio(entry.path, AUDIO_RATE)
    video = source_video(entry, options)
    if video is None:
        return None
    try:
        return read_video_audio(video, AUDIO_RATE)
    except DatasetError as e:
        if "has no audio stream" in str(e):
            return None
        raise


def prepare_clip(entry: ClipEntry, options: Options, detector) -> dict | None:
    """Write one clip's face folder (and audio); None when it was already there."""
    target = options.out_root / entry.path.relative_to(options.clip_root)
    wav = target.with_name(target.name + ".wav")  # where training looks for a frame folder's audio
    if target.is_dir() and (not options.audio or wav.is_file() or (target / ".no_audio").is_file()):
        return None
    record: dict = {"clip": str(entry.path), "faces": str(target)}
    if not target.is_dir():
        frames = read_all_frames(entry.path)
        boxes = face_boxes(frames, detector, options.detect_every)
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        crops = crop_clip(frames, boxes, options.size, options.margin, options.align)
        for index, face in enumerate(crops, start=1):
            cv2.imwrite(str(partial / f"{index:05d}.jpg"), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
        os.replace(partial, target)
        record.update(frames=len(frames), with_face=sum(b is not None for b in boxes), fallback=boxes[0] is None)
    if options.audio:
        samples = clip_audio(entry, options)
        if samples is None:
            (target / ".no_audio").touch()
            record["audio_s"] = None
        else:
            partial_wav = wav.with_name(wav.name + ".partial")
            write_wav(partial_wav, samples, AUDIO_RATE)
            os.replace(partial_wav, wav)
            record["audio_s"] = round(samples.size / AUDIO_RATE, 3)
    return record


def prepare(
    data_dir: Path,
    layout: dict,
    out: str = "faces",
    videos: str | None = None,
    size: int = 224,
    margin: float | None = None,
    detect_every: int = 1,
    audio: bool = True,
    workers: int = 2,
    progress: bool = True,
    detector_factory=default_detector,
) -> dict:
    """Prepare every clip of the dataset; returns the counts (written, cached, fallbacks, no audio)."""
    data_dir = Path(data_dir)
    if size < 16 or detect_every < 1:
        raise ValueError(f"--size must be >= 16 and --detect-every >= 1, got {size} and {detect_every}")
    node = PipelineConfig()
    options = Options(
        out_root=data_dir / out,
        clip_root=data_dir / layout["clip_root"],
        videos=(data_dir / videos) if videos else None,
        size=size,
        margin=float(node.face_margin if margin is None else margin),
        align=bool(node.face_align),
        detect_every=detect_every,
        audio=audio,
    )
    entries = dataset_clips(data_dir, layout)
    options.out_root.mkdir(parents=True, exist_ok=True)
    local = threading.local()  # one detector per worker thread: a detector need not be thread-safe

    def work(entry: ClipEntry) -> dict | None:
        if not hasattr(local, "detector"):
            local.detector = detector_factory()
        try:
            return prepare_clip(entry, options, local.detector)
        except (OSError, DatasetError) as e:
            raise DatasetError(f"{entry.source or entry.path}: {e}") from None

    counts = {"clips": len(entries), "written": 0, "cached": 0, "fallback": 0, "no_audio": 0}
    with (
        (options.out_root / "faces.jsonl").open("a") as manifest,
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
    ):
        for record in tqdm(
            pool.map(work, entries), total=len(entries), desc="face crops", unit="clip", disable=not progress
        ):
            if record is None:
                counts["cached"] += 1
                continue
            counts["written"] += 1
            counts["fallback"] += bool(record.get("fallback"))
            counts["no_audio"] += audio and record.get("audio_s", 0) is None
            manifest.write(json.dumps(record) + "\n")
            manifest.flush()
    log.info(
        "%d clips: %d written, %d already there; %d without any face (centre crop), %d without audio -> %s",
        counts["clips"],
        counts["written"],
        counts["cached"],
        counts["fallback"],
        counts["no_audio"],
        options.out_root,
    )
    return counts


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--layout", required=True, choices=sorted(LAYOUTS), help="training/layouts.py")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a layout key")
    p.add_argument("--out", default="faces", help="output folder, relative to --data (default faces)")
    p.add_argument("--videos", help="folder of the original videos (relative to --data) for frame-folder datasets")
    p.add_argument("--size", type=int, default=224, help="side of the saved crops in pixels (default 224)")
    p.add_argument("--margin", type=float, default=None, help="margin around the face (default: affect_node's)")
    p.add_argument("--detect-every", type=int, default=1, help="detect on every Nth frame (default 1)")
    p.add_argument("--no-audio", action="store_true", help="frames only")
    p.add_argument("--workers", type=int, default=2, help="clips prepared at once (default 2)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    overrides = {"layout": args.layout}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            p.error(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key] = yaml.safe_load(value)
    return prepare(
        Path(args.data),
        resolve_layout(overrides),
        out=args.out,
        videos=args.videos,
        size=args.size,
        margin=args.margin,
        detect_every=args.detect_every,
        audio=not args.no_audio,
        workers=args.workers,
        progress=not args.no_progress,
    )


if __name__ == "__main__":
    try:
        main()
    except (DatasetError, ValueError) as e:
        sys.exit(f"prepare_faces: error: {e}")

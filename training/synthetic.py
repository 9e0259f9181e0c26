"""Synthetic datasets that prove the training loop learns what it should, without licensed data.

`make_motion_dataset`: a small set in DFEW's layout whose seven classes differ only in the
ORDER in which a bar visits the same 16 heights. Every class shows the bar at exactly the same
16 positions, one per frame (colour, background and noise drawn alike for every class), so a
single frame, or any average over frames, carries no information about the class:
a frame-averaging model stays at chance (1/7), and only a model that sees time can do better.
The motion is vertical, so horizontal flips keep the label.

`make_av_dataset`: a set (generic layout, frames + .wav) where each clip carries its class in
exactly one modality: a class colour in the video with noise for audio, or a class tone in the
audio with grey noise for video. Either modality alone is right on about half of the clips; a
model that uses both can be right on nearly all.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .datasets import write_wav

STEPS = 16


def _orders() -> list[list[int]]:
    """Seven visiting orders of the positions 0..15 (permutations of one another)."""
    up = list(range(STEPS))
    there_back = up[0::2] + up[1::2][::-1]
    two_sweeps = up[0::2] + up[1::2]
    zigzag = [v for pair in zip(up[: STEPS // 2], up[::-1][: STEPS // 2]) for v in pair]
    return [up, up[::-1], there_back, there_back[::-1], two_sweeps, two_sweeps[::-1], zigzag]


ORDERS = _orders()


def _motion_clip(order: list[int], size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """BGR frames of a horizontal bar visiting 16 heights in `order`; its colour, the background
    and the noise are drawn by rng (the same distributions for every class)."""
    margin = size * 0.1
    heights = margin + np.arange(STEPS) * (size - 2 * margin) / (STEPS - 1)
    colour = rng.uniform(160, 255, 3)
    background = rng.uniform(20, 80, 3)
    rows = np.arange(size, dtype=np.float32)[:, None, None]
    frames = []
    for k in order:
        bar = np.exp(-((rows - heights[k]) ** 2) / (2 * (size / 20) ** 2))  # (size, 1, 1)
        frame = background + bar * (colour - background) + rng.normal(0, 6, (size, size, 3))
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return frames


def make_motion_dataset(
    root: str | Path, clips_per_class: int = 40, size: int = 48, folds: int = 5, seed: int = 0
) -> Path:
    """Write the motion-only set in DFEW's layout under `root` (frames at 8 fps: a clip is 2 s)
    and return `root`. Clip k of each class goes to test fold (k % folds) + 1."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    clip_dir = root / "Clip" / "clip_224x224"
    rows: list[tuple[int, int, int]] = []  # (video id, label 1..7, fold)
    video_id = 0
    for k in range(clips_per_class):
        for label, order in enumerate(ORDERS):
            video_id += 1
            folder = clip_dir / f"{video_id:05d}"
            folder.mkdir(parents=True, exist_ok=True)
            for t, frame in enumerate(_motion_clip(order, size, rng)):
                cv2.imwrite(str(folder / f"{t + 1:05d}.png"), frame)
            rows.append((video_id, label + 1, k % folds + 1))
    for fold in range(1, folds + 1):
        for split, keep in (("train", lambda f: f != fold), ("test", lambda f: f == fold)):
            path = root / "EmoLabel_DataSplit" / f"{split}(single-labeled)" / f"set_{fold}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            lines = ["video_name,label"] + [f"{v},{label}" for v, label, f in rows if keep(f)]
            path.write_text("\n".join(lines) + "\n")
    return root


def make_av_dataset(
    root: str | Path,
    clips_per_class: int = 24,
    num_classes: int = 7,
    size: int = 48,
    rate: int = 16000,
    seconds: float = 2.0,
    folds: int = 5,
    seed: int = 0,
) -> Path:
    """Write the audio-visual set (generic layout, 8 fps frames + `<clip>.wav`) and return `root`.
    Even-numbered clips of a class carry it in the video, odd ones in the audio."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    hues = np.linspace(0, 180, num_classes, endpoint=False)
    tones = 220.0 * 2 ** (np.arange(num_classes) / 2)  # half an octave apart
    t = np.arange(int(seconds * rate)) / rate
    rows: list[tuple[str, int, int]] = []
    for k in range(clips_per_class):
        for label in range(num_classes):
            name = f"clips/{label}_{k:03d}"
            folder = root / name
            folder.mkdir(parents=True, exist_ok=True)
            in_video = k % 2 == 0
            for i in range(STEPS):
                hsv = np.empty((size, size, 3), np.uint8)
                hsv[..., 0] = hues[label] if in_video else rng.integers(0, 180)
                hsv[..., 1] = 200 if in_video else 0
                hsv[..., 2] = rng.integers(80, 200, (size, size))
                cv2.imwrite(str(folder / f"{i + 1:05d}.png"), cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR))
            noise = rng.normal(0, 0.1, t.size)
            audio = noise + (
                0.5 * np.sin(2 * np.pi * tones[label] * t + rng.uniform(0, 2 * np.pi)) if not in_video else 0.0
            )
            write_wav(root / f"{name}.wav", audio, rate)
            rows.append((name, label + 1, k % folds + 1))
    for fold in range(1, folds + 1):
        for split, keep in (("train", lambda f: f != fold), ("test", lambda f: f == fold)):
            path = root / f"set_{fold}" / f"{split}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(f"{n} {label}" for n, label, f in rows if keep(f)) + "\n")
    return root

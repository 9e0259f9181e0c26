"""Cost of turning a camera frame into model input, relative to a bare cv2.resize.

Measures, side by side in one run (interleaved, median of many repeats):
  - baseline: cv2.resize of the 640x480 frame to 224x224 (INTER_AREA, the kernel the pipeline
    uses when shrinking; INTER_LINEAR shown too),
  - pipeline: bgr8 sensor_msgs/Image -> RGB (`image_to_rgb`) + CLIP preprocessing to a
    (1, 3, 224, 224) normalised float32 tensor (`FramePreprocessor`),
and prints their ratio; then the conversion cost of every encoding at 640x480 and of a
16-frame window.

Usage: python benchmarks/bench_preprocess.py [--repeats 300] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from duse_ros.affect.preprocess import FramePreprocessor  # noqa: E402
from duse_ros.io.images import compressed_to_rgb, image_to_rgb  # noqa: E402
from duse_ros.models.base import InputSpec  # noqa: E402

HEIGHT, WIDTH = 480, 640


def make_image(encoding: str, step: int, data: bytes, big_endian: bool = False) -> Image:
    return Image(height=HEIGHT, width=WIDTH, encoding=encoding, step=step, data=data, is_bigendian=int(big_endian))


def test_frame() -> np.ndarray:
    """A textured RGB frame (smooth noise at several scales), so codecs and resizers do real work."""
    rng = np.random.default_rng(0)
    layers = [
        cv2.resize(
            rng.standard_normal((HEIGHT // s, WIDTH // s, 3)).astype(np.float32),
            (WIDTH, HEIGHT),
            interpolation=cv2.INTER_CUBIC,
        )
        * s
        for s in (1, 4, 16)
    ]
    return cv2.normalize(sum(layers), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def encoded_messages(rgb: np.ndarray) -> dict[str, object]:
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    yuyv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_YUY2)  # (H, W, 2): Y0 U Y1 V ...
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)  # Y plane, then U, then V
    y, u, v = i420[:HEIGHT], i420[HEIGHT : HEIGHT + HEIGHT // 4].reshape(-1), i420[HEIGHT + HEIGHT // 4 :].reshape(-1)
    vu = np.stack([v, u], axis=1).reshape(HEIGHT // 2, WIDTH)
    uyvy = np.ascontiguousarray(yuyv.reshape(HEIGHT, WIDTH // 2, 4)[..., [1, 0, 3, 2]])
    return {
        "rgb8": make_image("rgb8", WIDTH * 3, rgb.tobytes()),
        "bgr8": make_image("bgr8", WIDTH * 3, bgr.tobytes()),
        "bgr8 (step padded to 2048)": make_image(
            "bgr8", 2048, np.pad(bgr.reshape(HEIGHT, -1), ((0, 0), (0, 2048 - WIDTH * 3))).tobytes()
        ),
        "rgba8": make_image("rgba8", WIDTH * 4, cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA).tobytes()),
        "bgra8": make_image("bgra8", WIDTH * 4, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA).tobytes()),
        "mono8": make_image("mono8", WIDTH, grey.tobytes()),
        "mono16 (little-endian)": make_image("mono16", WIDTH * 2, (grey.astype("<u2") * 257).tobytes()),
        "mono16 (big-endian)": make_image("mono16", WIDTH * 2, (grey.astype(">u2") * 257).tobytes(), big_endian=True),
        "yuv422 (uyvy)": make_image("yuv422", WIDTH * 2, uyvy.tobytes()),
        "yuv422_yuy2 (yuyv)": make_image("yuv422_yuy2", WIDTH * 2, yuyv.tobytes()),
        "nv21": make_image("nv21", WIDTH, np.concatenate([y, vu]).tobytes()),
        "bayer_rggb8": make_image("bayer_rggb8", WIDTH, grey.tobytes()),
        "jpeg (q90, CompressedImage)": CompressedImage(
            format="rgb8; jpeg compressed bgr8",
            data=cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes(),
        ),
        "png (level 3, CompressedImage)": CompressedImage(
            format="rgb8; png compressed bgr8",
            data=cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])[1].tobytes(),
        ),
    }


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--threads", type=int, default=None, help="cv2 and torch threads (default: library default)")
    args = parser.parse_args()
    if args.threads:
        cv2.setNumThreads(args.threads)
        torch.set_num_threads(args.threads)

    rgb = test_frame()
    msgs = encoded_messages(rgb)
    bgr_msg = msgs["bgr8"]
    frame_bgr = np.frombuffer(bytes(bgr_msg.data), np.uint8).reshape(HEIGHT, WIDTH, 3)
    spec = InputSpec()
    preprocess = FramePreprocessor(spec)

    cases = {
        "bare cv2.resize 640x480 -> 224x224 (INTER_AREA)": lambda: cv2.resize(
            frame_bgr, (224, 224), interpolation=cv2.INTER_AREA
        ),
        "bare cv2.resize 640x480 -> 224x224 (INTER_LINEAR)": lambda: cv2.resize(
            frame_bgr, (224, 224), interpolation=cv2.INTER_LINEAR
        ),
        "bgr8 Image -> RGB (image_to_rgb)": lambda: image_to_rgb(bgr_msg),
        "RGB -> (1,3,224,224) normalised (FramePreprocessor)": lambda: preprocess([rgb]),
        "bgr8 Image -> (1,3,224,224) normalised (convert + preprocess)": lambda: preprocess([image_to_rgb(bgr_msg)]),
    }
    for fn in cases.values():  # warm-up: caches, thread pools, lazy imports
        for _ in range(5):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):  # interleaved, so drift in machine load hits all cases alike
        for name, fn in cases.items():
            samples[name].append(timed(fn))
    median = {name: statistics.median(values) for name, values in samples.items()}

    print(
        f"duse_ros preprocessing benchmark: {WIDTH}x{HEIGHT} frame, {args.repeats} interleaved repeats, "
        f"median; cv2 {cv2.__version__} ({cv2.getNumThreads()} threads), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), image type {type(bgr_msg).__module__}.{type(bgr_msg).__name__}"
    )
    print()
    for name, value in median.items():
        print(f"  {name:<66s} {value * 1e3:8.3f} ms")
    base = median["bare cv2.resize 640x480 -> 224x224 (INTER_AREA)"]
    full = median["bgr8 Image -> (1,3,224,224) normalised (convert + preprocess)"]
    print()
    print(f"  ratio (convert + preprocess) / bare cv2.resize INTER_AREA:  {full / base:6.2f}x")
    print(
        f"  ratio (convert + preprocess) / bare cv2.resize INTER_LINEAR: "
        f"{full / median['bare cv2.resize 640x480 -> 224x224 (INTER_LINEAR)']:6.2f}x"
    )

    print()
    print(f"Conversion to RGB uint8 per encoding ({WIDTH}x{HEIGHT}, median of {args.repeats}):")
    per_encoding = {}
    for name, msg in msgs.items():
        convert = compressed_to_rgb if isinstance(msg, CompressedImage) else image_to_rgb
        for _ in range(3):
            convert(msg)
        per_encoding[name] = statistics.median(timed(lambda: convert(msg)) for _ in range(args.repeats))
    for name, value in per_encoding.items():
        print(f"  {name:<34s} {value * 1e3:8.3f} ms  ({value / base:5.2f}x bare resize)")

    window = [rgb] * spec.num_frames
    for _ in range(3):
        preprocess(window)
    repeats = max(20, args.repeats // 10)
    per_window = statistics.median(timed(lambda: preprocess(window)) for _ in range(repeats))
    print()
    print(
        f"A {spec.num_frames}-frame window of 640x480 RGB frames -> ({spec.num_frames},3,224,224): "
        f"{per_window * 1e3:.2f} ms (median of {repeats})"
    )


if __name__ == "__main__":
    main()

"""CPU milliseconds per 16-frame window: PyTorch eager fp32 vs ONNX Runtime fp32 vs ONNX Runtime
int8 (dynamic quantisation), side by side in one run; and how often int8 agrees with fp32.

Speed: each model is exported twice (fp32, int8) with duse_ros.onnx_export, then the three
runtimes run one window (batch 1) each, interleaved model by model and runtime by runtime for
--repeats rounds after a warm-up, with the same thread count (--threads) for torch and ORT. The
medians are printed with the load average (the machine is shared: medians of interleaved runs
are what holds). DuSE runs on open_clip's random init (speed does not depend on the values).

Agreement: the trained default model (fer2013-minixception), ORT fp32 vs int8 and ORT fp32 vs
torch, top-1 over windows of real face crops: the bundled portrait (duse_ros/data) with its face
cropped as the node crops it, in augmented variants (flips, rotations, brightness, contrast,
shifted and scaled crops), a window of 16 frames per variant.

Usage: python benchmarks/bench_onnx.py [--repeats 5] [--threads 2] [--variants 200]
                                       [--models fer2013-minixception duse-vitb32-normal duse-vitb16-normal]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from duse_ros.affect.faces import HaarFaceDetector, crop, square_crop_box  # noqa: E402
from duse_ros.affect.onnx_model import OnnxModel  # noqa: E402
from duse_ros.affect.preprocess import FramePreprocessor  # noqa: E402
from duse_ros.loading import load_model  # noqa: E402
from duse_ros.onnx_export import export_onnx  # noqa: E402

DEFAULT_MODELS = ["fer2013-minixception", "duse-vitb32-normal", "duse-vitb16-normal"]
RUNTIMES = ("torch fp32", "ORT fp32", "ORT int8")
PORTRAIT = Path(__file__).resolve().parents[1] / "duse_ros" / "data" / "astronaut.jpg"


def face_variants(count: int, seed: int = 0) -> list[np.ndarray]:
    """`count` augmented RGB face crops of the bundled portrait, as the node's crop box cuts them."""
    rgb = cv2.cvtColor(cv2.imread(str(PORTRAIT)), cv2.COLOR_BGR2RGB)
    boxes = HaarFaceDetector().detect(rgb)
    if not boxes:
        raise RuntimeError("no face found in the bundled portrait")
    x, y, w, h = max(boxes, key=lambda b: b[2] * b[3])
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        scale = rng.uniform(0.85, 1.2)  # scaled and shifted crops around the detection
        dx, dy = rng.uniform(-0.12, 0.12, 2) * w
        box = (int(x + dx + w * (1 - scale) / 2), int(y + dy + h * (1 - scale) / 2), int(w * scale), int(h * scale))
        face = crop(rgb, square_crop_box(box, rgb.shape, margin=0.25))
        size = face.shape[0]
        rotation = cv2.getRotationMatrix2D((size / 2, size / 2), rng.uniform(-20, 20), 1.0)
        face = cv2.warpAffine(face, rotation, (size, size), borderMode=cv2.BORDER_REFLECT)
        gain, offset = rng.uniform(0.6, 1.4), rng.uniform(-30, 30)  # contrast, brightness
        face = np.clip(face.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)
        if i % 2:
            face = face[:, ::-1]
        out.append(np.ascontiguousarray(face))
    return out


def agreement(name: str, fp32: OnnxModel, int8: OnnxModel, torch_model, variants: int) -> str:
    pre = FramePreprocessor(torch_model.input_spec)
    frames = face_variants(variants)
    t = torch_model.input_spec.num_frames
    same_int8 = same_torch = 0
    with torch.inference_mode():
        for face in frames:
            window = pre([face] * t).unsqueeze(0)  # (1, T, 3, S, S)
            ref = fp32(video=window).argmax(-1).item()
            same_int8 += int8(video=window).argmax(-1).item() == ref
            same_torch += torch_model(video=window).argmax(-1).item() == ref
    return (
        f"{name} (trained: {not torch_model.untrained}), {variants} augmented face windows of the bundled portrait: "
        f"top-1 ORT int8 = ORT fp32 in {100 * same_int8 / variants:.1f} %, "
        f"torch fp32 = ORT fp32 in {100 * same_torch / variants:.1f} %"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="torch and ORT intra-op threads")
    ap.add_argument("--variants", type=int, default=200, help="face windows for the int8 agreement")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)  # "random CLIP" warnings: random weights are the point here
    load_start = os.getloadavg()
    runners, windows = {}, {}
    for name in args.models:
        model = load_model(name).eval()
        t0 = time.perf_counter()
        fp32 = OnnxModel(export_onnx(model), f"{name} fp32", threads=args.threads)
        int8 = OnnxModel(export_onnx(model, quantize=True), f"{name} int8", threads=args.threads)
        print(f"exported {name} fp32 and int8 in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        runners[name] = dict(zip(RUNTIMES, (model, fp32, int8)))
        spec = model.input_spec
        windows[name] = torch.randn(
            1, spec.num_frames, 3, spec.image_size, spec.image_size, generator=torch.Generator().manual_seed(0)
        )
    times = {(name, rt): [] for name in runners for rt in RUNTIMES}
    with torch.inference_mode():
        for name, by_runtime in runners.items():  # warm-up: caches, allocators, ORT's first-run planning
            for run in by_runtime.values():
                run(video=windows[name])
        for _ in range(args.repeats):
            for name, by_runtime in runners.items():
                for rt, run in by_runtime.items():
                    start = time.perf_counter()
                    run(video=windows[name])
                    times[(name, rt)].append(time.perf_counter() - start)
    load_end = os.getloadavg()
    print(
        f"CPU ({os.cpu_count()} cores), {args.threads} threads for torch and ORT (CPUExecutionProvider), "
        f"{args.repeats} interleaved repeats of one 16-frame window; load average {load_start[0]:.1f} at start, "
        f"{load_end[0]:.1f} at end"
    )
    header = "".join(f"{rt + ' ms':>16}" for rt in RUNTIMES)
    print(f"{'model (median)':<24}{header}{'torch/ORT fp32':>16}{'torch/ORT int8':>16}")
    for name in runners:
        med = [statistics.median(times[(name, rt)]) for rt in RUNTIMES]
        cells = "".join(f"{m * 1e3:>16.1f}" for m in med)
        print(f"{name:<24}{cells}{med[0] / med[1]:>15.2f}x{med[0] / med[2]:>15.2f}x")
    default = "fer2013-minixception"
    if default in runners:
        r = runners[default]
        print(agreement(default, r["ORT fp32"], r["ORT int8"], r["torch fp32"], args.variants))
    return 0


if __name__ == "__main__":
    sys.exit(main())

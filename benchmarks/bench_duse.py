"""Cost of a DuSE forward relative to a bare open_clip `encode_image` of the same 16 frames.

Measures, side by side in one run (interleaved, after a warm-up, median of the repeats):
  - baseline: `clip.encode_image(frames)` on the (16, 3, S, S) frames of one window,
  - DuSE: `model(video)` on the same frames as a (1, 16, 3, S, S) window, in eval mode under
    `torch.inference_mode()` as the inference engine runs it (text features and visual prompts
    cached; the one-off cost of filling that cache is printed too),
for ViT-B/32 and ViT-B/16 and each prompt strategy, and prints DuSE / baseline (target <= 1.10)
as the ratio of the medians and, as a check on a busy machine, of the fastest runs.
With CUDA both run under fp16 (or --precision bf16) autocast, and DuSE's windows per second at batch 1 and 8 follow.

The CLIP weights are open_clip's random init (no weights file needed): speed does not depend
on their values.

Usage: python benchmarks/bench_duse.py [--device cpu|cuda] [--repeats 3] [--threads N] [--precision fp16|bf16]
                                       [--backbones vitb32 vitb16] [--strategies shallow normal deep]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import timed  # noqa: E402

from duse_ros.models import build_model  # noqa: E402

TARGET = 1.10
AUTOCAST = {"fp16": torch.float16, "bf16": torch.bfloat16}


def bench_backbone(
    key: str, strategies: list[str], device: torch.device, repeats: int, precision: str = "fp16"
) -> list[tuple]:
    dtype = AUTOCAST[precision]
    amp = (lambda: torch.autocast("cuda", dtype=dtype)) if device.type == "cuda" else contextlib.nullcontext
    models = {s: build_model(f"duse-{key}-{s}").eval().to(device) for s in strategies}
    clip = models[strategies[0]].clip  # every model holds the same (seeded) CLIP
    size = clip.visual.image_size[0]
    frames = torch.randn(16, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    video = frames.unsqueeze(0)
    rows = []
    with torch.inference_mode(), amp():
        fill = {s: timed(m.compute_prompt_state, device) for s, m in models.items()}
        for m in models.values():  # warm-up (and the cache fill)
            m(video)
        clip.encode_image(frames)
        bare, duse = [], {s: [] for s in strategies}
        for _ in range(repeats):  # interleaved, so drift hits both alike
            bare.append(timed(lambda: clip.encode_image(frames), device))
            for s, m in models.items():
                duse[s].append(timed(lambda: m(video), device))
        base = statistics.median(bare)
        for s, m in models.items():
            t = statistics.median(duse[s])
            best_ratio = min(duse[s]) / min(bare)  # less sensitive to a busy machine
            throughput = {}
            if device.type == "cuda":
                for batch in (1, 8):
                    clips = video.expand(batch, -1, -1, -1, -1).contiguous()
                    m(clips)
                    times = [timed(lambda: m(clips), device) for _ in range(repeats)]
                    throughput[batch] = batch / statistics.median(times)
            rows.append((key, s, m.prompts.depth, base, t, t / base, best_ratio, fill[s], throughput))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=None, help="default: 3 on CPU, 30 on CUDA")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--precision", default="fp16", choices=sorted(AUTOCAST), help="autocast dtype on CUDA (CPU: fp32)"
    )
    parser.add_argument("--backbones", nargs="+", default=["vitb32", "vitb16"], choices=["vitb32", "vitb16", "vitl14"])
    parser.add_argument(
        "--strategies", nargs="+", default=["shallow", "normal", "deep"], choices=["shallow", "normal", "deep"]
    )
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # "random CLIP" warnings: expected here
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    repeats = args.repeats or (30 if device.type == "cuda" else 3)
    precision = f"{args.precision} autocast" if device.type == "cuda" else "fp32"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"DuSE forward / bare open_clip encode_image, 16 frames, {name}, {precision}, "
        f"random-init CLIP, median of {repeats}"
    )
    header = (
        f"{'backbone':8} {'strategy':8} {'M':>2} {'encode_image':>13} {'DuSE':>10} {'ratio':>6} "
        f"{'min ratio':>9} {'cache fill':>11}"
    )
    if device.type == "cuda":
        header += f" {'win/s b1':>9} {'win/s b8':>9}"
    print(header)
    worst = 0.0
    for key in args.backbones:
        for key_, s, depth, base, t, ratio, best_ratio, fill, tput in bench_backbone(
            key, args.strategies, device, repeats, args.precision
        ):
            worst = max(worst, ratio)
            line = (
                f"{key_:8} {s:8} {depth:>2} {base * 1e3:>10.1f} ms {t * 1e3:>7.1f} ms {ratio:>6.3f} "
                f"{best_ratio:>9.3f} {fill * 1e3:>8.1f} ms"
            )
            if tput:
                line += f" {tput[1]:>9.1f} {tput[8]:>9.1f}"
            print(line, flush=True)
    print(f"worst ratio {worst:.3f} (target <= {TARGET:.2f}): {'ok' if worst <= TARGET else 'OVER TARGET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

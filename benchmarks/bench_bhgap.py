"""Cost of BHGap's audio front end and of a BHGap forward relative to its two bare encoders.

Measures, side by side in one run (interleaved, after a warm-up, median of the repeats):
  - the log-mel front end on one window's waveform, reported per second of audio;
  - baseline: the visual encoder's `forward_features` on the window's 16 frames plus the audio
    encoder's on the window's (already computed) log-mel, i.e. the two frozen encoders alone;
  - BHGap: `model(video, audio)` on the same window from its waveform (front end, deep prompting,
    alignment, fusion, head), in eval mode under `torch.inference_mode()` as the engine runs it;
and prints BHGap / baseline (target <= 1.25) as the ratio of the medians and, as a check on a
busy machine, of the fastest runs. With CUDA (fp16 or --precision bf16 autocast) and mamba-ssm installed, the
selective scan of mamba_ssm is timed against mambapy's PyTorch scan on the same inputs, with
their largest difference.

Encoder weights are random (no files needed): speed does not depend on their values.

Usage: python benchmarks/bench_bhgap.py [--device cpu|cuda] [--repeats N] [--threads N] [--precision fp16|bf16]
                                        [--models bhgap-tiny bhgap-vitb16]
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
from duse_ros.models.ssm import scan_backend, selective_scan  # noqa: E402

TARGET = 1.25
AUTOCAST = {"fp16": torch.float16, "bf16": torch.bfloat16}


def bench_model(name: str, device: torch.device, repeats: int, precision: str = "fp16") -> dict:
    dtype = AUTOCAST[precision]
    amp = (lambda: torch.autocast("cuda", dtype=dtype)) if device.type == "cuda" else contextlib.nullcontext
    model = build_model(name).eval().to(device)
    spec = model.input_spec
    gen = torch.Generator().manual_seed(0)
    video = torch.randn(1, spec.num_frames, 3, spec.image_size, spec.image_size, generator=gen).to(device)
    # The audio the pipeline cuts for a window: first to last frame, 15/16 of the span.
    samples = int(model.config()["span_s"] * 15 / 16 * spec.audio_rate)
    audio = (0.1 * torch.randn(1, samples, generator=gen)).to(device)
    with torch.inference_mode(), amp():
        fbank = model.frontend(audio).unsqueeze(1)  # (1, 1, F, 128)
        frames = video.flatten(0, 1)

        def bare():
            model.visual.forward_features(frames)
            model.audio.forward_features(fbank)

        for fn in (bare, lambda: model(video, audio), lambda: model.frontend(audio)):
            fn()  # warm-up
        t_bare, t_model, t_front = [], [], []
        for _ in range(repeats):  # interleaved: drift hits all alike
            t_bare.append(timed(bare, device))
            t_model.append(timed(lambda: model(video, audio), device))
            t_front.append(timed(lambda: model.frontend(audio), device))
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(v.numel() for v in model.trainable_state_dict().values())
    base, full = statistics.median(t_bare), statistics.median(t_model)
    return {
        "name": name,
        "params": params,
        "trainable": trainable,
        "bare": base,
        "model": full,
        "ratio": full / base,
        "min_ratio": min(t_model) / min(t_bare),
        "front_per_s": statistics.median(t_front) / (samples / spec.audio_rate),
    }


def bench_scan(device: torch.device, repeats: int) -> str | None:
    """mamba_ssm's CUDA scan against mambapy's on the same (base-size) inputs, if both can run."""
    if scan_backend(torch.empty(0, device=device)) != "mamba_ssm":
        return None
    gen = torch.Generator(device=device).manual_seed(0)
    shape = (4, 302, 512)
    x, delta, z = (torch.randn(shape, device=device, generator=gen) for _ in range(3))
    B, C = (torch.randn(4, 302, 16, device=device, generator=gen) for _ in range(2))
    A = -torch.rand(512, 16, device=device, generator=gen) * 4
    D, bias = torch.ones(512, device=device), torch.zeros(512, device=device)
    out = {}
    with torch.inference_mode():
        for backend in ("mamba_ssm", "mambapy"):
            selective_scan(x, delta, A, B, C, D, z, bias, backend=backend)
            times = [
                timed(lambda: selective_scan(x, delta, A, B, C, D, z, bias, backend=backend), device)
                for _ in range(repeats)
            ]
            out[backend] = (statistics.median(times), selective_scan(x, delta, A, B, C, D, z, bias, backend=backend))
    diff = (out["mamba_ssm"][1] - out["mambapy"][1]).abs().max().item()
    return (
        f"selective scan (4 x 302 tokens x 512 channels, N=16): mamba_ssm {out['mamba_ssm'][0] * 1e3:.2f} ms, "
        f"mambapy {out['mambapy'][0] * 1e3:.2f} ms, ratio {out['mambapy'][0] / out['mamba_ssm'][0]:.1f}x, "
        f"max |diff| {diff:.2e}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--repeats", type=int, default=None, help="default: 30 for tiny, 3 otherwise on CPU; 30 on CUDA"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--precision", default="fp16", choices=sorted(AUTOCAST), help="autocast dtype on CUDA (CPU: fp32)"
    )
    parser.add_argument("--models", nargs="+", default=["bhgap-tiny", "bhgap-vitb16"])
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # "random encoders" warnings: expected here
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    precision = f"{args.precision} autocast" if device.type == "cuda" else "fp32"
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"BHGap forward / its two bare encoders, one window (16 frames + its audio), {where}, {precision}, random encoders"
    )
    print(
        f"{'model':22} {'params':>8} {'trainable':>9} {'encoders':>11} {'BHGap':>11} {'ratio':>6} {'min ratio':>9} "
        f"{'front end per s audio':>22}"
    )
    worst = 0.0
    for name in args.models:
        repeats = args.repeats or (30 if device.type == "cuda" or "tiny" in name else 3)
        r = bench_model(name, device, repeats, args.precision)
        worst = max(worst, r["ratio"])
        print(
            f"{r['name']:22} {r['params'] / 1e6:>7.1f}M {r['trainable'] / 1e6:>8.2f}M {r['bare'] * 1e3:>8.1f} ms "
            f"{r['model'] * 1e3:>8.1f} ms {r['ratio']:>6.3f} {r['min_ratio']:>9.3f} {r['front_per_s'] * 1e3:>19.2f} ms",
            flush=True,
        )
    print(f"worst ratio {worst:.3f} (target <= {TARGET:.2f}): {'ok' if worst <= TARGET else 'OVER TARGET'}")
    scan = bench_scan(device, 30) if device.type == "cuda" else None
    print(scan or "CUDA scan comparison: skipped (needs a CUDA device and the 'cuda' extra, mamba-ssm)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

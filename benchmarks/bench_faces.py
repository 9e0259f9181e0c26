"""Several faces per window: what N faces cost the affect pipeline, batched, next to N x one face.

Two measurements, each interleaved round by round (so a busy machine slows both sides alike),
medians printed with the ratio of N x one face to the batched path:

1. forward: the model on one window of N faces as one batch (what the engine runs for a job of N
   clips) against N forwards of one face each (N nodes, or a node without batching);
2. pipeline: AffectPipeline end to end over a stream (640x480 at 30 fps, detector scripted to find
   N faces at 5 Hz, so detection time is left out), wall time per window including the crops
   made on each frame's arrival, the keyframe re-crops and the forward, against N x the same
   pipeline with max_faces 1 and one face.

Usage: python benchmarks/bench_faces.py [--model fer2013-minixception] [--faces 1 2 4 8]
                                        [--repeats 5] [--seconds 6] [--threads 1]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from duse_ros.affect.pipeline import AffectPipeline, PipelineConfig  # noqa: E402
from duse_ros.loading import load_model  # noqa: E402
from duse_ros.timebase import NS  # noqa: E402


class GridFaces:
    """N faces of 80 px on a 640x480 frame, found instantly."""

    def __init__(self, n: int):
        self.boxes = [(20 + 150 * (i % 4), 40 + 220 * (i // 4), 80, 80) for i in range(n)]

    def detect(self, rgb):
        return list(self.boxes)


def forward_ms(model, n: int, batched: bool) -> float:
    spec = model.input_spec
    clips = torch.randn(n, spec.num_frames, 3, spec.image_size, spec.image_size)
    t0 = time.perf_counter()
    with torch.inference_mode():
        if batched:
            model(clips)
        else:
            for i in range(n):
                model(clips[i : i + 1])
    return (time.perf_counter() - t0) * 1e3


def pipeline_ms_per_window(model_name: str, n: int, seconds: float) -> float:
    """Wall ms per window of a stream pushed as fast as the pipeline takes it."""
    frames = int(seconds * 30)
    expected = (frames - 56 + 14) // 15  # first window at frame 56, then one per 15 frames
    done, readings, lock = threading.Event(), [], threading.Lock()

    def on_reading(r):
        with lock:
            readings.append(r)
            if len(readings) >= expected * n:
                done.set()

    pipeline = AffectPipeline(
        load_model(model_name),
        PipelineConfig(face_mode="detect", max_faces=n, face_detect_hz=5.0, queue_depth=64, smoothing_window=5),
        on_reading,
        detector=GridFaces(n),
    )
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(4)]
    pipeline.start()
    try:
        t0 = time.perf_counter()
        for k in range(frames):
            pipeline.add_frame(k * NS // 30, images[k % 4])
            pipeline._keyframer.wait_idle(10)  # keep detection (free here) in step with the stream
        if not done.wait(120):
            raise RuntimeError(f"only {len(readings)} of {expected * n} readings")
        elapsed = time.perf_counter() - t0
    finally:
        pipeline.stop()
    return elapsed * 1e3 / expected


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="fer2013-minixception")
    ap.add_argument("--faces", nargs="+", type=int, default=[1, 2, 4, 8])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=6.0, help="stream length of each pipeline run")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the node's torch_threads)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)
    model = load_model(args.model).eval()
    forward_ms(model, 1, True)  # warm-up
    print(f"model {args.model}, torch threads {args.threads}, {args.repeats} rounds, medians")
    print(
        f"{'faces':>5} | {'forward batched':>15} {'N x one':>9} {'ratio':>6} | "
        f"{'pipeline/window':>15} {'N x one':>9} {'ratio':>6}"
    )
    for n in args.faces:
        batched, separate, pipe, pipe_one = [], [], [], []
        for _ in range(args.repeats):
            batched.append(forward_ms(model, n, True))
            separate.append(forward_ms(model, n, False))
            pipe.append(pipeline_ms_per_window(args.model, n, args.seconds))
            pipe_one.append(n * pipeline_ms_per_window(args.model, 1, args.seconds))
        b, s, p, p1 = (statistics.median(x) for x in (batched, separate, pipe, pipe_one))
        print(f"{n:>5} | {b:>12.1f} ms {s:>6.1f} ms {s / b:>5.2f}x | {p:>12.1f} ms {p1:>6.1f} ms {p1 / p:>5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

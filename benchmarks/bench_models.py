"""CPU milliseconds per 16-frame window for the trained default model next to DuSE's.

Each model runs `model(video)` on one preprocessed window of its own input size, in eval mode
under `torch.inference_mode()` as the inference engine runs it, interleaved round by round after
a warm-up, and the median and fastest of the repeats are printed with each model's cost as a
ratio to the default model's. DuSE runs on open_clip's random init (speed does not depend on
the weight values). The default model's weights come from `make setup` (duse-fetch-weights).

With --engine, each window also goes through the InferenceEngine as the node runs it on CPU
(fp32; submit, worker thread, softmax, result callback), interleaved with the bare forward: the
engine's own cost is the difference.

Usage: python benchmarks/bench_models.py [--repeats 5] [--threads N] [--engine]
                                         [--models fer2013-minixception duse-vitb32-normal duse-vitb16-normal]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from duse_ros.affect.engine import InferenceEngine, Job  # noqa: E402
from duse_ros.loading import load_model  # noqa: E402

DEFAULT_MODELS = ["fer2013-minixception", "duse-vitb32-normal", "duse-vitb16-normal"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    ap.add_argument("--engine", action="store_true", help="also time each window through the InferenceEngine")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)  # "random CLIP" warnings: random weights are the point here
    models = {name: load_model(name).eval() for name in args.models}
    windows = {}
    for name, model in models.items():
        spec = model.input_spec
        windows[name] = torch.randn(
            1, spec.num_frames, 3, spec.image_size, spec.image_size, generator=torch.Generator().manual_seed(0)
        )
    times: dict[str, list[float]] = {name: [] for name in models}
    engine_times: dict[str, list[float]] = {name: [] for name in models}
    done = threading.Event()
    engines = {}
    if args.engine:
        for name, model in models.items():
            engines[name] = InferenceEngine(model, device="cpu", on_result=lambda result: done.set(), name=name)
            engines[name].start()

    def through_engine(name: str, key: int) -> float:
        done.clear()
        start = time.perf_counter()
        engines[name].submit(Job(key, windows[name][0], None))
        if not done.wait(600):
            raise RuntimeError(f"{name}: no result from the engine in 600 s")
        return time.perf_counter() - start

    with torch.inference_mode():
        for name, model in models.items():  # warm-up: caches, allocator, first-call dispatch
            model(windows[name])
    for name in engines:
        through_engine(name, -1)
    for i in range(args.repeats):
        for name, model in models.items():
            start = time.perf_counter()
            with torch.inference_mode():
                model(windows[name])
            times[name].append(time.perf_counter() - start)
            if engines:
                engine_times[name].append(through_engine(name, i))
    for engine in engines.values():
        engine.stop()
    base = args.models[0]
    base_median = statistics.median(times[base])
    print(f"CPU, torch threads {torch.get_num_threads()}, {args.repeats} repeats, one 16-frame window each")
    header = f"{'model':<24} {'input':>6} {'median ms':>10} {'fastest ms':>11} {'x ' + base:>28}"
    print(header + (f" {'engine ms':>10} {'engine / model':>15}" if engines else ""))
    for name, model in models.items():
        median, fastest = statistics.median(times[name]), min(times[name])
        line = (
            f"{name:<24} {model.input_spec.image_size:>4}px {1e3 * median:10.1f} {1e3 * fastest:11.1f} "
            f"{median / base_median:28.1f}"
        )
        if engines:
            through = statistics.median(engine_times[name])
            line += f" {1e3 * through:10.1f} {through / median:15.3f}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

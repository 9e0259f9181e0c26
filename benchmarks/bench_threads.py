"""Window latency by torch thread count, with no load added and beside one busy process.

A robot runs many nodes on one CPU. PyTorch's intra-op pool (OpenMP) starts one thread per core
and its threads wait for each other at every operator: when another process takes a core, the
thread on it is descheduled and every operator waits for it. This runs the default model (or
`--model`) on one 16-frame window per call, in eval mode under `torch.inference_mode()` as the
engine runs it, for each thread count side by side, round by round: first with no load added
(the load average is printed: other processes count too), then with `--busy` processes spinning
(each a plain Python busy loop, one core's worth of load).
It prints the median and 90th percentile per setting and each median as a ratio to 1 thread's.

Usage: python benchmarks/bench_threads.py [--model fer2013-minixception] [--threads 1 2 0]
                                          [--repeats 15] [--busy 1]
`--threads 0` is torch's own default (one per core, or OMP_NUM_THREADS).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from duse_ros.loading import load_model  # noqa: E402

TORCH_DEFAULT_THREADS = torch.get_num_threads()
SPIN = "import time\nend = time.monotonic() + 3600\nwhile time.monotonic() < end: pass\n"


def run_rounds(model, window: torch.Tensor, threads: list[int], repeats: int) -> dict[int, list[float]]:
    times: dict[int, list[float]] = {n: [] for n in threads}
    with torch.inference_mode():
        for n in threads:  # warm-up per pool size
            torch.set_num_threads(n or TORCH_DEFAULT_THREADS)
            model(window)
        for _ in range(repeats):
            for n in threads:
                torch.set_num_threads(n or TORCH_DEFAULT_THREADS)
                start = time.perf_counter()
                model(window)
                times[n].append(time.perf_counter() - start)
    return times


def report(label: str, times: dict[int, list[float]]) -> None:
    base = statistics.median(times[min(times, key=lambda n: n or TORCH_DEFAULT_THREADS)])
    print(f"\n{label}")
    print(f"{'torch_threads':<22} {'median ms':>10} {'p90 ms':>8} {'x fewest':>9}")
    for n, values in times.items():
        name = f"{n}" if n else f"0 (torch default: {TORCH_DEFAULT_THREADS})"
        median = statistics.median(values)
        p90 = statistics.quantiles(values, n=10)[-1] if len(values) >= 2 else values[0]
        print(f"{name:<22} {median * 1e3:>10.1f} {p90 * 1e3:>8.1f} {median / base:>9.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="fer2013-minixception")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2, 0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--busy", type=int, default=1, help="competing busy processes in the second run")
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)  # random-weight warnings: speed does not depend on the values
    model = load_model(args.model).eval()
    spec = model.input_spec
    window = torch.randn(
        1, spec.num_frames, 3, spec.image_size, spec.image_size, generator=torch.Generator().manual_seed(0)
    )
    print(
        f"{args.model}, one 16-frame window per call at {spec.image_size}px, {args.repeats} rounds; "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}"
    )
    load = "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    report(f"no added load ({load} before the run)", run_rounds(model, window, args.threads, args.repeats))
    busy = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(args.busy)]
    try:
        time.sleep(0.5)  # the spinners are scheduled before the first timed call
        report(f"beside {args.busy} busy process(es)", run_rounds(model, window, args.threads, args.repeats))
    finally:
        for process in busy:
            process.kill()
            process.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())

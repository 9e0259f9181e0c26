"""The GPU check: CUDA tests, bench_duse, bench_bhgap and the engine's latency, in one table.

Runs, on the first CUDA device:
  1. the CUDA tests (test_engine, test_ssm, test_bhgap: those marked to need a GPU);
  2. bench_duse.py and bench_bhgap.py (model / bare encoder(s) ratios), output kept in the log;
  3. per model, one window through the inference engine as the node runs it (uint8 crops copied
     from pinned memory and normalised on the GPU, autocast), for 1, 4 and 8 faces, with CUDA
     graphs and eagerly, side by side: p50/p95 of Result.latency_s (host-to-device copy, forward
     and softmax) and the model's peak GPU memory;
and prints one table headed by the GPU's name. Random weights throughout: speed does not depend
on their values. Without CUDA it says so in one line and exits with status 2.

Usage: python benchmarks/gpu_check.py [--precision bf16|fp16] [--repeats 30] [--faces 1 4 8]
           [--models duse-vitb16-normal duse-vitl14-normal bhgap-vitb16] [--skip tests bench engine]
           [--log FILE] [--budget-s 400] [--probe]
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_MODELS = ["duse-vitb16-normal", "duse-vitl14-normal", "bhgap-vitb16"]
CUDA_TESTS = ["test/test_engine.py", "test/test_ssm.py", "test/test_bhgap.py"]
# Targets of issue 22 on an H100/H200-class GPU (fp16 or bf16), ms for one face.
ENGINE_TARGET_MS = {"duse-vitb16-normal": 4.0, "duse-vitl14-normal": 8.0, "bhgap-vitb16": 8.0}
EIGHT_FACES_TARGET = 2.5  # 8 faces / 1 face


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--precision", default="bf16", choices=["fp16", "bf16"])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--faces", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    ap.add_argument("--skip", nargs="*", default=[], choices=["tests", "bench", "engine"])
    ap.add_argument("--log", type=Path, default=None, help="also write the full output (benchmarks' own) here")
    ap.add_argument("--probe", action="store_true", help="only say whether CUDA is here (exit 0), or why not (exit 2)")
    ap.add_argument(
        "--budget-s", type=float, default=400.0,
        help="start no step after this many seconds from gpu_check.sh's start (the device allows 600 s a command)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    if args.repeats < 2:
        ap.error("--repeats must be at least 2")
    if any(n < 1 for n in args.faces):
        ap.error("--faces must be positive")
    return args


@dataclass
class EngineRow:
    model: str
    graphs: bool
    faces: int
    p50_ms: float
    p95_ms: float
    peak_mib: float


class Budget:
    """The seconds the check may take, counted from when gpu_check.sh started (GPU_CHECK_STARTED,
    epoch seconds; else from now). The device runs one command for at most 600 s, a first run's
    mamba-ssm build (about 150 s) included: a step that would begin past the budget is skipped,
    and the table says so, rather than the whole run being cut off without one."""

    def __init__(self, seconds: float, started: float | str | None = None):
        self.seconds = float(seconds)
        self.started = now() if started is None else float(started)

    def left(self) -> float:
        return self.seconds - (now() - self.started)


def now() -> float:
    """Epoch seconds (the budget's clock; a test's stand-in replaces it)."""
    return time.time()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def worst_ratio(bench_output: str) -> str:
    """The 'worst ratio X (target <= Y): ok' verdict a model benchmark ends with, or why not."""
    match = re.search(r"worst ratio ([\d.]+) \(target <= ([\d.]+)\): (ok|OVER TARGET)", bench_output)
    return f"{match.group(1)} (target <= {match.group(2)}): {match.group(3)}" if match else "no result (see log)"


def pytest_summary(output: str, status: int) -> str:
    lines = [line.strip("= ") for line in output.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
    summary = lines[-1] if lines else "no summary (see log)"
    return summary if status == 0 else f"FAILED: {summary}"


def format_table(header: str, checks: list[tuple[str, str]], rows: list[EngineRow]) -> str:
    """One markdown table: the checks' verdicts, then the engine latency per model and face count."""
    out = [header, "", "| check | result |", "|---|---|"]
    out += [f"| {name} | {result} |" for name, result in checks]
    if rows:
        out += [
            "",
            "| model | CUDA graphs | faces | p50 ms | p95 ms | x 1 face | peak GPU MiB | target (1 face) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        one = {(r.model, r.graphs): r.p50_ms for r in rows if r.faces == 1}
        for r in rows:
            base = one.get((r.model, r.graphs))
            ratio = f"{r.p50_ms / base:.2f}" if base else "-"
            if r.faces == 1 and r.model in ENGINE_TARGET_MS:
                target = ENGINE_TARGET_MS[r.model]
                verdict = f"<= {target:g} ms: {'ok' if r.p50_ms <= target else 'OVER'}"
            elif r.faces == 8 and base:
                verdict = f"<= {EIGHT_FACES_TARGET:g}x: {'ok' if r.p50_ms / base <= EIGHT_FACES_TARGET else 'OVER'}"
            else:
                verdict = ""
            out.append(
                f"| {r.model} | {'yes' if r.graphs else 'no'} | {r.faces} | {r.p50_ms:.1f} | {r.p95_ms:.1f} | "
                f"{ratio} | {r.peak_mib:.0f} | {verdict} |"
            )
    return "\n".join(out)


def engine_latency(
    name: str, model, faces: list[int], precision: str, repeats: int, graphs: bool, device: str = "cuda"
) -> list[EngineRow]:
    """p50/p95 of one window's forward through the engine per face count, and the peak GPU memory
    (0 on a `device` other than CUDA, where a CPU test runs this same code)."""
    import torch

    from duse_ros.affect.engine import InferenceEngine, Job
    from duse_ros.models.base import window_audio_samples

    cuda = device == "cuda"

    spec = model.input_spec
    done = threading.Event()
    results = []

    def on_result(result):
        results.append(result)
        done.set()

    gc.collect()  # the previous engine's graphs (engine and cache refer to each other)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    engine = InferenceEngine(
        model, device=device, precision=precision, queue_depth=1, max_batch=max(faces), on_result=on_result,
        cuda_graphs=graphs, name=f"gpu-check-{name}",
    )  # fmt: skip
    engine.start()
    gen = torch.Generator().manual_seed(0)
    samples = window_audio_samples(model) if spec.uses_audio else 0
    rows = []
    try:
        for n in faces:
            video = torch.randint(0, 256, (n, spec.num_frames, 3, spec.image_size, spec.image_size), dtype=torch.uint8)
            audio = 0.1 * torch.randn(samples, generator=gen) if spec.uses_audio else None
            latencies = []
            for i in range(repeats + 3):  # 3 warm-up windows: the capture, the allocator, cuDNN
                done.clear()
                results.clear()
                engine.submit(Job(i, video if spec.uses_video else None, audio))
                if not done.wait(120):
                    raise RuntimeError(f"{name}: no result in 120 s")
                if results[0].error:
                    raise RuntimeError(f"{name}: {results[0].error}")
                if i >= 3:
                    latencies.append(results[0].latency_s * 1e3)
            rows.append(
                EngineRow(
                    name, graphs, n, statistics.median(latencies), percentile(latencies, 95),
                    torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0,
                )
            )  # fmt: skip
    finally:
        engine.stop()
    return rows


def run(cmd: list[str], log: list[str]) -> tuple[int, str]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    log.append(f"$ {' '.join(cmd)}   ({time.perf_counter() - started:.0f} s, exit {proc.returncode})\n{output}")
    return proc.returncode, output


def describe_gpu(precision: str, device: str = "cuda") -> str:
    """The table's first line: the GPU, torch, CUDA, the precision and which selective scan runs
    on `device` (a CPU test passes "cpu")."""
    import torch

    from duse_ros.models.ssm import scan_backend

    major, minor = torch.cuda.get_device_capability()
    scan = scan_backend(torch.empty(0, device=device))
    return (
        f"gpu-check: {torch.cuda.get_device_name()} (sm_{major}{minor}), torch {torch.__version__}, "
        f"CUDA {torch.version.cuda}, {precision} autocast, selective scan: {scan}, random weights"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(
            f"gpu-check: no CUDA device here (torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); "
            "run it on a machine with an NVIDIA GPU"
        )
        return 2
    if args.probe:
        return 0
    logging.disable(logging.WARNING)  # random-weights warnings: expected here
    header = describe_gpu(args.precision)
    print(header, flush=True)
    log: list[str] = []
    checks: list[tuple[str, str]] = []
    rows: list[EngineRow] = []
    budget = Budget(args.budget_s, started=os.environ.get("GPU_CHECK_STARTED"))
    failed = False

    def save() -> None:
        """The log and the table so far: a run stopped at the device's limit still leaves them."""
        if args.log:
            args.log.write_text("\n\n".join(log) + "\n\n" + format_table(header, checks, rows) + "\n")

    def skipped(label: str) -> bool:
        nonlocal failed
        if budget.left() > 0:
            return False
        checks.append((label, f"skipped: past --budget-s {args.budget_s:g}"))
        failed = True
        return True

    py = sys.executable
    if "tests" not in args.skip and not skipped("CUDA tests"):
        status, out = run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *CUDA_TESTS], log)
        checks.append(("CUDA tests (" + ", ".join(Path(t).name for t in CUDA_TESTS) + ")", pytest_summary(out, status)))
        failed |= status != 0
        save()
    if "bench" not in args.skip:
        for script, label in (
            ("bench_duse.py", "DuSE / bare encode_image"),
            ("bench_bhgap.py", "BHGap / its encoders"),
        ):
            if skipped(script):
                continue
            extra = ["--backbones", "vitb32", "vitb16", "vitl14", "--strategies", "normal"]
            extra = extra if script == "bench_duse.py" else ["--models", "bhgap-vitb16"]
            status, out = run([py, f"benchmarks/{script}", "--precision", args.precision, *extra], log)
            checks.append((f"{script}: worst {label}", worst_ratio(out) if status == 0 else f"exit {status} (see log)"))
            scan_line = next((line for line in out.splitlines() if line.startswith("selective scan")), None)
            if scan_line:
                checks.append(("selective scan, mamba_ssm vs mambapy", scan_line.split(": ", 1)[1]))
            failed |= status != 0
            save()
    if "engine" not in args.skip:
        from duse_ros.models import build_model

        for name in args.models:
            if skipped(f"engine {name}"):
                continue
            model = build_model(name).eval()
            for graphs in (True, False):
                try:
                    rows += engine_latency(name, model, args.faces, args.precision, args.repeats, graphs)
                except Exception as exc:  # noqa: BLE001 - one model failing must not hide the others
                    checks.append((f"engine {name} (graphs {graphs})", f"FAILED: {type(exc).__name__}: {exc}"))
                    failed = True
                print(
                    f"  engine {name}, CUDA graphs {graphs}: done ({budget.left():.0f} s of the budget left)",
                    flush=True,
                )
                save()
            del model
            torch.cuda.empty_cache()
    table = format_table(header, checks, rows)
    print(table)
    save()
    if args.log:
        print(f"full output: {args.log}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

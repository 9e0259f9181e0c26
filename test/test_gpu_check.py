"""The GPU check's CPU side: arguments, the verdicts it reads from the benchmarks, its table, the
one-line refusal without CUDA, and the setup.py trim of scripts/build_mamba_ssm.sh."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "scripts"))

import gpu_check  # noqa: E402
import trim_gencode  # noqa: E402


def test_arguments_and_their_errors(capsys):
    args = gpu_check.parse_args([])
    assert (args.precision, args.repeats, args.faces, args.skip) == ("bf16", 30, [1, 4, 8], [])
    args = gpu_check.parse_args(["--precision", "fp16", "--faces", "1", "2", "--skip", "tests", "bench"])
    assert (args.precision, args.faces, args.skip) == ("fp16", [1, 2], ["tests", "bench"])
    for bad in (["--precision", "fp32"], ["--repeats", "1"], ["--faces", "0"], ["--skip", "everything"]):
        with pytest.raises(SystemExit):
            gpu_check.parse_args(bad)
    capsys.readouterr()


def test_benchmark_and_pytest_verdicts_are_read_from_their_output():
    out = "backbone ...\nworst ratio 1.243 (target <= 1.10): OVER TARGET\n"
    assert gpu_check.worst_ratio(out) == "1.243 (target <= 1.10): OVER TARGET"
    assert gpu_check.worst_ratio("Traceback ...") == "no result (see log)"
    assert (
        gpu_check.pytest_summary("..s\n==== 12 passed, 3 skipped in 4.1s ====\n", 0) == "12 passed, 3 skipped in 4.1s"
    )
    assert gpu_check.pytest_summary("F.\n1 failed, 1 passed in 2s\n", 1) == "FAILED: 1 failed, 1 passed in 2s"


def test_the_table_gives_ratios_to_one_face_and_the_targets():
    rows = [
        gpu_check.EngineRow("duse-vitb16-normal", True, 1, 3.5, 4.0, 900),
        gpu_check.EngineRow("duse-vitb16-normal", True, 8, 10.0, 11.0, 1500),
        gpu_check.EngineRow("duse-vitb16-normal", False, 1, 13.0, 14.0, 900),
        gpu_check.EngineRow("duse-vitb16-normal", False, 8, 32.5, 35.0, 1500),
    ]
    table = gpu_check.format_table("gpu-check: NVIDIA H200 (sm_90)", [("CUDA tests", "9 passed")], rows)
    lines = table.splitlines()
    assert lines[0] == "gpu-check: NVIDIA H200 (sm_90)"
    assert "| CUDA tests | 9 passed |" in lines
    assert "| duse-vitb16-normal | yes | 1 | 3.5 | 4.0 | 1.00 | 900 | <= 4 ms: ok |" in lines
    assert "| duse-vitb16-normal | yes | 8 | 10.0 | 11.0 | 2.86 | 1500 | <= 2.5x: OVER |" in lines
    assert "| duse-vitb16-normal | no | 1 | 13.0 | 14.0 | 1.00 | 900 | <= 4 ms: OVER |" in lines
    assert "| duse-vitb16-normal | no | 8 | 32.5 | 35.0 | 2.50 | 1500 | <= 2.5x: ok |" in lines
    assert gpu_check.percentile([5.0, 1.0, 3.0, 2.0, 4.0], 95) == 5.0
    assert gpu_check.percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
@pytest.mark.slow  # the real script: an interpreter imports torch
def test_without_cuda_it_says_so_in_one_line_and_exits_2():
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stdout.splitlines() == [proc.stdout.strip()] and proc.stdout.startswith("gpu-check: no CUDA device")
    assert proc.stderr == ""


SETUP_PY = """def build(cc_flag, ext_modules, bare_metal_version, Version, SKIP_CUDA_BUILD):
    if not SKIP_CUDA_BUILD:
        cc_flag.append("-gencode")
        cc_flag.append("arch=compute_75,code=sm_75")
        cc_flag.append("-gencode")
        cc_flag.append("arch=compute_80,code=sm_80")
        if bare_metal_version >= Version("11.8"):
            cc_flag.append("-gencode")
            cc_flag.append("arch=compute_90,code=sm_90")
    ext_modules.append(cc_flag)
"""


@pytest.mark.parametrize("arch", ["87", "89", "90"])
def test_setup_py_is_trimmed_to_the_cards_architecture_and_stays_python(arch):
    trimmed = trim_gencode.trim(SETUP_PY, arch)
    compile(trimmed, "setup.py", "exec")  # the emptied if-block holds `pass`
    assert trimmed.count("arch=compute_") == 1 and f"arch=compute_{arch},code=sm_{arch}" in trimmed
    assert trimmed.count('"-gencode"') == 1
    with pytest.raises(ValueError, match="no -gencode"):
        trim_gencode.trim("cc_flag = []\n", arch)
    with pytest.raises(ValueError, match="expected digits"):
        trim_gencode.trim(SETUP_PY, "sm_87")


def _run_main_with_stand_ins(monkeypatch, tmp_path, budget_s: float, step_s: float, argv: list[str]):
    """gpu_check.main on this CPU machine: torch.cuda says a GPU is here, the subprocesses (pytest,
    the benchmarks) and the engine run are stand-ins that take `step_s` of a fake clock each, so
    the budget logic and the saving of partial results run as they would on the device."""
    import duse_ros.models

    clock = [1000.0]
    monkeypatch.setenv("GPU_CHECK_STARTED", "1000")
    monkeypatch.setattr(gpu_check, "now", lambda: clock[0])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(gpu_check, "describe_gpu", lambda precision: f"gpu-check: Stand-in GPU, {precision}")
    log = tmp_path / "gpu_check.txt"
    saved_before = []  # what --log held when each step started

    def run(cmd, out):
        saved_before.append(log.read_text() if log.exists() else "")
        clock[0] += step_s
        out.append(f"$ {' '.join(cmd)}")
        if "pytest" in cmd:
            return 0, "==== 11 passed in 9.0s ===="
        return 0, "worst ratio 1.050 (target <= 1.10): ok\n"

    def engine_latency(name, model, faces, precision, repeats, graphs):
        saved_before.append(log.read_text() if log.exists() else "")
        clock[0] += step_s
        return [gpu_check.EngineRow(name, graphs, n, 2.0 * n, 2.5 * n, 900.0) for n in faces]

    monkeypatch.setattr(gpu_check, "run", run)
    monkeypatch.setattr(gpu_check, "engine_latency", engine_latency)
    monkeypatch.setattr(duse_ros.models, "build_model", lambda name: torch.nn.Identity())
    status = gpu_check.main([*argv, "--budget-s", str(budget_s), "--log", str(log)])
    return status, log.read_text(), saved_before


def test_each_step_is_saved_as_it_ends_and_steps_past_the_budget_are_skipped(monkeypatch, tmp_path, capsys):
    """The device runs one command for at most 600 s: a step that would start past --budget-s is
    named as skipped (exit 1, not a pass), and every finished step is in --log before the next
    one starts, so a run cut off at the limit still brings its results back."""
    status, text, saved_before = _run_main_with_stand_ins(
        monkeypatch, tmp_path, budget_s=100, step_s=60, argv=["--models", "bhgap-vitb16", "--faces", "1", "8"]
    )
    assert status == 1
    assert "| CUDA tests (test_engine.py, test_ssm.py, test_bhgap.py) | 11 passed in 9.0s |" in text
    assert "| bench_duse.py: worst DuSE / bare encode_image | 1.050 (target <= 1.10): ok |" in text
    assert "| bench_bhgap.py | skipped: past --budget-s 100 |" in text  # 120 s were gone by then
    assert "| engine bhgap-vitb16 | skipped: past --budget-s 100 |" in text
    assert len(saved_before) == 2 and "11 passed" in saved_before[1]  # the tests' verdict was saved first
    assert capsys.readouterr().out.rstrip().endswith(f"full output: {tmp_path / 'gpu_check.txt'}")


def test_within_its_budget_the_check_runs_every_step(monkeypatch, tmp_path, capsys):
    status, text, saved_before = _run_main_with_stand_ins(
        monkeypatch, tmp_path, budget_s=400, step_s=30, argv=["--models", "duse-vitb16-normal", "--faces", "1", "8"]
    )
    assert status == 0 and "skipped" not in text
    assert "| duse-vitb16-normal | yes | 8 | 16.0 | 20.0 | 8.00 | 900 | <= 2.5x: OVER |" in text
    assert "| duse-vitb16-normal | no | 1 | 2.0 | 2.5 | 1.00 | 900 | <= 4 ms: ok |" in text
    # tests, two benchmarks, the engine with and without graphs; the last saw the graphs rows saved
    assert len(saved_before) == 5 and "| duse-vitb16-normal | yes | 1 |" in saved_before[4]
    capsys.readouterr()


def test_the_engine_rows_run_on_cpu_with_the_audio_a_window_carries():
    """engine_latency is the check's one CUDA workload; on CPU the same code runs (no peak GPU
    memory there): a row per face count, and the model gets the audio the windower cuts for it."""
    from duse_ros.models import build_model
    from duse_ros.models.base import window_audio_samples

    model = build_model("tiny-random-av", audio_s=3.0).eval()
    seen = []
    model.register_forward_pre_hook(lambda m, args, kwargs: seen.append(kwargs["audio"].shape), with_kwargs=True)
    rows = gpu_check.engine_latency("tiny-random-av", model, [1, 2], "bf16", 2, graphs=False, device="cpu")
    assert [(r.model, r.graphs, r.faces, r.peak_mib) for r in rows] == [
        ("tiny-random-av", False, 1, 0.0),
        ("tiny-random-av", False, 2, 0.0),
    ]
    assert all(0 < r.p50_ms <= r.p95_ms for r in rows)
    assert window_audio_samples(model) == 48000 and seen and all(s[-1] == 48000 for s in seen)
    assert len(seen) == 2 * (2 + 3)  # per face count: 3 warm-up windows and 2 measured


def test_the_header_names_the_gpu_and_the_scan(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda: (9, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda: "Stand-in H200")
    header = gpu_check.describe_gpu("bf16", device="cpu")
    assert header.startswith("gpu-check: Stand-in H200 (sm_90), torch ")
    assert header.endswith("bf16 autocast, selective scan: mambapy, random weights")

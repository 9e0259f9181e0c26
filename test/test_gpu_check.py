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

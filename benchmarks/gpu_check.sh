#!/usr/bin/env bash
# The GPU check, in one run: `make gpu-check` or `bash benchmarks/gpu_check.sh [gpu_check.py args]`.
#
# On a machine with a GPU and a CUDA torch: installs the wheels carried in .whl/ (if any) into
# the git-ignored .gpu_site/ (GPU_SITE), builds mamba-ssm there from the sdist in .whl/ for this
# card (scripts/build_mamba_ssm.sh) unless it already imports (a second run skips the build),
# then runs benchmarks/gpu_check.py (CUDA tests, bench_duse,
# bench_bhgap, the engine latency table) and prints one table. Without CUDA: one line, exit 2.
#
# `bash benchmarks/gpu_check.sh --prepare` (here, with the package registry) fills .whl/ for a GPU
# machine without network (GPU.md: Python 3.12, torch there, no open_clip/mambapy/mamba-ssm).
# PYTHON picks the interpreter (default: .venv/bin/python if present, else python3).
# On a lent device (600 s a command): first `--skip tests bench engine` (install, build), then the
# check; gpu_check.py's --budget-s counts from this script's start and --log is saved per step.
set -euo pipefail
cd "$(dirname "$0")/.."
export GPU_CHECK_STARTED=${GPU_CHECK_STARTED:-$(date +%s)}  # gpu_check.py's --budget-s counts from here
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHON
SITE=$(realpath -m "${GPU_SITE:-.gpu_site}")
if [ "${1:-}" = "--prepare" ]; then
  PYV=${GPU_PYTHON_VERSION:-3.12}
  mkdir -p .whl
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
    --platform manylinux_2_17_x86_64 -d .whl open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth mambapy==1.2.0 \
    timm==1.0.31 einops==0.8.1 ninja==1.13.0 packaging==26.3
  # MAMBA_SKIP_CUDA_BUILD: pip reads the sdist's metadata, and setup.py looks for nvcc unless told.
  MAMBA_SKIP_CUDA_BUILD=TRUE "$PYTHON" -m pip download -q --no-deps --no-binary=:all: --no-build-isolation -d .whl \
    mamba-ssm==2.3.2.post1
  echo "gpu_check.sh: .whl/ holds $(ls .whl | wc -l) files; carry .whl with the run"
  exit 0
fi
"$PYTHON" benchmarks/gpu_check.py --probe  # without CUDA: says so in one line, and this exits 2
if ls .whl/*.whl >/dev/null 2>&1; then
  "$PYTHON" -m pip install -q --no-index --no-deps --upgrade --target "$SITE" .whl/*.whl
  export PYTHONPATH="$SITE":$PWD${PYTHONPATH:+:$PYTHONPATH} PATH="$SITE"/bin:$PATH  # ninja for the build
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
if ! "$PYTHON" -c 'import torch, selective_scan_cuda' 2>/dev/null; then
  if ls .whl/mamba_ssm-*.tar.gz >/dev/null 2>&1; then
    bash scripts/build_mamba_ssm.sh --sdist "$(ls .whl/mamba_ssm-*.tar.gz | head -1)" --target "$SITE" \
      || echo "gpu_check.sh: the mamba-ssm build failed; the check runs with the PyTorch scan"
  else
    echo "gpu_check.sh: mamba-ssm not installed and no sdist in .whl/: the check runs with the PyTorch scan"
  fi
fi
exec "$PYTHON" benchmarks/gpu_check.py "$@"

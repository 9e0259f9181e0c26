#!/usr/bin/env bash
# Build mamba-ssm's CUDA selective scan for this machine's GPU alone, from the registry's sdist.
#
# Its setup.py compiles for nine architectures (sm_75 ... sm_121; 153 s for one on 16 cores, many
# times that for all). This reads the card's own from torch.cuda.get_device_capability(), writes
# it in place of the first -gencode pair and drops the others, builds, installs, and prints the
# time. Run it on the machine with the GPU, with the torch you will run (its CUDA headers and
# ABI are compiled against; JetPack's torch on a Jetson).
#
# Usage: scripts/build_mamba_ssm.sh [--sdist FILE.tar.gz] [--target DIR] [--jobs N]
#   --sdist   a downloaded mamba_ssm-<version>.tar.gz (default: pip downloads mamba-ssm==$VERSION)
#   --target  install into DIR (pip --target) instead of the running interpreter's site-packages
#   --jobs    parallel nvcc jobs (default: the core count; a Jetson Orin wants 2-4, memory bound)
# PYTHON (default python3) is the interpreter with the CUDA torch.
set -euo pipefail
VERSION=2.3.2.post1
PY=${PYTHON:-python3}
SDIST="" TARGET="" JOBS=$(nproc)
while [ $# -gt 0 ]; do
  case "$1" in
    --sdist) SDIST=$(realpath "$2"); shift 2 ;;
    --target) TARGET=$(realpath -m "$2"); shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "build_mamba_ssm.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
ARCH=$("$PY" -c 'import sys, torch
if not torch.cuda.is_available():
    sys.exit("build_mamba_ssm.sh: no CUDA device seen by torch %s (CUDA build: %s); build on the GPU machine" % (torch.__version__, torch.version.cuda))
major, minor = torch.cuda.get_device_capability()
print(f"{major}{minor}")')
command -v nvcc >/dev/null || { echo "build_mamba_ssm.sh: nvcc not on PATH (CUDA toolkit; on Jetson: /usr/local/cuda/bin)" >&2; exit 2; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if [ -z "$SDIST" ]; then
  MAMBA_SKIP_CUDA_BUILD=TRUE "$PY" -m pip download -q --no-deps --no-binary=:all: --no-build-isolation -d "$WORK" \
    "mamba-ssm==$VERSION"  # metadata only: the build below is the real one
  SDIST=$(ls "$WORK"/mamba_ssm-*.tar.gz)
fi
tar -xzf "$SDIST" -C "$WORK"
SRC=$(ls -d "$WORK"/mamba_ssm-*/)
"$PY" "$(dirname "$0")/trim_gencode.py" "$SRC/setup.py" "$ARCH"
echo "building mamba-ssm $(basename "$SDIST") for sm_$ARCH with $JOBS jobs ($(nvcc --version | tail -1))"
START=$(date +%s)
DEST=()
[ -n "$TARGET" ] && DEST=(--target "$TARGET")
(cd "$SRC" && MAMBA_FORCE_BUILD=TRUE MAX_JOBS=$JOBS "$PY" -m pip install -q --no-deps --no-build-isolation --no-index "${DEST[@]}" .)
echo "mamba-ssm built for sm_$ARCH in $(( $(date +%s) - START )) s"

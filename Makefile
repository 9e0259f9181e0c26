# Two commands on a fresh machine: `make demo` and `make test` (both run `make setup` first).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python

# DDS never leaves this machine; each entry point picks its own domain unless one is given.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export HF_HUB_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: setup test quick lint demo bench gpu-check params train-smoke clean

setup:
	@bash scripts/setup_venv.sh

# The lint runs first: `make test` (and so CI) fails on a lint or format error.
test: setup lint
	ROS_DOMAIN_ID=$${ROS_DOMAIN_ID:-61} $(PY) -m pytest test $(PYTEST_ARGS)

# The inner loop while coding: no node processes, no training or soak (README "The quick loop").
quick: setup
	ROS_DOMAIN_ID=$${ROS_DOMAIN_ID:-61} $(PY) -m pytest test -q -m "not ros_process and not slow" $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

demo: setup
	ROS_DOMAIN_ID=$${ROS_DOMAIN_ID:-62} $(PY) -m duse_ros.tools.demo $(DEMO_ARGS)

# Speed is measured here, side by side in one run, never in the test suite.
bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; ROS_DOMAIN_ID=$${ROS_DOMAIN_ID:-63} $(PY) $$b || exit 1; done

# On a machine with an NVIDIA GPU: CUDA tests, bench_duse, bench_bhgap and the engine's latency in
# one table (README "GPU"). No setup dependency: a GPU machine may bring its own torch (PYTHON=...).
# Without CUDA it says so in one line and fails. GPU_CHECK_ARGS: benchmarks/gpu_check.py --help.
gpu-check:
	@bash benchmarks/gpu_check.sh $(GPU_CHECK_ARGS)

params: setup
	$(PY) -m training.count_params

# The training loop on CPU, no dataset needed: tiny DuSE on a set whose classes differ only in motion.
# SMOKE_ARGS=--baseline also trains the frame-averaging baseline for comparison.
train-smoke: setup
	$(PY) -m training.smoke $(SMOKE_ARGS)

clean:
	rm -rf build $(VENV) .pytest_cache

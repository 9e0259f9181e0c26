"""ruff, as a test: `colcon test` (and `make test`) fail on a lint or format error, as ros2/demos
runs its linters under `colcon test`. Settings live in pyproject.toml. ruff comes with
requirements/base.txt (make setup) and requirements/ros_host.txt (a ROS host)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "command", [["check", "--no-cache"], ["format", "--check", "--no-cache"]], ids=["check", "format"]
)
def test_ruff(command):
    assert importlib.util.find_spec("ruff"), "ruff is not installed: pip install -r requirements/ros_host.txt"
    run = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "."], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, f"ruff {' '.join(command)} found problems:\n{run.stdout[-6000:]}{run.stderr[-2000:]}"

"""setup.py's console scripts are on the venv's PATH after `make setup` (the README's examples call
duse-make-bag, duse-eval-bag and duse-fetch-weights by name): scripts/write_console_scripts.py
writes them, and scripts/setup_venv.sh runs it on every setup, the quick up-to-date one included."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import write_console_scripts  # noqa: E402

HELP = ["duse-make-bag", "duse-eval-bag", "duse-fetch-weights"]


def test_every_console_script_of_setup_py_is_written_and_runs(tmp_path):
    scripts = write_console_scripts.console_scripts()
    assert set(HELP) | {"affect_node", "llm_bridge_node", "duse_demo"} <= set(scripts)
    written = write_console_scripts.write(tmp_path, sys.executable)
    assert sorted(p.name for p in written) == sorted(scripts)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the venv's .pth finds duse_ros
    for name in HELP:
        run = subprocess.run([str(tmp_path / name), "--help"], capture_output=True, text=True, env=env, timeout=120)
        assert run.returncode == 0 and "usage:" in run.stdout, (name, run.stderr[-2000:])


def test_setup_writes_them_on_every_run():
    setup = (ROOT / "scripts/setup_venv.sh").read_text()
    quick, full = setup.split('echo "setup: installing into $VENV"')
    assert "\n  console_scripts\n" in quick and "\nconsole_scripts\n" in full


@pytest.mark.skipif(
    Path(sys.prefix).resolve() != (ROOT / ".venv").resolve(), reason="runs outside the make-setup venv (colcon)"
)
def test_the_make_setup_venv_has_them_on_its_path():
    bin_dir = Path(sys.prefix) / "bin"
    for name in write_console_scripts.console_scripts():
        assert os.access(bin_dir / name, os.X_OK), f"{bin_dir / name} missing: run make setup"

